import NIOCore
import NIOHTTP1
import GatewayCore

/// Decides, request by request, where an HTTP request received from the sandbox goes.
///
/// The forwarder calls the router once per request head, on the client channel's event
/// loop, before any body byte is forwarded and before `100 Continue` is sent. A router
/// either hands back an exchange for the forwarder to stream to an upstream, or a local
/// answer (a refusal, a health check). Routers never dial themselves: the forwarder's
/// `UpstreamDialer` does.
package protocol HTTPRouter: Sendable {
    /// Decides what happens to one request; called on the client channel's event loop.
    ///
    /// A failed future is answered with `502` and the connection closes; routers should
    /// prefer returning `.respond` with a precise refusal.
    func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute>
}

/// What a router knows about the connection a request arrived on.
package struct RequestContext: Sendable {
    /// The sandbox whose listener received the request.
    package var sandbox: String
    /// The listener the request arrived on (`.proxy` on 3128, `.http` on 80).
    package var via: AuditEvent.Via
    /// The client channel's event loop; futures returned by a router complete on it.
    package var eventLoop: any EventLoop
    /// The sandbox-side peer, when known.
    package var clientAddress: SocketAddress?

    /// Creates a request context.
    package init(sandbox: String, via: AuditEvent.Via, eventLoop: any EventLoop, clientAddress: SocketAddress? = nil) {
        self.sandbox = sandbox
        self.via = via
        self.eventLoop = eventLoop
        self.clientAddress = clientAddress
    }
}

/// A router's decision for one request.
package enum HTTPRoute: Sendable {
    /// Stream the request to an upstream and the response back.
    case forward(UpstreamExchange)
    /// Answer locally; nothing is dialled and the request body is discarded.
    case respond(LocalResponse)
}
