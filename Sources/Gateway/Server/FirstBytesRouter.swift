import NIOCore
import GatewayCore

/// A transparent listener on a port of the policy's other than 80 and 443: the first byte
/// the client sends says what follows. A TLS record (`0x16`) goes on as on port 443,
/// routed by the ClientHello's server name; an uppercase letter (the start of an HTTP
/// method) goes on as on port 80, routed by `Host`; either way the upstream is dialled on
/// this port. Anything else is refused (audited `egress_deny`) and closed: the gateway
/// cannot tell which name such a client meant, so it cannot decide.
///
/// It reads one chunk, installs the pipeline for what it saw behind itself, passes the
/// chunk on and leaves. A client that sends nothing is closed by the first-bytes timeout.
package final class FirstBytesRouter: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer

    /// What the first byte said.
    package enum Kind: Equatable {
        case tls, http, other
    }

    private let port: Int
    private let audit: AuditLog
    private let sandbox: String
    private let timeout: TimeAmount
    private let install: (Kind, any Channel) throws -> Void
    private var decided = false
    private var deadline: Scheduled<Void>?

    /// - Parameters:
    ///   - port: the listener's port, for the audit line.
    ///   - timeout: how long the client has to send its first byte.
    ///   - install: adds the TLS or HTTP handlers to the channel (after this one).
    package init(port: Int, audit: AuditLog, sandbox: String, timeout: TimeAmount,
                 install: @escaping (Kind, any Channel) throws -> Void) {
        self.port = port
        self.audit = audit
        self.sandbox = sandbox
        self.timeout = timeout
        self.install = install
    }

    /// What a connection whose first byte is `byte` carries.
    package static func kind(ofFirstByte byte: UInt8) -> Kind {
        if byte == 0x16 { return .tls }
        if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { return .http }
        return .other
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context: context) }
    }

    package func channelActive(context: ChannelHandlerContext) {
        arm(context: context)
        context.fireChannelActive()
    }

    private func arm(context: ChannelHandlerContext) {
        guard deadline == nil, !decided else { return }
        deadline = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, !self.decided else { return }
            self.refuse(context: context, reason: "nothing sent within the handshake timeout on port \(self.port)")
        }
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !decided else { return }
        let bytes = unwrapInboundIn(data)
        guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return }
        let kind = Self.kind(ofFirstByte: first)
        guard kind != .other else {
            refuse(context: context, reason: "neither a TLS ClientHello nor an HTTP request on port \(port); "
                + "only TLS with a server name and HTTP with a Host can be routed")
            return
        }
        decided = true
        deadline?.cancel()
        deadline = nil
        do {
            try install(kind, context.channel)
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func refuse(context: ChannelHandlerContext, reason: String) {
        decided = true
        deadline?.cancel()
        deadline = nil
        audit.record(AuditEvent(.egressDeny, sandbox: sandbox, via: .port, port: port, reason: reason))
        context.close(promise: nil)
    }

    package func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }
}
