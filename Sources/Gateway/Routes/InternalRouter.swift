import NIOCore
import NIOHTTP1

/// The router for the gateway's own endpoints under `http://airlock.internal/`: `/git/…`
/// goes to the git gateway (Git LFS paths, `…/info/lfs/…` and `/lfs/…`, to its LFS router
/// when there is one), `/api/…` to the credential routes.
package struct InternalRouter: HTTPRouter {
    package let git: any HTTPRouter
    package let routes: any HTTPRouter
    package let lfs: (any HTTPRouter)?

    package init(git: any HTTPRouter, routes: any HTTPRouter, lfs: (any HTTPRouter)? = nil) {
        self.git = git
        self.routes = routes
        self.lfs = lfs
    }

    package func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
        if head.uri.hasPrefix(RouteRouter.prefix) {
            return routes.route(head, context: context)
        }
        if let lfs, LFSRoute.matches(head.uri) {
            return lfs.route(head, context: context)
        }
        return git.route(head, context: context)
    }
}
