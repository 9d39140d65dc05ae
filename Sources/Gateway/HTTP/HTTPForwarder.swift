import NIOCore
import NIOHTTP1

/// Serves HTTP/1.1 requests from the sandbox: routes each request, then streams it to its
/// upstream and the response back, one upstream exchange per request.
///
/// Sits after `HTTPResponseEncoder` (framing headers set by hand) and
/// `HTTPRequestDecoder` (left-over bytes forwarded, for `CONNECT`). Reads from the client
/// only while there is somewhere to put the bytes, and reads from the upstream only while
/// the client is writable, so at most one read's worth of body is buffered each way.
/// `Expect: 100-continue` is answered after the route is decided; a refusal goes out
/// without `100` and the connection closes. An upstream failure before the response head
/// is a `502`/`504`; after it, the client connection is closed without the final chunk.
/// With a `TunnelRouter`, `CONNECT host:port` opens a spliced byte tunnel.
package final class HTTPForwarder {
    /// What the forwarder is doing with the current request.
    private enum Phase {
        case awaitingHead
        case routing
        case dialing
        case forwarding
        case discardingBody
        /// `UpstreamExchange.bodyCheck` reads the start of the body before anything is dialled.
        case checkingBody
        /// The body check refused: the rest of the body is dropped, then the answer goes out.
        case discardingBeforeAnswer
        /// The tunnel's upstream is connected; waiting for the CONNECT request's end.
        case tunnelReady
        case tunnelling
        case closing
    }

    private let router: any HTTPRouter
    private let tunnels: (any TunnelRouter)?
    private let dialer: any UpstreamDialer
    private let sandbox: String
    private let via: AuditEvent.Via
    private let headGuard: RequestHeadGuard?
    private let refusalsAllowed: Int

    private var phase = Phase.awaitingHead
    private var context: ChannelHandlerContext?
    private var inbox = CircularBuffer<HTTPServerRequestPart>()
    private var pendingRead = false
    /// Refusals answered on this connection so far.
    private var refusals = 0

    // The current request.
    private var request: HTTPRequestHead?
    private var requestEnded = false
    private var requestHasBody = false
    private var requestChunked = false
    private var keepAlive = true
    private var exchange: UpstreamExchange?
    private var upstream: (any Channel)?
    private var upstreamHandler: UpstreamResponseHandler?
    private var responseHeadSent = false
    private var responseEnded = false
    private var responseCloseDelimited = false
    private var responseStatus: Int?
    private var bytesUp: UInt64 = 0
    private var bytesDown: UInt64 = 0
    private var startedAt = NIODeadline.now()
    private var generation = 0
    /// The body bytes the check has seen, and the parts held until it decides.
    private var checkedBody: [UInt8] = []
    private var heldParts: [HTTPServerRequestPart] = []
    private var pendingAnswer: LocalResponse?
    private var continueSent = false
    /// `UpstreamExchange.bodyInspector`'s inspector of this request, and the body's tail
    /// held from the upstream until it decides.
    private var inspector: (any RequestBodyInspector)?
    private var heldTail: ByteBuffer?
    /// The most body a check may hold before it must decide.
    private static let checkedBodyLimit = 4 << 20
    private var tunnelPlan: (upstream: TunnelUpstream, startedAt: NIODeadline, completion: @Sendable (ExchangeOutcome) -> Void)?

    /// - Parameters:
    ///   - router: decides each request.
    ///   - tunnels: decides `CONNECT`; `nil` answers `CONNECT` with `405`.
    ///   - dialer: opens upstream connections.
    ///   - sandbox: the sandbox this listener belongs to.
    ///   - via: the listener, for the router's context.
    ///   - headGuard: the guard ahead of the decoder, told when heads arrive.
    ///   - refusalsPerConnection: the refusal after which the connection is closed.
    package init(
        router: any HTTPRouter, tunnels: (any TunnelRouter)? = nil, dialer: any UpstreamDialer,
        sandbox: String, via: AuditEvent.Via, headGuard: RequestHeadGuard? = nil,
        refusalsPerConnection: Int = GatewayLimits().refusalsPerConnection
    ) {
        self.refusalsAllowed = max(1, refusalsPerConnection)
        self.router = router
        self.tunnels = tunnels
        self.dialer = dialer
        self.sandbox = sandbox
        self.via = via
        self.headGuard = headGuard
    }

    // MARK: reading from the client

    private var canReadClient: Bool {
        switch phase {
        case .awaitingHead: return inbox.isEmpty
        case .discardingBody: return inbox.isEmpty
        case .forwarding:
            return !requestEnded && inbox.isEmpty && (upstream?.isWritable ?? false)
        case .tunnelReady, .checkingBody, .discardingBeforeAnswer: return inbox.isEmpty
        case .routing, .dialing, .tunnelling, .closing: return false
        }
    }

    private func resumeReadingClient() {
        guard pendingRead, canReadClient, let context else { return }
        pendingRead = false
        context.read()
    }

    /// Works through buffered request parts as far as the current phase allows.
    private func drainInbox() {
        while let part = inbox.first {
            switch phase {
            case .awaitingHead:
                inbox.removeFirst()
                guard case .head(let head) = part else {
                    // Body without a head cannot happen after a clean exchange; refuse.
                    close()
                    return
                }
                startRequest(head)
            case .forwarding:
                if requestEnded { return }
                inbox.removeFirst()
                forwardRequestPart(part)
            case .discardingBody:
                inbox.removeFirst()
                if case .end = part {
                    requestEnded = true
                    finishRequest()
                }
            case .checkingBody:
                inbox.removeFirst()
                if !checkBody(with: part) { return }
            case .discardingBeforeAnswer:
                inbox.removeFirst()
                if case .end = part, let answer = pendingAnswer {
                    pendingAnswer = nil
                    requestEnded = true
                    respondLocally(answer)
                    return
                }
            case .tunnelReady:
                inbox.removeFirst()
                if case .end = part, let plan = tunnelPlan {
                    tunnelPlan = nil
                    inbox.removeAll()
                    openTunnel(to: plan.upstream, startedAt: plan.startedAt, completion: plan.completion)
                    return
                }
            case .routing, .dialing:
                return
            case .tunnelling, .closing:
                inbox.removeAll()
                return
            }
        }
        resumeReadingClient()
    }

    // MARK: one request

    private func startRequest(_ head: HTTPRequestHead) {
        guard let context else { return }
        headGuard?.headReceived()
        generation += 1
        request = head
        requestEnded = false
        exchange = nil
        checkedBody = []
        heldParts = []
        pendingAnswer = nil
        continueSent = false
        inspector = nil
        heldTail = nil
        responseHeadSent = false
        responseEnded = false
        responseCloseDelimited = false
        responseStatus = nil
        bytesUp = 0
        bytesDown = 0
        startedAt = .now()
        keepAlive = head.isKeepAlive
        requestChunked = head.headers[canonicalForm: "transfer-encoding"].contains { $0.lowercased() == "chunked" }
        let length = head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0
        requestHasBody = requestChunked || length > 0

        if let problem = RequestValidation.problem(in: head) {
            respondLocally(Refusal(.badRequest, reason: problem, closeConnection: true).response)
            return
        }
        if head.method == .CONNECT {
            startTunnel(head)
            return
        }
        phase = .routing
        let requestContext = RequestContext(
            sandbox: sandbox, via: via, eventLoop: context.eventLoop, clientAddress: context.channel.remoteAddress)
        let generation = self.generation
        router.route(head, context: requestContext).hop(to: context.eventLoop).whenComplete { result in
            guard self.generation == generation, self.phase == .routing else { return }
            switch result {
            case .success(.respond(let response)):
                self.respondLocally(response)
            case .success(.forward(let exchange)):
                if exchange.bodyCheck != nil && self.requestHasBody {
                    self.beginBodyCheck(exchange)
                } else {
                    self.dial(exchange)
                }
            case .failure:
                self.respondLocally(Refusal(.badGateway, reason: "the gateway could not route this request", closeConnection: true).response)
            }
        }
    }

    /// Holds the body's first parts until the exchange's check decides.
    private func beginBodyCheck(_ exchange: UpstreamExchange) {
        self.exchange = exchange
        phase = .checkingBody
        if let request, expectsContinue(request), let context {
            // The client waits for this before it sends the body the check needs.
            continueSent = true
            var continueHead = HTTPResponseHead(version: request.version, status: .continue)
            continueHead.headers = HTTPHeaders()
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.head(continueHead)), promise: nil)
        }
        drainInbox()
    }

    /// Feeds one part to the body check; false once the check has decided (the phase has
    /// changed and the inbox is the next phase's).
    private func checkBody(with part: HTTPServerRequestPart) -> Bool {
        guard let exchange, let check = exchange.bodyCheck else { return false }
        heldParts.append(part)
        var ended = false
        switch part {
        case .body(let buffer): checkedBody += buffer.readableBytesView
        case .end: ended = true
        case .head: break
        }
        let verdict: UpstreamExchange.BodyCheck
        if checkedBody.count > Self.checkedBodyLimit {
            verdict = .refuse(Refusal(.payloadTooLarge, reason: "the start of this request is too large to check").response)
        } else {
            verdict = check(checkedBody, ended)
        }
        switch verdict {
        case .needMore:
            if ended {
                self.exchange = nil
                heldParts = []
                requestEnded = true
                respondLocally(Refusal(.badRequest, reason: "the request body ended before it could be checked").response)
                return false
            }
            return true
        case .pass:
            // The held parts go first, then whatever follows, once connected.
            for held in heldParts.reversed() { inbox.prepend(held) }
            heldParts = []
            checkedBody = []
            dial(exchange)
            return false
        case .refuse(let answer):
            self.exchange = nil
            heldParts = []
            checkedBody = []
            if ended {
                requestEnded = true
                respondLocally(answer)
            } else {
                pendingAnswer = answer
                phase = .discardingBeforeAnswer
                drainInbox()
            }
            return false
        }
    }

    private func dial(_ exchange: UpstreamExchange) {
        guard let context else { return }
        self.exchange = exchange
        phase = .dialing
        let generation = self.generation
        dialer.dial(exchange.target, on: context.eventLoop).hop(to: context.eventLoop).whenComplete { result in
            guard self.generation == generation, self.phase == .dialing else {
                if case .success(let channel) = result { channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let channel):
                self.connected(to: channel)
            case .failure(let error):
                let refusal = Self.refusal(for: error, host: exchange.target.host, port: exchange.target.port)
                self.finishExchange(failure: refusal.reason, status: Int(refusal.status.code))
                self.respondLocally(refusal.response)
            }
        }
    }

    private func connected(to channel: any Channel) {
        guard let exchange, let request else { return }
        let handler = UpstreamResponseHandler(forwarder: self, generation: generation)
        do {
            try channel.pipeline.syncOperations.addHTTPClientHandlers(leftOverBytesStrategy: .dropBytes)
            try channel.pipeline.syncOperations.addHandler(handler)
        } catch {
            channel.close(promise: nil)
            finishExchange(failure: "pipeline setup failed", status: 502)
            respondLocally(Refusal(.badGateway, reason: "cannot set up the connection to \(exchange.target.host)", closeConnection: true).response)
            return
        }
        upstream = channel
        upstreamHandler = handler
        channel.closeFuture.whenComplete { _ in self.upstreamClosed(generation: handler.generation) }

        var head = exchange.head
        var headers = HopByHopHeaders.stripped(head.headers, keeping: exchange.gatewayHeaders)
        headers.remove(name: "expect")
        headers.remove(name: "content-length")
        if requestChunked {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        } else if let length = request.headers.first(name: "content-length") {
            headers.add(name: "Content-Length", value: length)
        }
        headers.add(name: "Connection", value: "close")
        head.headers = headers
        head.version = .http1_1
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if !requestHasBody {
            // Nothing more will come for this request; its `.end` may already be queued.
        }
        channel.flush()

        if expectsContinue(request) && !requestEnded && !continueSent {
            var continueHead = HTTPResponseHead(version: request.version, status: .continue)
            continueHead.headers = HTTPHeaders()
            context?.writeAndFlush(NIOAny(HTTPServerResponsePart.head(continueHead)), promise: nil)
        }
        phase = .forwarding
        if requestHasBody, let makeInspector = exchange.bodyInspector { inspector = makeInspector() }
        drainInbox()
        channel.read()
    }

    private func forwardRequestPart(_ part: HTTPServerRequestPart) {
        guard let upstream else { return }
        switch part {
        case .head:
            return
        case .body(let buffer):
            if let inspector {
                if let refusal = inspector.inspect(buffer) {
                    refuseInspected(refusal)
                    return
                }
                writeHoldingTail(buffer, to: upstream)
                return
            }
            bytesUp += UInt64(buffer.readableBytes)
            upstream.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        case .end(let trailers):
            requestEnded = true
            if let inspector {
                if let refusal = inspector.finish() {
                    refuseInspected(refusal)
                    return
                }
                self.inspector = nil
                if let held = heldTail, held.readableBytes > 0 {
                    bytesUp += UInt64(held.readableBytes)
                    upstream.write(HTTPClientRequestPart.body(.byteBuffer(held)), promise: nil)
                }
                heldTail = nil
            }
            upstream.writeAndFlush(HTTPClientRequestPart.end(trailers), promise: nil)
            if responseEnded { finishRequest() }
        }
    }

    /// Forwards all of the body so far except its last `heldBodyBytes` bytes, which wait
    /// for the inspector's decision.
    private func writeHoldingTail(_ buffer: ByteBuffer, to upstream: any Channel) {
        let hold = UpstreamExchange.heldBodyBytes
        var buffer = buffer
        var out: ByteBuffer?
        if buffer.readableBytes >= hold {
            // The held bytes go first, then all of this chunk but its tail.
            out = heldTail
            if out?.readableBytes == 0 { out = nil }
            if let slice = buffer.readSlice(length: buffer.readableBytes - hold), slice.readableBytes > 0 {
                if out == nil { out = slice } else { out!.writeImmutableBuffer(slice) }
            }
            heldTail = buffer
        } else {
            var tail = heldTail ?? ByteBuffer()
            tail.writeImmutableBuffer(buffer)
            if tail.readableBytes > hold { out = tail.readSlice(length: tail.readableBytes - hold) }
            heldTail = tail
        }
        if let out {
            bytesUp += UInt64(out.readableBytes)
            upstream.write(HTTPClientRequestPart.body(.byteBuffer(out)), promise: nil)
        }
    }

    /// The inspector refused the body: the upstream, which never got all of it, is closed,
    /// and the refusal is the answer (once the body has been read), unless the upstream's
    /// response has begun, when the connection is aborted.
    private func refuseInspected(_ refusal: LocalResponse) {
        inspector = nil
        heldTail = nil
        exchange = nil
        upstreamHandler?.detach()
        upstream?.close(promise: nil)
        upstream = nil
        if responseHeadSent {
            phase = .closing
            inbox.removeAll()
            context?.close(promise: nil)
        } else if requestEnded {
            respondLocally(refusal)
        } else {
            pendingAnswer = refusal
            phase = .discardingBeforeAnswer
        }
    }

    private func expectsContinue(_ head: HTTPRequestHead) -> Bool {
        head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
    }

    // MARK: responses

    /// Writes a gateway-made response; closes afterwards when asked to, when the client
    /// asked to, when the request's body has not been read (it is never forwarded), or
    /// when this is the connection's `refusalsPerConnection`th refusal.
    private func respondLocally(_ response: LocalResponse) {
        guard let context, let request else { return }
        if response.headers.contains(name: "X-Airlock-Denied") { refusals += 1 }
        let unreadBody = requestHasBody && !requestEnded
        let close = response.closeConnection || !keepAlive || unreadBody || refusals >= refusalsAllowed
        var head = HTTPResponseHead(version: request.version.major == 1 && request.version.minor == 0 ? .http1_0 : .http1_1,
                                    status: response.status)
        var headers = response.headers
        let body = context.channel.allocator.buffer(string: request.method == .HEAD ? "" : response.body)
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.utf8.count))
        headers.replaceOrAdd(name: "Connection", value: close ? "close" : "keep-alive")
        head.headers = headers
        responseStatus = Int(response.status.code)
        responseHeadSent = true
        responseEnded = true
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        if body.readableBytes > 0 {
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
        }
        let written = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if close {
            phase = .closing
            inbox.removeAll()
            written.whenComplete { _ in self.context?.close(promise: nil) }
            return
        }
        if requestEnded {
            finishRequest()
        } else {
            phase = .discardingBody
            drainInbox()
        }
    }

    fileprivate func upstreamResponseHead(_ upstreamHead: HTTPResponseHead, generation: Int) {
        guard generation == self.generation, phase == .forwarding, let request, let context else { return }
        if let replacement = exchange?.interceptResponse?(upstreamHead) {
            upstreamHandler?.detach()
            upstream?.close(promise: nil)
            upstream = nil
            finishExchange(failure: nil, status: Int(replacement.status.code))
            respondLocally(replacement)
            return
        }
        let noBody = request.method == .HEAD || upstreamHead.status == .noContent
            || upstreamHead.status == .notModified || upstreamHead.status.code < 200
        let upstreamChunked = upstreamHead.headers[canonicalForm: "transfer-encoding"].contains { $0.lowercased() == "chunked" }
        let length = upstreamHead.headers.first(name: "content-length")
        var headers = HopByHopHeaders.stripped(upstreamHead.headers)
        headers.remove(name: "content-length")
        let clientIsHTTP10 = request.version.major == 1 && request.version.minor == 0
        if noBody {
            if let length { headers.add(name: "Content-Length", value: length) }
        } else if let length, !upstreamChunked {
            headers.add(name: "Content-Length", value: length)
        } else if clientIsHTTP10 {
            responseCloseDelimited = true
        } else {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        if !requestEnded && requestHasBody {
            // The upstream answered before the request body was done; the rest of the
            // body cannot be skipped reliably, so this connection ends with the response.
            keepAlive = false
        }
        if responseCloseDelimited { keepAlive = false }
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        var head = HTTPResponseHead(version: clientIsHTTP10 ? .http1_0 : .http1_1, status: upstreamHead.status)
        head.headers = headers
        responseStatus = Int(upstreamHead.status.code)
        responseHeadSent = true
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
    }

    fileprivate func upstreamResponseBody(_ buffer: ByteBuffer, generation: Int) {
        guard generation == self.generation, phase == .forwarding, responseHeadSent, let context else { return }
        bytesDown += UInt64(buffer.readableBytes)
        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
    }

    fileprivate func upstreamReadComplete(generation: Int) {
        guard generation == self.generation else { return }
        context?.flush()
    }

    fileprivate func upstreamResponseEnd(_ trailers: HTTPHeaders?, generation: Int) {
        guard generation == self.generation, phase == .forwarding, let context else { return }
        responseEnded = true
        upstreamHandler?.detach()
        upstream?.close(promise: nil)
        upstream = nil
        finishExchange(failure: nil)
        let written = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(responseCloseDelimited ? nil : trailers)))
        if !keepAlive {
            phase = .closing
            inbox.removeAll()
            written.whenComplete { _ in self.context?.close(promise: nil) }
            return
        }
        if requestEnded { finishRequest() }
    }

    fileprivate var clientWritable: Bool {
        context?.channel.isWritable ?? false
    }

    fileprivate func upstreamWritabilityChanged(generation: Int) {
        guard generation == self.generation else { return }
        resumeReadingClient()
    }

    private func upstreamClosed(generation: Int) {
        guard generation == self.generation, phase == .forwarding, !responseEnded else { return }
        upstream = nil
        upstreamHandler = nil
        let host = exchange?.target.host ?? "the upstream"
        if responseHeadSent {
            // Mid-stream: abort, so the client sees a truncated response, never a clean end.
            finishExchange(failure: "upstream \(host) closed the connection mid-response")
            phase = .closing
            inbox.removeAll()
            context?.close(promise: nil)
        } else {
            let refusal = Refusal(.badGateway, reason: "upstream \(host) closed the connection before answering", closeConnection: true)
            finishExchange(failure: refusal.reason, status: 502)
            respondLocally(refusal.response)
        }
    }

    /// The request and its response are both complete; ready for the next request.
    private func finishRequest() {
        guard responseEnded, requestEnded, phase != .closing else { return }
        phase = .awaitingHead
        request = nil
        if headGuard?.awaitNextHead() == false {
            phase = .closing
            inbox.removeAll()
            return
        }
        drainInbox()
    }

    /// Reports the exchange's end once; `status` is the gateway's own answer when it
    /// replaces the upstream's.
    private func finishExchange(failure: String?, status: Int? = nil) {
        guard let exchange else { return }
        self.exchange = nil
        let ms = startedAt.millisecondsAgo
        exchange.completion?(ExchangeOutcome(
            status: status ?? (responseHeadSent ? responseStatus : nil), bytesUp: bytesUp, bytesDown: bytesDown,
            milliseconds: ms, failure: failure))
    }

    private func close() {
        phase = .closing
        inbox.removeAll()
        context?.close(promise: nil)
    }

    /// The refusal for a failed dial.
    package static func refusal(for error: Error, host: String, port: Int) -> Refusal {
        if let error = error as? DialError {
            return Refusal(error.status, reason: error.reason, closeConnection: true)
        }
        return Refusal(.badGateway, reason: "cannot connect to \(host):\(port)", closeConnection: true)
    }

    // MARK: CONNECT

    private func startTunnel(_ head: HTTPRequestHead) {
        guard let context else { return }
        guard let tunnels else {
            respondLocally(Refusal(.methodNotAllowed, reason: "CONNECT is served only by the proxy on port 3128", closeConnection: true).response)
            return
        }
        let authority: HostAndPort
        switch HostAndPort.parseAuthority(head.uri) {
        case .success(let parsed): authority = parsed
        case .failure(let problem):
            respondLocally(Refusal(.badRequest, reason: problem.description, closeConnection: true).response)
            return
        }
        let requestContext = RequestContext(
            sandbox: sandbox, via: .connect, eventLoop: context.eventLoop, clientAddress: context.channel.remoteAddress)
        switch tunnels.routeTunnel(host: authority.host, port: authority.port, context: requestContext) {
        case .refuse(let response):
            var response = response
            response.closeConnection = true
            respondLocally(response)
        case .open(let target, let completion):
            phase = .dialing
            let startedAt = NIODeadline.now()
            let generation = self.generation
            TunnelUpstream.dial(target, dialer: dialer, pipeline: context.pipeline, on: context.eventLoop)
                .hop(to: context.eventLoop).whenComplete { result in
                guard self.generation == generation, self.phase == .dialing else {
                    if case .success(let upstream) = result { upstream.close() }
                    return
                }
                switch result {
                case .success(let upstream):
                    self.tunnelPlan = (upstream, startedAt, completion)
                    self.phase = .tunnelReady
                    self.drainInbox()
                case .failure(let error):
                    let refusal = Self.refusal(for: error, host: target.host, port: target.port)
                    self.respondLocally(refusal.response)
                    let ms = startedAt.millisecondsAgo
                    completion(ExchangeOutcome(status: Int(refusal.status.code), bytesUp: 0, bytesDown: 0,
                                               milliseconds: ms, failure: refusal.reason))
                }
            }
        }
    }

    private func openTunnel(to upstream: TunnelUpstream, startedAt: NIODeadline, completion: @escaping @Sendable (ExchangeOutcome) -> Void) {
        switch upstream {
        case .channel(let channel):
            glueTunnel(to: channel, startedAt: startedAt, completion: completion)
        case .socket(let fd):
            handOffTunnel(to: fd, startedAt: startedAt, completion: completion)
        }
    }

    /// Answers the `CONNECT` and hands the connection to the socket loop, which splices
    /// it with `upstream`: the answer and any bytes the client sent early go first.
    private func handOffTunnel(to upstream: CInt, startedAt: NIODeadline, completion: @escaping @Sendable (ExchangeOutcome) -> Void) {
        guard let context, let request,
              let handoff = try? context.pipeline.syncOperations.handler(type: TunnelHandoff.self) else {
            TunnelUpstream.socket(upstream).close()
            self.context?.close(promise: nil)
            return
        }
        phase = .tunnelling
        let channel = context.channel
        let leftover = LeftoverBytes()
        let decoderRemoved = context.eventLoop.makePromise(of: Void.self)
        do {
            let pipeline = context.pipeline
            try pipeline.syncOperations.addHandler(leftover, position: .after(self))
            // Removing the decoder (done on the next loop tick) passes on any bytes it
            // still holds, sent after the CONNECT head; they reach `leftover`.
            let decoder = try pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            pipeline.syncOperations.removeHandler(decoder, promise: decoderRemoved)
        } catch {
            TunnelUpstream.socket(upstream).close()
            context.close(promise: nil)
            return
        }
        let answer = Array("HTTP/\(request.version.major).\(request.version.minor) 200 Connection established\r\n\r\n".utf8)
        decoderRemoved.futureResult.whenComplete { _ in
            handoff.handOff(channel, upstream: upstream, toClient: answer, toUpstream: leftover.bytes) { totals in
                let ms = startedAt.millisecondsAgo
                // The reason an established tunnel ended early (idle, reset) goes on its line.
                completion(ExchangeOutcome(status: 200, bytesUp: totals.up, bytesDown: totals.down, milliseconds: ms,
                                           failure: totals.ending))
            }
        }
    }

    /// Answers the `CONNECT` and glues the client's channel to the upstream's, byte for byte.
    private func glueTunnel(to upstream: any Channel, startedAt: NIODeadline, completion: @escaping @Sendable (ExchangeOutcome) -> Void) {
        guard let context, let request else {
            upstream.close(promise: nil)
            return
        }
        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair()
        do {
            var head = HTTPResponseHead(version: request.version, status: .ok)
            head.headers = HTTPHeaders()
            context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
            phase = .tunnelling
            try upstream.pipeline.syncOperations.addHandler(upstreamGlue)
            try context.pipeline.syncOperations.addHandler(clientGlue, position: .after(self))
            let pipeline = context.pipeline
            let decoder = try pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            let encoder = try pipeline.syncOperations.handler(type: HTTPResponseEncoder.self)
            // Removing the decoder (done on the next loop tick) forwards any bytes it still
            // holds, sent after the CONNECT head, to the glue; flush them on.
            let decoderRemoved = context.eventLoop.makePromise(of: Void.self)
            decoderRemoved.futureResult.whenComplete { _ in upstream.flush() }
            pipeline.syncOperations.removeHandler(decoder, promise: decoderRemoved)
            pipeline.syncOperations.removeHandler(encoder, promise: nil)
            if let headGuard { pipeline.syncOperations.removeHandler(headGuard, promise: nil) }
            pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            upstream.close(promise: nil)
            context.close(promise: nil)
        }
        let client = context.channel
        let done = client.closeFuture.and(upstream.closeFuture)
        done.whenComplete { _ in
            let ms = startedAt.millisecondsAgo
            completion(ExchangeOutcome(status: 200, bytesUp: clientGlue.bytesRead, bytesDown: upstreamGlue.bytesRead, milliseconds: ms))
        }
        upstream.read()
        // The client's read was parked by this handler while dialling, and this handler is
        // gone now: ask for the tunnel's first bytes, or they would wait in the socket.
        client.read()
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
        if phase == .tunnelling {
            context.fireChannelRead(data)
            return
        }
        let part = unwrapInboundIn(data)
        // The guard ahead of the decoder counts head bytes by what the decoder produced.
        switch part {
        case .head(let head):
            let chunked = head.headers[canonicalForm: "transfer-encoding"].contains { $0.lowercased() == "chunked" }
            let length = chunked ? nil : (head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0)
            headGuard?.headDecoded(isConnect: head.method == .CONNECT, bodyLength: length)
        case .end: headGuard?.requestDecoded()
        case .body: break
        }
        if phase == .closing { return }
        inbox.append(part)
        drainInbox()
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        upstream?.flush()
        context.fireChannelReadComplete()
    }

    package func read(context: ChannelHandlerContext) {
        if phase == .tunnelling {
            context.read()
            return
        }
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
        if let plan = tunnelPlan {
            tunnelPlan = nil
            plan.upstream.close()
        }
        if phase != .tunnelling {
            if exchange != nil { finishExchange(failure: "the sandbox closed the connection") }
            upstreamHandler?.detach()
            upstream?.close(promise: nil)
            upstream = nil
            phase = .closing
        }
        context.fireChannelInactive()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event, phase != .tunnelling {
            // The client will send nothing more: finish the exchange in flight, then close.
            keepAlive = false
            if phase == .awaitingHead || phase == .discardingBody { close() }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        if phase == .tunnelling {
            context.fireErrorCaught(error)
            return
        }
        if headGuard?.hasAnswered == true {
            // The guard answered (431, 408) and closes; the decoder's complaint about the
            // head it never finished is not a second answer.
            close()
            return
        }
        if error is HTTPParserError, phase == .awaitingHead {
            // A malformed request: answer it as such, then close.
            if request == nil {
                request = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
                requestHasBody = false
                requestEnded = true
            }
            respondLocally(Refusal(.badRequest, reason: "malformed HTTP request (\(RequestValidation.describe(error)))", closeConnection: true).response)
            return
        }
        close()
    }
}

/// Reads the upstream's response and hands it to the forwarder; reads only while the
/// client can take more.
private final class UpstreamResponseHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private var forwarder: HTTPForwarder?
    let generation: Int
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    init(forwarder: HTTPForwarder, generation: Int) {
        self.forwarder = forwarder
        self.generation = generation
    }

    /// Stops delivering to the forwarder (the exchange is over).
    func detach() {
        forwarder = nil
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

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
