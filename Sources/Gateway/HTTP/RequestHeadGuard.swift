import NIOCore

/// Bounds how large and how slow a request head may be, ahead of the HTTP decoder.
///
/// While the forwarder waits for a request head, this handler counts the raw bytes that
/// went into the decoder without producing a head; past `maxBytes` it answers `431` and
/// closes. It also arms a deadline: a connection that opened, or started a head, and did
/// not complete it within `timeout` gets `408` (or is closed silently if it sent nothing).
/// The answers are written as raw bytes because the guard sits before the encoder; no
/// other response is in flight while a head is awaited.
package final class RequestHeadGuard: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let maxBytes: Int
    private let timeout: TimeAmount
    private var awaitingHead = true
    private var bytesSinceHead = 0
    private var deadline: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    private var refused = false

    /// - Parameters:
    ///   - maxBytes: the largest head accepted.
    ///   - timeout: the time allowed for a complete head.
    package init(maxBytes: Int, timeout: TimeAmount) {
        self.maxBytes = maxBytes
        self.timeout = timeout
    }

    /// Called by the forwarder when a complete head arrived.
    package func headReceived() {
        awaitingHead = false
        bytesSinceHead = 0
        deadline?.cancel()
        deadline = nil
    }

    /// Called by the forwarder when it is ready for the next request on the connection.
    /// The deadline starts with the first byte of that request.
    package func awaitNextHead() {
        awaitingHead = true
        bytesSinceHead = 0
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { armDeadline(context: context) }
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        self.context = nil
    }

    package func channelActive(context: ChannelHandlerContext) {
        armDeadline(context: context)
        context.fireChannelActive()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if refused { return }
        let count = unwrapInboundIn(data).readableBytes
        let wasAwaiting = awaitingHead
        if wasAwaiting && deadline == nil && count > 0 { armDeadline(context: context) }
        context.fireChannelRead(data)
        // The decoder ran synchronously: if a head came out of these bytes, the forwarder
        // has already called headReceived().
        if awaitingHead {
            bytesSinceHead += count
            if bytesSinceHead > maxBytes {
                refuse(context: context, status: "431 Request Header Fields Too Large",
                       reason: "airlock: request head larger than \(maxBytes) bytes; the gateway's limit is --max-header-bytes")
            }
        }
    }

    private func armDeadline(context: ChannelHandlerContext) {
        guard deadline == nil, awaitingHead else { return }
        deadline = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, let context = self.context, self.awaitingHead else { return }
            self.deadline = nil
            if self.bytesSinceHead == 0 {
                context.close(promise: nil)
            } else {
                self.refuse(context: context, status: "408 Request Timeout",
                            reason: "airlock: request head not complete within the gateway's header timeout")
            }
        }
    }

    private func refuse(context: ChannelHandlerContext, status: String, reason: String) {
        guard !refused else { return }
        refused = true
        deadline?.cancel()
        deadline = nil
        let body = reason + "\n"
        let text = "HTTP/1.1 \(status)\r\nContent-Type: text/plain; charset=utf-8\r\nX-Airlock-Denied: \(reason)\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        let buffer = context.channel.allocator.buffer(string: text)
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in context.close(promise: nil) }
    }
}
