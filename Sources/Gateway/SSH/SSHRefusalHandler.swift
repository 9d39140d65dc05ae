import NIOCore
import GatewayCore

/// Port 22: answers every connection with `SSHRefusal.answer` (the identification string
/// and an `SSH_MSG_DISCONNECT` saying SSH is not offered and how to use HTTPS), audits
/// `ssh_deny`, and closes.
///
/// It keeps no state beyond the connection: after the answer it half-closes and throws
/// away what the client still sends (its identification line, its key exchange offer) so
/// that closing does not reset the connection before the client has read the answer. It
/// throws away at most `maxBytes` and waits at most `timeout` for the client to close.
package final class SSHRefusalHandler: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let audit: AuditLog
    private let sandbox: String
    private let maxBytes: Int
    private let timeout: TimeAmount
    private var answered = false
    private var discarded = 0
    private var deadline: Scheduled<Void>?

    /// - Parameters:
    ///   - audit: where the `ssh_deny` line goes.
    ///   - sandbox: the sandbox this listener belongs to.
    ///   - maxBytes: the most bytes read from the client before the connection is closed.
    ///   - timeout: the most time the client has to close after the answer.
    package init(audit: AuditLog, sandbox: String, maxBytes: Int = 64 * 1024, timeout: TimeAmount = .seconds(5)) {
        self.audit = audit
        self.sandbox = sandbox
        self.maxBytes = maxBytes
        self.timeout = timeout
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { answer(context: context) }
    }

    package func channelActive(context: ChannelHandlerContext) {
        answer(context: context)
        context.fireChannelActive()
    }

    private func answer(context: ChannelHandlerContext) {
        guard !answered else { return }
        answered = true
        // The client names no host: the address it dialled is what is known.
        let host = context.channel.localAddress?.ipAddress
        audit.record(AuditEvent(
            .sshDeny, sandbox: sandbox, via: .ssh, host: host, port: context.channel.localAddress?.port ?? 22,
            reason: "SSH is not offered; the client was told to use HTTPS"))
        var buffer = context.channel.allocator.buffer(capacity: SSHRefusal.answer.count)
        buffer.writeBytes(SSHRefusal.answer)
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in
            context.close(mode: .output, promise: nil)
        }
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            context.close(promise: nil)
        }
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        discarded += unwrapInboundIn(data).readableBytes
        if discarded > maxBytes { context.close(promise: nil) }
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
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

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
