import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import GatewayCore

/// Checks session tokens; `SessionStore` is the real one, tests may pass a fake.
package protocol SessionAuthority: Sendable {
    /// Checks `token` for a request received on `sandbox`'s listener.
    func check(token: String, sandbox: String) -> SessionCheck
}

extension SessionStore: SessionAuthority {}

/// The git gateway's router: decides every request under `http://airlock.internal/git/`.
///
/// For each request it parses and validates the path (`GitRoute`), checks the session
/// token (valid, unexpired, issued for the sandbox whose listener received the request),
/// checks the scope (a push, including its `info/refs`, needs `rw`), and then hands the
/// forwarder an exchange to the host's HTTPS upstream with the sandbox's `Authorization`
/// and `Cookie` removed and the real credential added. An upstream `401`/`407` or a
/// redirect is never passed through: the sandbox gets a `502` saying what happened.
/// Every decision is audited (`git_allow`, `git_deny`); no token ever reaches a log line.
package struct GitRouter: HTTPRouter {
    package let upstreams: GitUpstreams
    package let sessions: any SessionAuthority
    package let audit: AuditLog
    /// The upstreams' default branches learned by pushes, kept for a minute.
    package let defaultBranches: DefaultBranchCache
    /// Each session's pushes over the last minute.
    package let pushRate: PushRateLimiter

    /// Headers from the sandbox that never go upstream (credentials and forwarding claims);
    /// hop-by-hop headers are stripped by the forwarder, except the `Host` and
    /// `Authorization` this router sets (`Connection: authorization` cannot remove them).
    package static let strippedRequestHeaders: Set<String> = [
        "authorization", "proxy-authorization", "cookie", "host", "forwarded",
        "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip",
    ]

    /// The challenge sent with every `401`, so git knows to (not) ask for credentials.
    package static let challenge = "Basic realm=\"airlock\""

    package init(upstreams: GitUpstreams, sessions: any SessionAuthority, audit: AuditLog, defaultBranches: DefaultBranchCache = .defaultBranches(),
                pushRate: PushRateLimiter = PushRateLimiter()) {
        self.upstreams = upstreams
        self.sessions = sessions
        self.audit = audit
        self.defaultBranches = defaultBranches
        self.pushRate = pushRate
    }

    package func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
        context.eventLoop.makeSucceededFuture(decide(head, sandbox: context.sandbox))
    }

    /// The decision for one request head received on `sandbox`'s listener.
    package func decide(_ head: HTTPRequestHead, sandbox: String) -> HTTPRoute {
        let route: GitRoute
        do {
            route = try GitRoute.parse(method: head.method.rawValue, uri: head.uri) { upstreams.upstream(for: $0) != nil }
        } catch let refusal as GitRoute.Refusal {
            return deny(refusal.status, refusal.why, sandbox: sandbox, repository: refusal.repository, service: refusal.service)
        } catch {
            return deny(400, "invalid git request", sandbox: sandbox, repository: nil, service: nil)
        }
        let repo = route.repository
        let service = route.service.rawValue

        let tokens = HTTPAuthorization.presentedTokens(in: head.headers["Authorization"])
        guard !tokens.isEmpty else {
            return deny(401, "no session token",
                        hint: "run git inside the sandbox made by airlock (it sets the token), or pass `Authorization: Bearer <session token>`",
                        sandbox: sandbox, repository: repo, service: service, auditReason: "missing session token")
        }
        let token = tokens.first(where: SessionToken.isWellFormed) ?? tokens[0]
        let check = sessions.check(token: token, sandbox: sandbox)
        let grant: SessionGrant
        switch check {
        case let .valid(g):
            grant = g
        case let .otherSandbox(id, issuedFor):
            return deny(401, check.refusalReason!, sandbox: sandbox, repository: repo, service: service,
                        session: id, auditReason: "session issued for sandbox \(issuedFor) presented on \(sandbox)")
        default:
            return deny(401, check.refusalReason!, sandbox: sandbox, repository: repo, service: service,
                        session: check.sessionID, auditReason: check.refusalReason!)
        }
        guard let granted = grant.scope.access(to: repo) else {
            return deny(403, "this session does not cover \(repo)", hint: "ask for a session with --repo \(repo)",
                        sandbox: sandbox, repository: repo, service: service, session: grant.id, auditReason: "repository not in session scope")
        }
        guard granted >= route.service.requiredAccess else {
            return deny(403, "this session has read-only access to \(repo)", hint: "pushing needs --repo \(repo):rw",
                        sandbox: sandbox, repository: repo, service: service, session: grant.id, auditReason: "push with a read-only session")
        }
        guard let upstream = upstreams.upstream(for: repo.host) else {
            return deny(404, "\(repo.host) is not a configured git host", sandbox: sandbox, repository: repo, service: service)
        }
        if route.service == .receivePack, let refusal = pushLimitRefusal(route, head: head, grant: grant, sandbox: sandbox) {
            return refusal
        }
        return .forward(exchange(for: route, head: head, upstream: upstream, grant: grant, sandbox: sandbox))
    }

    private func exchange(for route: GitRoute, head: HTTPRequestHead, upstream: GitUpstreams.Upstream, grant: SessionGrant, sandbox: String) -> UpstreamExchange {
        var headers = HTTPHeaders()
        for (name, value) in head.headers where !Self.strippedRequestHeaders.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        headers.add(name: "Host", value: upstream.hostHeader)
        headers.add(name: "Authorization", value: HTTPAuthorization.upstreamCredential(grant.upstreamToken))
        var upstreamHead = HTTPRequestHead(version: head.version, method: head.method, uri: route.upstreamURI(basePath: upstream.basePath))
        upstreamHead.headers = headers

        let repo = route.repository
        let service = route.service.rawValue
        let gitHost = upstream.gitHost
        let intercepted = NIOLockedValueBox<String?>(nil)
        let proof = NIOLockedValueBox<ReceivePackInspector.Proof?>(nil)
        let audit = self.audit
        let sessionID = grant.id
        var exchange = UpstreamExchange(
            target: upstream.target,
            head: upstreamHead,
            gatewayHeaders: ["host", "authorization"],
            interceptResponse: { response in
                guard let refusal = Self.refusalForUpstream(status: Int(response.status.code), gitHost: gitHost) else { return nil }
                intercepted.withLockedValue { $0 = refusal.reason }
                return refusal.response
            },
            completion: { outcome in
                if let reason = intercepted.withLockedValue({ $0 }) ?? Self.dialRefusal(outcome) {
                    audit.record(AuditEvent(
                        .gitDeny, sandbox: sandbox, via: .git, host: gitHost, reason: reason, bytesUp: outcome.bytesUp,
                        bytesDown: outcome.bytesDown, ms: outcome.milliseconds, repo: repo.description, service: service,
                        status: outcome.status ?? 502, session: sessionID))
                } else {
                    audit.record(AuditEvent(
                        .gitAllow, sandbox: sandbox, via: .git, host: gitHost,
                        rule: proof.withLockedValue { $0 }.map { "fast-forward proven by the \($0.rawValue)" },
                        reason: outcome.failure, bytesUp: outcome.bytesUp,
                        bytesDown: outcome.bytesDown, ms: outcome.milliseconds, repo: repo.description, service: service,
                        status: outcome.status, session: sessionID))
                }
            })
        exchange.keepsConnection = true
        if route.service == .receivePack && route.endpoint == .rpc {
            let policy = grant.pushPolicy
            let defaultBranches = self.defaultBranches
            let cacheKey = repo.description
            exchange.bodyCheck = { prefix, ended in
                let refused: (reason: String, response: LocalResponse)
                switch ReceivePackCommands.parse(prefix) {
                case .needMore:
                    guard ended else { return .needMore }
                    refused = ("the push ended inside its commands", Refusal(.badRequest, reason: "cannot check this push: it ended inside its commands").response)
                case .malformed(let why):
                    refused = ("push not checkable: \(why)", Refusal(.badRequest, reason: "cannot check this push: \(why)").response)
                case let .complete(updates, capabilities, _):
                    var refusals = policy.refusals(updates)
                    // A default branch learned recently refuses its updates before anything is sent.
                    if refusals.isEmpty, policy.protectsDefaultBranch, let known = defaultBranches.value(for: cacheKey) {
                        refusals = policy.defaultBranchRefusals(updates, defaultBranch: known)
                    }
                    guard !refusals.isEmpty else { return .pass }
                    refused = Self.refusedPush(updates, refusals: refusals, capabilities: capabilities)
                }
                audit.record(AuditEvent(
                    .gitDeny, sandbox: sandbox, via: .git, host: gitHost, reason: refused.reason, repo: repo.description,
                    service: service, status: 403, session: sessionID))
                return .refuse(refused.response)
            }
            let repository = UpstreamRepository(
                target: upstream.target, hostHeader: upstream.hostHeader,
                path: route.upstreamRepositoryPath(basePath: upstream.basePath), token: grant.upstreamToken)
            let ask: AncestryAsker = { questions, eventLoop, dialer in
                AncestryClient.ask(questions, repository: repository, dialer: dialer, eventLoop: eventLoop)
            }
            let learn: DefaultBranchAsker = { eventLoop, dialer in
                if let known = defaultBranches.value(for: cacheKey) {
                    return eventLoop.makeSucceededFuture(Result<String, AncestryFailure>.success(known))
                }
                return DefaultBranch.ask(repository: repository, dialer: dialer, eventLoop: eventLoop)
                    .map { (answer: Result<String, AncestryFailure>) -> Result<String, AncestryFailure> in
                        if case .success(let ref) = answer { defaultBranches.store(ref, for: cacheKey) }
                        return answer
                    }
            }
            let learnDefaultBranch: DefaultBranchAsker? = policy.protectsDefaultBranch ? learn : nil
            let maxBytes = policy.maxPushBytes
            let tooLarge: @Sendable () -> LocalResponse = {
                let limit = PushSizeLimit.describe(maxBytes)
                audit.record(AuditEvent(
                    .gitDeny, sandbox: sandbox, via: .git, host: gitHost, reason: "push larger than the session's limit (over \(maxBytes) bytes)",
                    repo: repo.description, service: service, status: 413, session: sessionID))
                return Refusal(.payloadTooLarge, reason: "this push is larger than this session allows (\(limit)); nothing of it was applied",
                               hint: "push fewer commits at once, or ask for a session with a larger --max-push-size", closeConnection: true).response
            }
            exchange.bodyInspector = {
                PushSizeLimit(limit: maxBytes, wrapping: ReceivePackInspector(
                    checks: { policy.checksHistory(of: $0) }, ask: ask,
                    passed: { how in proof.withLockedValue { $0 = how } },
                    defaultBranch: learnDefaultBranch,
                    defaultBranchRefusals: { policy.defaultBranchRefusals($0, defaultBranch: $1) }
                ) { updates, refusals, capabilities in
                    let refused = Self.refusedPush(updates, refusals: refusals, capabilities: capabilities)
                    audit.record(AuditEvent(
                        .gitDeny, sandbox: sandbox, via: .git, host: gitHost, reason: refused.reason, repo: repo.description,
                        service: service, status: 403, session: sessionID))
                    return refused.response
                }, refuse: tooLarge)
            }
        }
        return exchange
    }

    /// The answer to a push with refused updates: git's report-status, one `ng` line per
    /// ref; and the audit reason.
    static func refusedPush(_ updates: [RefUpdate], refusals: [PushPolicy.Refusal], capabilities: [String]) -> (reason: String, response: LocalResponse) {
        guard let first = refusals.first, !updates.isEmpty else {
            return ("push not checkable: no commands", Refusal(.badRequest, reason: "cannot check this push: it names no ref").response)
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: ReceivePackReport.contentType)
        headers.add(name: "Cache-Control", value: "no-cache")
        headers.add(name: "X-Airlock-Denied", value: "\(first.ref): \(first.reason)")
        let report = ReceivePackReport.refused(updates, refusals: refusals, capabilities: capabilities)
        let reason = refusals.map { "\($0.ref): \($0.reason)" }.joined(separator: "; ")
        return ("push refused: \(reason)", LocalResponse(status: .ok, headers: headers, body: String(decoding: report, as: UTF8.self)))
    }

    /// The reason of an exchange the policy refused to dial (the forwarder answers such a
    /// `DialError.refused` with 403 and no byte sent), so that it is audited as a denial.
    static func dialRefusal(_ outcome: ExchangeOutcome) -> String? {
        guard outcome.status == 403, outcome.bytesUp == 0, outcome.bytesDown == 0, let failure = outcome.failure else { return nil }
        return failure
    }

    /// The refusal that replaces an upstream response the sandbox must not see: `401`/`407`
    /// (git would prompt or retry with the wrong credential) and `3xx` (never followed).
    package static func refusalForUpstream(status: Int, gitHost: String) -> Refusal? {
        switch status {
        case 401, 407:
            Refusal(.badGateway, reason: "upstream rejected the gateway's credential for \(gitHost) (HTTP \(status)); the session's upstream token may be wrong or expired",
                    closeConnection: true)
        case 300..<400:
            Refusal(.badGateway, reason: "\(gitHost) answered with a redirect (HTTP \(status)); airlock does not follow redirects (was the repository renamed or moved?)",
                    closeConnection: true)
        default:
            nil
        }
    }

    /// The refusal of a push over the session's limits, if it is: a `Content-Length` over
    /// `maxPushBytes` (413, before anything is read), or a session that has pushed
    /// `pushesPerMinute` times in the last minute (429 with `Retry-After`; the push's
    /// `info/refs` is refused too, uncounted, so git shows the reason early). A push with
    /// commands is counted; git's 4-byte probe is not.
    private func pushLimitRefusal(_ route: GitRoute, head: HTTPRequestHead, grant: SessionGrant, sandbox: String) -> HTTPRoute? {
        let policy = grant.pushPolicy
        let (repo, service) = (route.repository, route.service.rawValue)
        let length = head.headers.first(name: "content-length").flatMap { Int64($0) }
        if route.endpoint == .rpc, let length, length > policy.maxPushBytes {
            let limit = PushSizeLimit.describe(policy.maxPushBytes)
            return deny(413, "this push (\(PushSizeLimit.describe(length))) is larger than this session allows (\(limit))",
                        hint: "push fewer commits at once, or ask for a session with a larger --max-push-size",
                        sandbox: sandbox, repository: repo, service: service, session: grant.id,
                        auditReason: "push larger than the session's limit (\(length) bytes, limit \(policy.maxPushBytes))")
        }
        let counted = route.endpoint == .rpc && length != 4
        guard let wait = pushRate.admit(session: grant.id, limit: policy.pushesPerMinute, count: counted) else { return nil }
        return deny(429, "this session has pushed \(policy.pushesPerMinute) times in the last minute, its limit",
                    hint: "try again in \(wait) s", sandbox: sandbox, repository: repo, service: service, session: grant.id,
                    auditReason: "push rate limit reached (\(policy.pushesPerMinute) per minute)", headers: [("Retry-After", String(wait))])
    }

    private func deny(
        _ status: Int, _ reason: String, hint: String? = nil, sandbox: String, repository: GitRepository?, service: String?,
        session: String? = nil, auditReason: String? = nil, headers: [(String, String)] = []
    ) -> HTTPRoute {
        var refusal = Refusal(HTTPResponseStatus(statusCode: status), reason: reason, hint: hint)
        for (name, value) in headers { refusal.headers.add(name: name, value: value) }
        if status == 401 {
            refusal.headers.add(name: "WWW-Authenticate", value: Self.challenge)
        }
        audit.record(AuditEvent(
            .gitDeny, sandbox: sandbox, via: .git, host: repository?.host, reason: auditReason ?? refusal.reason,
            repo: repository?.description, service: service, status: status, session: session))
        return .respond(refusal.response)
    }
}
