import NIOCore
import GatewayCore

/// Transparent TLS on port 443 (and on the policy's other ports): reads the ClientHello (bounded in size and time), has the
/// `TunnelOpener` route it by its server name and dial, then hands the connection to the
/// tunnel sink with the bytes it read, which the upstream gets first.
///
/// It never answers: a refused, nameless or malformed hello closes the connection, and
/// the refusal is audited. While it decides and dials, it reads nothing more.
package final class SNIPeekHandler: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias OutboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private enum Phase { case peeking, dialing(OpeningTunnel), handedOff, closed }

    private let opener: TunnelOpener
    private let audit: AuditLog
    private let sandbox: String
    private let maxBytes: Int
    private let timeout: TimeAmount
    private let port: Int
    private var phase = Phase.peeking
    private var buffered: ByteBuffer?
    private var deadline: Scheduled<Void>?

    /// - Parameters:
    ///   - opener: decides, dials (on `port`) and hands off the tunnel (`via: .sni`).
    ///   - audit: where malformed or nameless hellos are recorded.
    ///   - sandbox: the sandbox this listener belongs to.
    ///   - maxBytes: the most bytes buffered while looking for the server name.
    ///   - timeout: the time allowed for a complete ClientHello.
    ///   - port: the port the client connected to, which the upstream is dialled on.
    package init(opener: TunnelOpener, audit: AuditLog, sandbox: String, maxBytes: Int, timeout: TimeAmount, port: Int = 443) {
        self.port = port
        self.opener = opener
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
        guard deadline == nil, isPeeking else { return }
        deadline = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, self.isPeeking else { return }
            self.refuse(context: context, host: nil, reason: "no complete TLS ClientHello within the handshake timeout")
        }
    }

    private var isPeeking: Bool {
        if case .peeking = phase { return true }
        return false
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch phase {
        case .peeking, .dialing: break
        case .handedOff, .closed: return
        }
        var incoming = unwrapInboundIn(data)
        if buffered == nil {
            buffered = incoming
        } else {
            buffered!.writeBuffer(&incoming)
        }
        guard isPeeking, let bytes = buffered else { return }
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
        switch opener.decide(host: name, port: port, for: context.channel) {
        case .refused:
            // The router audited the refusal; transparent TLS cannot explain itself.
            close(context: context)
        case .allowed(let tunnel):
            phase = .dialing(tunnel)
            tunnel.dial(on: context.eventLoop) { refusal in
                guard case .dialing = self.phase else { return }
                if refusal != nil {
                    self.close(context: context)
                    return
                }
                // Everything read so far, the whole ClientHello and anything after it, goes
                // to the upstream first.
                self.phase = .handedOff
                var hello = self.buffered ?? ByteBuffer()
                self.buffered = nil
                let replay = hello.readBytes(length: hello.readableBytes) ?? []
                tunnel.handOff(context.channel, toClient: [], toUpstream: replay)
            }
        }
    }

    private func close(context: ChannelHandlerContext) {
        phase = .closed
        buffered = nil
        context.close(promise: nil)
    }

    private func refuse(context: ChannelHandlerContext, host: String?, reason: String) {
        guard isPeeking else { return }
        phase = .closed
        buffered = nil
        deadline?.cancel()
        deadline = nil
        audit.record(AuditEvent(.egressDeny, sandbox: sandbox, via: .sni, host: host, port: port, reason: reason))
        context.close(promise: nil)
    }

    package func read(context: ChannelHandlerContext) {
        // While it decides and dials, nothing more is read; then the connection leaves NIO.
        if isPeeking { context.read() }
    }

    package func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        if case .dialing(let tunnel) = phase { tunnel.cancel() }
        phase = .closed
        context.fireChannelInactive()
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
