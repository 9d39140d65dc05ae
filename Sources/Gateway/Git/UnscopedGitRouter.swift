import NIOCore
import NIOHTTP1
import GatewayCore

/// The git gateway of an `airlock run` given no `--repo`: there is no session, so no git
/// request can go upstream. git inside is still sent here (see `GitSandboxConfig`), so that
/// `git clone https://github.com/OWNER/REPO` fails with a line that says what to pass
/// instead of a DNS error: a `403` whose `text/plain` body git prints as
/// `remote: airlock: this run has no --repo for github.com/OWNER/REPO; pass --repo OWNER/REPO …`.
///
/// Paths are parsed exactly as `GitRouter` parses them, and malformed ones get the same
/// refusals. Every request is audited as `git_deny`.
package struct UnscopedGitRouter: HTTPRouter {
    /// The configured git hosts (lowercase).
    package let hosts: Set<String>
    package let audit: AuditLog

    package init(hosts: [String], audit: AuditLog) {
        self.hosts = Set(hosts.map { $0.lowercased() })
        self.audit = audit
    }

    package func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
        context.eventLoop.makeSucceededFuture(decide(head, sandbox: context.sandbox))
    }

    /// The refusal for one request head received on `sandbox`'s listener.
    package func decide(_ head: HTTPRequestHead, sandbox: String) -> HTTPRoute {
        let refusal: Refusal
        let repository: GitRepository?
        let service: String?
        do {
            let route = try GitRoute.parse(method: head.method.rawValue, uri: head.uri) { hosts.contains($0) }
            let repo = route.repository
            let name = repo.host == "github.com" ? "\(repo.owner)/\(repo.name)" : repo.description
            let access = route.service == .receivePack ? ":rw" : ""
            refusal = Refusal(.forbidden, reason: "this run has no --repo for \(repo)",
                              hint: "pass --repo \(name)\(access) and the token with --token-env VAR or --token-file FILE")
            repository = repo
            service = route.service.rawValue
        } catch let refused as GitRoute.Refusal {
            refusal = Refusal(HTTPResponseStatus(statusCode: refused.status), reason: refused.why)
            repository = refused.repository
            service = refused.service
        } catch {
            refusal = Refusal(.badRequest, reason: "invalid git request")
            repository = nil
            service = nil
        }
        audit.record(AuditEvent(
            .gitDeny, sandbox: sandbox, via: .git, host: repository?.host, reason: refusal.reason,
            repo: repository?.description, service: service, status: Int(refusal.status.code)))
        return .respond(refusal.response)
    }
}
