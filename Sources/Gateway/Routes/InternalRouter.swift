import NIOCore
import NIOHTTP1

/// The router for the gateway's own endpoints under `http://airlock.internal/`: `/git/…`
/// goes to the git gateway, `/api/…` to the credential routes.
package struct InternalRouter: HTTPRouter {
    package let git: any HTTPRouter
    package let routes: any HTTPRouter

    package init(git: any HTTPRouter, routes: any HTTPRouter) {
        self.git = git
        self.routes = routes
    }

    package func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
        if head.uri.hasPrefix(RouteRouter.prefix) {
            return routes.route(head, context: context)
        }
        return git.route(head, context: context)
    }
}
