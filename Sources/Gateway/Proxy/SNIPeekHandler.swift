import NIOCore

/// Transparent TLS on port 443: reads the ClientHello (bounded in size and time), routes
/// by its server name, dials, replays the bytes it read, then splices the two channels.
///
/// It never answers: a refused, nameless or malformed hello closes the connection, and
/// the refusal is audited. While it decides and dials, it reads nothing more.
package final class SNIPeekHandler: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias OutboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private enum Phase { case peeking, dialing, spliced, closed }

    private let router: any TunnelRouter
    private let dialer: any UpstreamDialer
    private let audit: AuditLog
    private let sandbox: String
    private let maxBytes: Int
    private let timeout: TimeAmount
    private var phase = Phase.peeking
    private var buffered: ByteBuffer?
    private var deadline: Scheduled<Void>?
    private var pendingRead = false

    /// - Parameters:
    ///   - router: decides the tunnel for the server name.
    ///   - dialer: opens the upstream connection (port 443).
    ///   - audit: where malformed or nameless hellos are recorded.
    ///   - sandbox: the sandbox this listener belongs to.
    ///   - maxBytes: the most bytes buffered while looking for the server name.
    ///   - timeout: the time allowed for a complete ClientHello.
    package init(router: any TunnelRouter, dialer: any UpstreamDialer, audit: AuditLog, sandbox: String, maxBytes: Int, timeout: TimeAmount) {
        self.router = router
        self.dialer = dialer
        self.audit = audit
        self.sandbox = sandbox
        self.maxBytes = maxBytes
        self.timeout = timeout
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context: context) }
    }

    package func channelActive(context: ChannelHandlerContext) {
        arm(context: context)
        context.fireChannelActive()
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    private func arm(context: ChannelHandlerContext) {
        guard deadline == nil, phase == .peeking else { return }
        deadline = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, self.phase == .peeking else { return }
            self.refuse(context: context, host: nil, reason: "no complete TLS ClientHello within the handshake timeout")
        }
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard phase == .peeking || phase == .dialing else { return }
        var incoming = unwrapInboundIn(data)
        if buffered == nil {
            buffered = incoming
        } else {
            buffered!.writeBuffer(&incoming)
        }
        guard phase == .peeking, let bytes = buffered else { return }
        switch ClientHello.peek(bytes) {
        case .needMoreBytes:
            if bytes.readableBytes >= maxBytes {
                refuse(context: context, host: nil, reason: "TLS ClientHello larger than \(maxBytes) bytes")
            }
        case .invalid(let why):
            refuse(context: context, host: nil, reason: "not TLS: \(why)")
        case .noServerName:
            refuse(context: context, host: nil, reason: "TLS ClientHello without a server name (SNI)")
        case .serverName(let name):
            route(context: context, name: name)
        }
    }

    private func route(context: ChannelHandlerContext, name: String) {
        deadline?.cancel()
        deadline = nil
        let requestContext = RequestContext(sandbox: sandbox, via: .sni, eventLoop: context.eventLoop, clientAddress: context.channel.remoteAddress)
        switch router.routeTunnel(host: name, port: 443, context: requestContext) {
        case .refuse:
            // The router audited the refusal; transparent TLS cannot explain itself.
            phase = .closed
            buffered = nil
            context.close(promise: nil)
        case .open(let target, let completion):
            phase = .dialing
            let startedAt = NIODeadline.now()
            TunnelUpstream.dial(target, dialer: dialer, pipeline: context.pipeline, on: context.eventLoop)
                .hop(to: context.eventLoop).whenComplete { result in
                switch result {
                case .success(let upstream):
                    guard self.phase == .dialing, context.channel.isActive else {
                        upstream.close()
                        return
                    }
                    switch upstream {
                    case .channel(let channel):
                        self.splice(context: context, upstream: channel, startedAt: startedAt, completion: completion)
                    case .socket(let fd):
                        self.handOff(context: context, upstream: fd, startedAt: startedAt, completion: completion)
                    }
                case .failure(let error):
                    let reason = (error as? DialError)?.reason ?? "cannot connect to \(target.host):\(target.port)"
                    let ms = startedAt.millisecondsAgo
                    completion(ExchangeOutcome(status: nil, bytesUp: 0, bytesDown: 0, milliseconds: ms, failure: reason))
                    self.phase = .closed
                    self.buffered = nil
                    context.close(promise: nil)
                }
            }
        }
    }

    /// Hands the connection to the socket loop, which replays the ClientHello to the
    /// upstream and splices the two sockets.
    private func handOff(context: ChannelHandlerContext, upstream: CInt, startedAt: NIODeadline, completion: @escaping @Sendable (ExchangeOutcome) -> Void) {
        phase = .spliced
        var hello = buffered ?? ByteBuffer()
        buffered = nil
        let replay = hello.readBytes(length: hello.readableBytes) ?? []
        guard let handoff = try? context.pipeline.syncOperations.handler(type: TunnelHandoff.self) else {
            TunnelUpstream.socket(upstream).close()
            context.close(promise: nil)
            return
        }
        handoff.handOff(context.channel, upstream: upstream, toClient: [], toUpstream: replay) { totals in
            let ms = startedAt.millisecondsAgo
            completion(ExchangeOutcome(status: nil, bytesUp: totals.up, bytesDown: totals.down, milliseconds: ms))
        }
    }

    private func splice(context: ChannelHandlerContext, upstream: any Channel, startedAt: NIODeadline, completion: @escaping @Sendable (ExchangeOutcome) -> Void) {
        phase = .spliced
        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair()
        do {
            try upstream.pipeline.syncOperations.addHandler(upstreamGlue)
            try context.pipeline.syncOperations.addHandler(clientGlue, position: .after(self))
        } catch {
            upstream.close(promise: nil)
            context.close(promise: nil)
            return
        }
        if var hello = buffered {
            buffered = nil
            // Replayed through the glue, so the bytes count as sent by the sandbox.
            context.fireChannelRead(NIOAny(hello))
            context.fireChannelReadComplete()
            hello.clear()
        }
        context.channel.closeFuture.and(upstream.closeFuture).whenComplete { _ in
            let ms = startedAt.millisecondsAgo
            completion(ExchangeOutcome(status: nil, bytesUp: clientGlue.bytesRead, bytesDown: upstreamGlue.bytesRead, milliseconds: ms))
        }
        let channel = context.channel
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        upstream.read()
        if pendingRead {
            pendingRead = false
            channel.read()
        }
    }

    private func refuse(context: ChannelHandlerContext, host: String?, reason: String) {
        guard phase == .peeking else { return }
        phase = .closed
        buffered = nil
        deadline?.cancel()
        deadline = nil
        audit.record(AuditEvent(.egressDeny, sandbox: sandbox, via: .sni, host: host, port: 443, reason: reason))
        context.close(promise: nil)
    }

    package func read(context: ChannelHandlerContext) {
        if phase == .peeking || phase == .spliced {
            context.read()
        } else {
            pendingRead = true
        }
    }

    package func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        if phase == .peeking { phase = .closed }
        context.fireChannelInactive()
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        if phase == .spliced {
            context.fireErrorCaught(error)
            return
        }
        context.close(promise: nil)
    }
}
