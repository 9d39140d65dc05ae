import NIOCore
import NIOHTTP1
import GatewayCore

/// Serves HTTP/1.1 requests from the sandbox: routes each request, then streams it to its
/// upstream and the response back, one upstream exchange per request.
///
/// A thin handler around `HTTPForwardingStateMachine`, which makes every decision: this
/// handler feeds it the events of the client channel, the router, the dialer and the
/// upstream channel, and carries out the actions it returns.
///
/// Sits after `HTTPResponseEncoder` (framing headers set by hand) and
/// `HTTPRequestDecoder`. Reads from the client only while there is somewhere to put the
/// bytes, and reads from the upstream only while the client is writable, so at most one
/// read's worth of body is buffered each way. `Expect: 100-continue` is answered after
/// the route is decided; a refusal goes out without `100` and the connection closes. An
/// upstream failure before the response head is a `502`/`504`; after it, the client
/// connection is closed without the final chunk. `CONNECT` is not served here: on the
/// explicit proxy a `ConnectHandler` ahead of the forwarder takes it; elsewhere it is
/// answered with `405`.
package final class HTTPForwarder {
    private let router: any HTTPRouter
    private let dialer: any UpstreamDialer
    private let sandbox: String
    private let via: AuditEvent.Via
    private let headGuard: RequestHeadGuard?
    private let pool: UpstreamPool?

    private var machine: HTTPForwardingStateMachine
    private var context: ChannelHandlerContext?
    /// Request parts read but not yet taken by the state machine.
    private var inbox = CircularBuffer<HTTPServerRequestPart>()
    private var pendingRead = false
    private var upstream: (any Channel)?
    private var upstreamHandler: UpstreamResponseHandler?
    /// The pool key of `upstream`, when it may be kept after its exchange.
    private var upstreamKey: UpstreamPool.Key?

    /// - Parameters:
    ///   - router: decides each request.
    ///   - dialer: opens upstream connections.
    ///   - sandbox: the sandbox this listener belongs to.
    ///   - via: the listener, for the router's context.
    ///   - headGuard: the guard ahead of the decoder, told when heads are taken.
    ///   - refusalsPerConnection: the refusal after which the connection is closed.
    ///   - pool: keeps upstream connections of exchanges that ask for it
    ///     (`UpstreamExchange.keepsConnection`); without one, every exchange dials.
    package init(
        router: any HTTPRouter, dialer: any UpstreamDialer,
        sandbox: String, via: AuditEvent.Via, headGuard: RequestHeadGuard? = nil,
        refusalsPerConnection: Int = GatewayLimits().refusalsPerConnection, pool: UpstreamPool? = nil
    ) {
        self.pool = pool
        self.machine = HTTPForwardingStateMachine(refusalsPerConnection: refusalsPerConnection)
        self.router = router
        self.dialer = dialer
        self.sandbox = sandbox
        self.via = via
        self.headGuard = headGuard
    }

    // MARK: reading from the client

    private var canReadClient: Bool {
        inbox.isEmpty && machine.readsClient(upstreamWritable: upstream?.isWritable ?? false)
    }

    private func resumeReadingClient() {
        guard pendingRead, canReadClient, let context else { return }
        pendingRead = false
        context.read()
    }

    /// Gives buffered request parts to the state machine as far as it takes them.
    private func drainInbox() {
        while let part = inbox.first, machine.takesRequestParts {
            inbox.removeFirst()
            if case .head = part, case .awaitingHead = machine.state { headGuard?.headReceived() }
            perform(machine.requestPart(part))
        }
        resumeReadingClient()
    }

    // MARK: carrying out actions

    private func perform(_ actions: [HTTPForwardingStateMachine.Action]) {
        for action in actions { perform(action) }
    }

    private func perform(_ action: HTTPForwardingStateMachine.Action) {
        switch action {
        case .route(let head):
            route(head)
        case .dial(let target):
            // A fresh connection (a retry's, too) may be kept if its exchange ends cleanly.
            dial(target, keepingAs: context.flatMap { context in pool?.key(for: target, on: context.eventLoop) })
        case .reuseOrDial(let target):
            reuseOrDial(target)
        case .sendContinue(let version):
            var head = HTTPResponseHead(version: version, status: .continue)
            head.headers = HTTPHeaders()
            context?.writeAndFlush(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        case .respond(let head, let body, let close):
            context?.writeLocalAnswer(head, body: body, close: close)
        case .requeue(let parts):
            for part in parts.reversed() { inbox.prepend(part) }
        case .sendRequestHead(let head):
            upstream?.writeAndFlush(HTTPClientRequestPart.head(head), promise: nil)
        case .sendRequestBody(let buffer):
            upstream?.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        case .sendRequestEnd(let trailers):
            upstream?.writeAndFlush(HTTPClientRequestPart.end(trailers), promise: nil)
        case .writeResponseHead(let head):
            context?.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        case .writeResponseBody(let buffer):
            context?.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
        case .writeResponseEnd(let trailers, let close):
            guard let context else { return }
            let written = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(trailers)))
            if close { written.whenComplete { _ in self.context?.close(promise: nil) } }
        case .awaitInspector(let work):
            awaitInspector(work)
        case .report(let exchange, let outcome):
            exchange.completion?(outcome)
        case .closeUpstream:
            upstreamHandler?.detach()
            upstreamHandler = nil
            upstream?.close(promise: nil)
            upstream = nil
            upstreamKey = nil
        case .releaseUpstream:
            upstreamHandler?.detach()
            if let channel = upstream, let key = upstreamKey, let pool, pool.park(channel, as: key) {
                // Idle now: the handler closes it if the upstream says anything or leaves.
            } else if let channel = upstream {
                UpstreamPool.discard(channel)
            }
            upstreamHandler = nil
            upstream = nil
            upstreamKey = nil
        case .closeClient:
            context?.close(promise: nil)
        case .dropUnread:
            inbox.removeAll()
        case .awaitNextHead:
            if headGuard?.awaitNextHead() == false {
                // The guard answered an oversized pipelined head and closes the connection.
                _ = machine.close()
                inbox.removeAll()
            }
        }
    }

    private func route(_ head: HTTPRequestHead) {
        guard let context else { return }
        let requestContext = RequestContext(
            sandbox: sandbox, via: via, eventLoop: context.eventLoop, clientAddress: context.channel.remoteAddress)
        let generation = machine.generation
        router.route(head, context: requestContext).hop(to: context.eventLoop).whenComplete { result in
            guard self.machine.generation == generation else { return }
            switch result {
            case .success(let route): self.perform(self.machine.routed(route))
            case .failure: self.perform(self.machine.routingFailed())
            }
            self.drainInbox()
        }
    }

    private func awaitInspector(_ work: InspectorWork) {
        guard let context else { return }
        let generation = machine.generation
        work(context.eventLoop, dialer).hop(to: context.eventLoop).whenComplete { result in
            guard self.machine.generation == generation else { return }
            let refusal: LocalResponse?
            switch result {
            case .success(let answer): refusal = answer
            case .failure: refusal = Refusal(.badGateway, reason: "the gateway could not finish checking this request").response
            }
            self.perform(self.machine.inspectorDecided(refusal))
            self.drainInbox()
        }
    }

    /// An idle connection to `target` from the pool, else a new one that may be kept.
    private func reuseOrDial(_ target: UpstreamTarget) {
        guard let context else { return }
        guard let pool else { return dial(target, keepingAs: nil) }
        let key = pool.key(for: target, on: context.eventLoop)
        while let channel = pool.take(key) {
            guard let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamResponseHandler.self) else {
                channel.close(promise: nil)
                continue
            }
            handler.attach(self, generation: machine.generation)
            upstream = channel
            upstreamHandler = handler
            upstreamKey = key
            perform(machine.connected(reused: true))
            drainInbox()
            channel.read()
            return
        }
        dial(target, keepingAs: key)
    }

    private func dial(_ target: UpstreamTarget, keepingAs key: UpstreamPool.Key?) {
        guard let context else { return }
        let generation = machine.generation
        dialer.dial(target, on: context.eventLoop).hop(to: context.eventLoop).whenComplete { result in
            guard self.machine.generation == generation, self.machine.isDialing else {
                if case .success(let channel) = result { channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let channel):
                self.connected(to: channel, keepingAs: key)
            case .failure(let error):
                self.perform(self.machine.dialFailed(error))
                self.drainInbox()
            }
        }
    }

    private func connected(to channel: any Channel, keepingAs key: UpstreamPool.Key?) {
        let handler = UpstreamResponseHandler()
        handler.attach(self, generation: machine.generation)
        do {
            if key != nil { try channel.pipeline.syncOperations.addHandler(ImmediateCloser(), position: .first) }
            try channel.pipeline.syncOperations.addHTTPClientHandlers(leftOverBytesStrategy: .dropBytes)
            try channel.pipeline.syncOperations.addHandler(handler)
        } catch {
            channel.close(promise: nil)
            perform(machine.upstreamSetupFailed())
            drainInbox()
            return
        }
        upstream = channel
        upstreamHandler = handler
        upstreamKey = key
        perform(machine.connected())
        drainInbox()
        guard channel.isActive else {
            // Closed before the handler could see it go.
            upstreamClosed(generation: machine.generation)
            return
        }
        channel.read()
    }

    // MARK: events from the upstream

    fileprivate func upstreamResponseHead(_ head: HTTPResponseHead, generation: Int) {
        guard generation == machine.generation else { return }
        perform(machine.responseHead(head))
        drainInbox()
    }

    fileprivate func upstreamResponseBody(_ buffer: ByteBuffer, generation: Int) {
        guard generation == machine.generation else { return }
        perform(machine.responseBody(buffer))
    }

    fileprivate func upstreamReadComplete(generation: Int) {
        guard generation == machine.generation else { return }
        context?.flush()
    }

    fileprivate func upstreamResponseEnd(_ trailers: HTTPHeaders?, generation: Int) {
        guard generation == machine.generation else { return }
        perform(machine.responseEnd(trailers))
        drainInbox()
    }

    fileprivate var clientWritable: Bool {
        context?.channel.isWritable ?? false
    }

    fileprivate func upstreamWritabilityChanged(generation: Int) {
        guard generation == machine.generation else { return }
        resumeReadingClient()
    }

    fileprivate func upstreamClosed(generation: Int) {
        guard generation == machine.generation else { return }
        let actions = machine.upstreamClosed()
        guard !actions.isEmpty else { return }
        upstreamHandler?.detach()
        upstream = nil
        upstreamHandler = nil
        upstreamKey = nil
        perform(actions)
        drainInbox()
    }
}

