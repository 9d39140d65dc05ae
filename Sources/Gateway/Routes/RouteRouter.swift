import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import GatewayCore

/// The credential routes' router: decides every request under `http://airlock.internal/api/`.
///
/// `/api/NAME/REST?QUERY` goes to the route's upstream as `BASE/REST?QUERY` over verified
/// TLS. Every credential header the sandbox sent (`authorization`, `x-api-key`, `api-key`,
/// `x-goog-api-key`, cookies, and the route's own header names) is removed and the route's
/// headers are added with the secrets' values. Bodies stream both ways through the
/// forwarder. An upstream redirect is never passed on: the sandbox gets a `502` saying so.
/// One audit line per request (`api_allow`, `api_deny`): route, method, path without the
/// query, status, bytes, time; never a header value, a query or a body.
///
/// A GitHub API route (`github-session HOST`) takes no secret: the client presents its git
/// session token (`Authorization: token …`, `Bearer …` or Basic), the session's scope
/// decides what passes (`GitHubAPIScope`), and the session's upstream token goes upstream
/// as `Authorization: Bearer`. Its refusals are GitHub-style JSON (`{"message": …}`).
package struct RouteRouter: HTTPRouter {
    package let policy: PolicyStore
    package let secrets: SecretStore
    package let trust: RouteUpstreamTrust
    package let audit: AuditLog
    /// Requests used per route, against the routes' `budget`.
    package let budgets: RouteBudgets
    /// The git sessions GitHub API routes authenticate with; nil when the gateway has none.
    package let sessions: (any SessionAuthority)?

    /// The prefix every route path starts with.
    package static let prefix = "/api/"

    /// Request headers that never go upstream: credentials in every spelling the common
    /// APIs use, cookies, forwarding claims and `Host` (the router sets its own).
    package static let strippedRequestHeaders: Set<String> = [
        "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie",
        "host", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip",
    ]

    /// The longest path written to an audit line.
    static let auditPathLimit = 200

    package init(
        policy: PolicyStore, secrets: SecretStore, trust: RouteUpstreamTrust, audit: AuditLog, budgets: RouteBudgets = RouteBudgets(),
        sessions: (any SessionAuthority)? = nil
    ) {
        self.budgets = budgets
        self.sessions = sessions
        self.policy = policy
        self.secrets = secrets
        self.trust = trust
        self.audit = audit
    }

    package func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
        context.eventLoop.makeSucceededFuture(decide(head, sandbox: context.sandbox))
    }

    /// What `Target.parse` says: the target, or the refusal of the path.
    package enum Parsed: Equatable, Sendable {
        case success(Target)
        case failure(Refusal)
    }

    /// A request path split into the route's name, the rest of the path and the query.
    package struct Target: Equatable, Sendable {
        package var name: String
        /// The path below the route, `""` or starting with `/`.
        package var rest: String
        /// `""` or starting with `?`.
        package var query: String

        /// Splits `uri` (`/api/NAME[/REST][?QUERY]`).
        /// - Returns: the target, or why the path is refused.
        package static func parse(_ uri: String) -> Parsed {
            guard uri.hasPrefix(RouteRouter.prefix) else {
                return .failure(Refusal(.notFound, reason: "credential routes are under \(RouteRouter.prefix)NAME/"))
            }
            let afterPrefix = uri.dropFirst(RouteRouter.prefix.count)
            let pathPart: Substring
            var query: Substring = ""
            if let mark = afterPrefix.firstIndex(of: "?") {
                pathPart = afterPrefix[..<mark]
                query = afterPrefix[mark...]
            } else {
                pathPart = afterPrefix
            }
            let name: Substring
            var rest: Substring = ""
            if let slash = pathPart.firstIndex(of: "/") {
                name = pathPart[..<slash]
                rest = pathPart[slash...]
            } else {
                name = pathPart
            }
            guard uri.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }), !rest.contains("\\"), !rest.contains("#") else {
                return .failure(Refusal(.badRequest, reason: "the path has characters a route does not pass"))
            }
            guard CredentialRoute.isValidName(String(name)) else {
                return .failure(Refusal(.notFound, reason: "no route '\(String(name.prefix(64)))' on \(HostName.gateway)"))
            }
            let lower = rest.lowercased()
            if lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c")
                || rest.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0 == "." || $0 == ".." })
            {
                return .failure(Refusal(.badRequest, reason: "route \(name): `.`, `..` and escaped dots or slashes are not allowed in the path"))
            }
            return .success(Target(name: String(name), rest: String(rest), query: String(query)))
        }

        /// The URI sent upstream: the route's base path, the rest, the query.
        package func upstreamURI(basePath: String) -> String {
            let path = basePath + rest
            return (path.isEmpty ? "/" : path) + query
        }

        /// The path as audited: the rest, without the query, bounded.
        var auditPath: String {
            let path = rest.isEmpty ? "/" : rest
            return path.count > RouteRouter.auditPathLimit ? String(path.prefix(RouteRouter.auditPathLimit)) + "…" : path
        }
    }

    /// The decision for one request head received on `sandbox`'s listener.
    package func decide(_ head: HTTPRequestHead, sandbox: String) -> HTTPRoute {
        let method = head.method.rawValue
        let target: Target
        switch Target.parse(head.uri) {
        case .failure(let refusal):
            let name = head.uri.dropFirst(Self.prefix.count).prefix { $0 != "/" && $0 != "?" }
            let json = head.uri.hasPrefix(Self.prefix) && policy.current.route(named: String(name))?.sessionHost != nil
            return deny(refusal, sandbox: sandbox, route: nil, method: method, path: nil, json: json)
        case .success(let parsed):
            target = parsed
        }
        let current = policy.current
        guard let route = current.route(named: target.name) else {
            let known = current.routes.map(\.name)
            let hint = known.isEmpty ? "the policy defines no routes (see `route` in docs/policy.md)" : "routes: " + known.joined(separator: ", ")
            return deny(Refusal(.notFound, reason: "no route '\(target.name)' on \(HostName.gateway)", hint: hint),
                        sandbox: sandbox, route: target.name, method: method, path: target.auditPath)
        }
        var grant: SessionGrant?
        if let host = route.sessionHost {
            switch githubGrant(head, route: route, host: host, target: target, sandbox: sandbox) {
            case .success(let granted): grant = granted
            case .failure(let refused): return refused.route
            }
        }
        var headers = HTTPHeaders()
        let replaced = Set(route.headers.map(\.name))
        let isWrite = head.method != .GET && head.method != .HEAD
        for (name, value) in head.headers {
            let lower = name.lowercased()
            if Self.strippedRequestHeaders.contains(lower) || replaced.contains(lower) { continue }
            if grant != nil, GitHubAPIScope.strippedRequestHeaders.contains(lower) || (isWrite && lower == "content-type") { continue }
            headers.add(name: name, value: value)
        }
        if grant != nil, isWrite {
            headers.add(name: "Content-Type", value: "application/json")
        }
        headers.add(name: "Host", value: route.hostHeader)
        for header in route.headers {
            guard let secret = secrets.secret(named: header.secret) else {
                return deny(Refusal(.serviceUnavailable, reason: "route \(route.name): the secret \(header.secret) is not set",
                                    hint: "set it with `airlock secret set \(sandbox) \(header.secret)`"),
                            sandbox: sandbox, route: route.name, method: method, path: target.auditPath)
            }
            secret.withRevealed { headers.add(name: header.name, value: header.value(for: $0)) }
        }
        if let grant {
            grant.upstreamToken.withRevealed { headers.add(name: "Authorization", value: "Bearer " + $0) }
        }
        if let budget = route.budget, !budgets.take(route.name, limit: budget) {
            return deny(Refusal(.tooManyRequests, reason: "route \(route.name): its budget of \(budget) requests is spent",
                                hint: "the route's `budget` allows no more requests in this run"),
                        sandbox: sandbox, route: route.name, method: method, path: target.auditPath, json: grant != nil, session: grant?.id)
        }
        var upstreamHead = HTTPRequestHead(version: head.version, method: head.method, uri: target.upstreamURI(basePath: route.basePath))
        upstreamHead.headers = headers

        let audit = self.audit
        let name = route.name
        let path = target.auditPath
        let host = route.host
        let sessionID = grant?.id
        let intercepted = NIOLockedValueBox<String?>(nil)
        var exchange = UpstreamExchange(
            target: UpstreamTarget(host: route.host, port: route.port, tls: trust.context,
                                   address: try? SocketAddress(ipAddress: route.host, port: route.port)),
            head: upstreamHead,
            gatewayHeaders: replaced.union(grant == nil ? ["host"] : ["host", "authorization"]),
            interceptResponse: { [json = grant != nil] response in
                guard let refusal = Self.refusalForUpstream(status: Int(response.status.code), route: name) else { return nil }
                intercepted.withLockedValue { $0 = refusal.reason }
                return json ? refusal.jsonResponse : refusal.response
            },
            completion: { outcome in
                let refused = intercepted.withLockedValue { $0 }
                let failed = outcome.failure != nil && outcome.bytesDown == 0 && (outcome.status.map { $0 >= 400 } ?? true)
                audit.record(AuditEvent(
                    refused != nil || failed ? .apiDeny : .apiAllow, sandbox: sandbox, via: .api, host: host,
                    reason: refused ?? outcome.failure, bytesUp: outcome.bytesUp, bytesDown: outcome.bytesDown,
                    ms: outcome.milliseconds, status: outcome.status ?? (refused != nil ? 502 : nil),
                    session: sessionID, route: name, method: method, path: path))
            })
        exchange.keepsConnection = true
        return .forward(exchange)
    }

    /// A GitHub API route's refusal, already audited.
    struct Refused: Error {
        let route: HTTPRoute
    }

    /// The session a GitHub API route's request presents, when its scope allows the
    /// request; else the refusal (`401` without a usable session, `403` outside its scope).
    private func githubGrant(_ head: HTTPRequestHead, route: CredentialRoute, host: String, target: Target, sandbox: String) -> Result<SessionGrant, Refused> {
        let method = head.method.rawValue
        func refuse(_ refusal: Refusal, session: String? = nil, audit reason: String? = nil) -> Result<SessionGrant, Refused> {
            .failure(Refused(route: deny(refusal, sandbox: sandbox, route: route.name, method: method, path: target.auditPath,
                                         json: true, session: session, auditReason: reason)))
        }
        let tokens = Self.presentedTokens(in: head.headers["Authorization"])
        guard let token = tokens.first(where: SessionToken.isWellFormed) ?? tokens.first else {
            return refuse(Refusal(.unauthorized, reason: "route \(route.name): no session token",
                                  hint: "send the git session's token as `Authorization: token …` (airlock run --repo sets GITHUB_TOKEN to it)"))
        }
        guard let sessions else {
            return refuse(Refusal(.unauthorized, reason: "route \(route.name): this gateway holds no git sessions"))
        }
        let check = sessions.check(token: token, sandbox: sandbox)
        guard case let .valid(grant) = check else {
            let reason = "route \(route.name): " + (check.refusalReason ?? "the session token is not valid")
            var audit: String?
            if case let .otherSandbox(_, issuedFor) = check { audit = "route \(route.name): session issued for sandbox \(issuedFor) presented on \(sandbox)" }
            return refuse(Refusal(.unauthorized, reason: reason), session: check.sessionID, audit: audit)
        }
        switch GitHubAPIScope.decide(method: method, path: target.rest, query: target.query, scope: grant.scope, host: host) {
        case .allow:
            return .success(grant)
        case .deny(let why):
            return refuse(Refusal(.forbidden, reason: "route \(route.name): \(why)"), session: grant.id)
        }
    }

    /// The session tokens a request carries: GitHub's `token <t>`, `Bearer <t>`, or Basic
    /// with the token as the password, in header order.
    static func presentedTokens(in values: [String]) -> [String] {
        var tokens: [String] = []
        for value in values {
            let trimmed = value.trimmingSpaces
            if let space = trimmed.firstIndex(of: " "), trimmed[..<space].lowercased() == "token" {
                tokens.append(String(trimmed[trimmed.index(after: space)...]).trimmingSpaces)
            } else {
                tokens += HTTPAuthorization.presentedTokens(in: [value])
            }
        }
        return tokens
    }

    /// The refusal that replaces an upstream redirect: never followed, never passed on (a
    /// client following it would leave the route, or take the credential elsewhere).
    package static func refusalForUpstream(status: Int, route: String) -> Refusal? {
        guard (300..<400).contains(status), status != 304 else { return nil }
        return Refusal(.badGateway, reason: "route \(route): the upstream answered with a redirect (HTTP \(status)); airlock does not follow redirects",
                       closeConnection: true)
    }

    private func deny(
        _ refusal: Refusal, sandbox: String, route: String?, method: String, path: String?, json: Bool = false, session: String? = nil,
        auditReason: String? = nil
    ) -> HTTPRoute {
        audit.record(AuditEvent(
            .apiDeny, sandbox: sandbox, via: .api, reason: auditReason ?? refusal.reason, status: Int(refusal.status.code),
            session: session, route: route, method: method, path: path))
        return .respond(json ? refusal.jsonResponse : refusal.response)
    }
}
