import NIOCore

/// Copies bytes between two NIO channels, with backpressure and half-close.
///
/// The fallback tunnel: established tunnels whose client was accepted by the gateway and
/// whose upstream is a bare socket are handed to a `SocketLoop` and spliced in the kernel
/// instead (`TunnelHandoff`). This handler serves tunnels whose upstream is a NIO channel,
/// as the handler tests' `EmbeddedChannel` upstreams are.
///
/// One instance sits in each channel; `matchedPair()` links them. A side reads only
/// while its partner is writable, so at most one read's worth of bytes is in flight.
/// When one side's input ends, the other side's output is half-closed; when both
/// directions are done (or either side errors) both channels close. Byte counts feed
/// the audit line; `onClose` fires once, when this side's channel goes inactive.
package final class GlueHandler {
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var closedInput = false
    /// Bytes read on this side (and written to the partner).
    package private(set) var bytesRead: UInt64 = 0

    private init() {}

    /// Two linked handlers: add the first to one channel and the second to the other.
    package static func matchedPair() -> (GlueHandler, GlueHandler) {
        let first = GlueHandler()
        let second = GlueHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    private func partnerWrite(_ data: NIOAny) {
        context?.write(data, promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerWriteEOF() {
        guard let context else { return }
        context.close(mode: .output, promise: nil)
    }

    private func partnerCloseFull() {
        context?.close(promise: nil)
    }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    private var partnerWritable: Bool {
        context?.channel.isWritable ?? false
    }
}

extension GlueHandler: ChannelDuplexHandler {
    package typealias InboundIn = ByteBuffer
    package typealias OutboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // The two halves are added one after the other: a partner that asked to read
        // before this side existed was parked (it had nobody writable to write to).
        // Start it now, or its bytes would wait in the socket forever.
        if context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytesRead += UInt64(buffer.readableBytes)
        partner?.partnerWrite(data)
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerCloseFull()
        context.fireChannelInactive()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            closedInput = true
            partner?.partnerWriteEOF()
            if partner?.closedInput == true {
                context.close(promise: nil)
                partner?.partnerCloseFull()
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
        partner?.partnerCloseFull()
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    package func read(context: ChannelHandlerContext) {
        if let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