extension HTTPForwarder: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = HTTPServerRequestPart
    package typealias OutboundIn = HTTPServerResponsePart
    package typealias OutboundOut = HTTPServerResponsePart

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if case .closing = machine.state { return }
        inbox.append(part)
        drainInbox()
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        upstream?.flush()
        context.fireChannelReadComplete()
    }

    package func read(context: ChannelHandlerContext) {
        if canReadClient {
            context.read()
        } else {
            pendingRead = true
        }
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { upstreamHandler?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        perform(machine.clientClosed())
        context.fireChannelInactive()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // The client will send nothing more: finish the exchange in flight, then close.
            perform(machine.clientInputClosed())
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        if headGuard?.hasAnswered == true {
            // The guard answered (431, 408) and closes; the decoder's complaint about the
            // head it never finished is not a second answer.
            perform(machine.close())
            return
        }
        if error is HTTPParserError {
            // A malformed request: answered as such between requests, then closed.
            perform(machine.requestMalformed(RequestValidation.describe(error)))
            return
        }
        perform(machine.close())
    }
}

/// Reads the upstream's response and hands it to the forwarder; reads only while the
/// client can take more. Between exchanges (detached, the connection idle in the pool) the
/// upstream has nothing to say: anything it sends, its end of the connection closing, or
/// an error closes the connection.
private final class UpstreamResponseHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private var forwarder: HTTPForwarder?
    private(set) var generation = 0
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    /// Delivers the upstream's response to `forwarder`, for its request `generation`.
    func attach(_ forwarder: HTTPForwarder, generation: Int) {
        self.forwarder = forwarder
        self.generation = generation
    }

    /// Stops delivering to the forwarder (the exchange is over).
    func detach() {
        forwarder = nil
        if pendingRead, let context {
            // Idle: read on, so that the upstream closing the connection is seen.
            pendingRead = false
            context.read()
        }
    }

    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard forwarder != nil else {
            UpstreamPool.discard(context.channel)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head): forwarder?.upstreamResponseHead(head, generation: generation)
        case .body(let buffer): forwarder?.upstreamResponseBody(buffer, generation: generation)
        case .end(let trailers): forwarder?.upstreamResponseEnd(trailers, generation: generation)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        forwarder?.upstreamReadComplete(generation: generation)
    }

    func read(context: ChannelHandlerContext) {
        if forwarder?.clientWritable ?? true {
            context.read()
        } else {
            pendingRead = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        forwarder?.upstreamWritabilityChanged(generation: generation)
    }

    func channelInactive(context: ChannelHandlerContext) {
        forwarder?.upstreamClosed(generation: generation)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if forwarder == nil, let event = event as? ChannelEvent, case .inputClosed = event {
            UpstreamPool.discard(context.channel)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
