import NIOCore

/// Closes a connection when `IdleStateHandler` reports no bytes in either direction.
package final class IdleCloser: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = NIOAny

    /// Creates the handler.
    package init() {}

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? IdleStateHandler.IdleStateEvent, event == .all {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
