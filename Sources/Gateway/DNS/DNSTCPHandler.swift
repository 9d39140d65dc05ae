import NIOCore
import GatewayCore

/// Serves DNS over TCP on one connection: length-framed messages in (decoded by
/// `DNSFrameDecoder`), length-framed answers out.
///
/// Idle clients are cut: the connection closes after `idleTimeout` without a complete
/// query, and after `maximumLifetime` in any case, so trickling bytes cannot hold it open.
/// Reading pauses while the client does not read its answers. When the client half-closes
/// (it will send no more queries), the connection closes once the answers already
/// written have gone out.
package final class DNSTCPHandler: ChannelDuplexHandler {
    package typealias InboundIn = ByteBuffer
    package typealias OutboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let policy: PolicyStore
    private let responder: DNSResponder
    private let audit: AuditLog
    private let idleTimeout: TimeAmount
    private let maximumLifetime: TimeAmount
    private var idleTimer: Scheduled<Void>?
    private var lifetimeTimer: Scheduled<Void>?
    private var readPending = false
    /// The last answer written; the connection closes after it on half-close.
    private var lastWrite: EventLoopFuture<Void>?
    /// The policy's name rules, rebuilt when a reload replaced them.
    private var rules: DNSNameRules?

    /// - Parameters:
    ///   - policy: the sandbox's policy; read on every query.
    ///   - gatewayAddress: the address allowed names resolve to.
    ///   - audit: where `dns_deny` events go.
    ///   - gatewayNames: names answered with the gateway address whatever the policy (the git hosts).
    ///   - idleTimeout: how long a connection may go without a complete query.
    ///   - maximumLifetime: how long any connection may stay open.
    package init(policy: PolicyStore, gatewayAddress: IPAddress, audit: AuditLog, gatewayNames: [String] = [],
                 idleTimeout: TimeAmount = .seconds(10), maximumLifetime: TimeAmount = .seconds(120)) {
        self.policy = policy
        self.responder = DNSResponder(gatewayAddress: gatewayAddress, gatewayNames: gatewayNames)
        self.audit = audit
        self.idleTimeout = idleTimeout
        self.maximumLifetime = maximumLifetime
    }

    /// The handlers for one accepted connection, in pipeline order: the frame decoder,
    /// then a `DNSTCPHandler`.
    package static func handlers(policy: PolicyStore, gatewayAddress: IPAddress, audit: AuditLog,
                                 gatewayNames: [String] = []) -> [ChannelHandler] {
        [ByteToMessageHandler(DNSFrameDecoder()),
         DNSTCPHandler(policy: policy, gatewayAddress: gatewayAddress, audit: audit, gatewayNames: gatewayNames)]
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startTimers(context: context) }
    }

    package func channelActive(context: ChannelHandlerContext) {
        startTimers(context: context)
        context.fireChannelActive()
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        lifetimeTimer?.cancel()
    }

    private func startTimers(context: ChannelHandlerContext) {
        guard lifetimeTimer == nil else { return }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        lifetimeTimer = context.eventLoop.scheduleTask(in: maximumLifetime) {
            loopBound.value.close(promise: nil)
        }
        restartIdleTimer(context: context)
    }

    private func restartIdleTimer(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: idleTimeout) {
            loopBound.value.close(promise: nil)
        }
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        restartIdleTimer(context: context)
        // The answer goes after a two-byte length, filled in once it is known.
        var buffer = context.channel.allocator.buffer(capacity: message.readableBytes + 32)
        buffer.writeInteger(UInt16(0))
        let current = policy.current
        if rules?.describes(current) != true { rules = DNSNameRules(current) }
        let reply = message.withUnsafeReadableBytes { query in
            responder.respond(to: query, rules: rules!, into: &buffer)
        }
        guard case .answer(let event) = reply else {
            // Unreadable on a stream: the framing can no longer be trusted.
            context.close(promise: nil)
            return
        }
        if let event { audit.record(event) } else { audit.metrics?.dnsAnswered(1) }
        buffer.setInteger(UInt16(truncatingIfNeeded: buffer.readableBytes - 2), at: buffer.readerIndex)
        lastWrite = context.writeAndFlush(wrapOutboundOut(buffer))
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // No more queries will come: answer what came, then close.
            guard let lastWrite else {
                context.close(promise: nil)
                return
            }
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            lastWrite.whenComplete { _ in loopBound.value.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    package func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            readPending = true
        }
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && readPending {
            readPending = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }
}
