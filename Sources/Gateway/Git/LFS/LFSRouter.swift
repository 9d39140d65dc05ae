import FoundationEssentials
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import GatewayCore

/// The Git LFS side of the git gateway: the LFS API of each repository in a session's scope
/// and the storage transfers its batch responses name.
///
/// - `POST …/info/lfs/objects/batch`: the session token is checked as for git, the body is
///   read (bounded, `LFSBatch.bodyLimit`) and its `operation` checked against the scope
///   (`download` needs read, `upload` rw), then forwarded with the real credential. The
///   response is read whole (bounded) and every action's `href` replaced by
///   `http://airlock.internal/lfs/ID`; the real href and its `header` values stay in the
///   gateway (`LFSActionTable`).
/// - `GET`/`PUT`/`POST /lfs/ID`: the action, for the session that asked for it, with its
///   method only, streamed both ways to the real href with the upstream's headers added.
///   The storage host need not be on the allowlist (the upstream named it), but its
///   addresses are checked like any other dial's and TLS is verified.
/// - The locking API passes through with the real credential: reading locks needs read,
///   creating and unlocking rw.
///
/// Refusals are LFS errors (`{"message": "airlock: …"}`, `application/vnd.git-lfs+json`),
/// which git-lfs prints, with `X-Airlock-Denied`; each is a `git_deny` audit line.
package struct LFSRouter: HTTPRouter {
    package let upstreams: GitUpstreams
    package let sessions: any SessionAuthority
    package let audit: AuditLog
    package let actions: LFSActionTable

    /// The URL prefix of the transfers the sandbox is handed.
    package static let transferURLPrefix = "http://\(HostName.gateway)\(LFSRoute.transferPrefix)"

    /// Request headers of a transfer that go to the storage host; nothing else of the
    /// sandbox's request does (framing is the forwarder's).
    package static let transferRequestHeaders: Set<String> = ["content-type", "accept", "user-agent"]

    /// Action headers never sent as given: the gateway sets these itself.
    static let reservedActionHeaders: Set<String> = [
        "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade", "expect",
    ]

    package init(upstreams: GitUpstreams, sessions: any SessionAuthority, audit: AuditLog, actions: LFSActionTable) {
        self.upstreams = upstreams
        self.sessions = sessions
        self.audit = audit
        self.actions = actions
    }

    package func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
        context.eventLoop.makeSucceededFuture(decide(head, sandbox: context.sandbox))
    }

    /// The decision for one request head received on `sandbox`'s listener.
    package func decide(_ head: HTTPRequestHead, sandbox: String) -> HTTPRoute {
        let route: LFSRoute
        do {
            route = try LFSRoute.parse(method: head.method.rawValue, uri: head.uri) { upstreams.upstream(for: $0) != nil }
        } catch let refusal as GitRoute.Refusal {
            return deny(refusal.status, refusal.why, sandbox: sandbox, repository: refusal.repository, service: "lfs")
        } catch {
            return deny(400, "invalid Git LFS request", sandbox: sandbox, repository: nil, service: "lfs")
        }
        switch route {
        case .batch(let path):
            return batch(path, head: head, sandbox: sandbox)
        case .locks(let path, let needs):
            return locks(path, needs: needs, head: head, sandbox: sandbox)
        case .transfer(let id):
            return transfer(id, head: head, sandbox: sandbox)
        }
    }

    // MARK: the session

    private enum Checked {
        case grant(SessionGrant)
        case denied(HTTPRoute)
    }

    private func session(_ head: HTTPRequestHead, sandbox: String, repository: GitRepository?, service: String) -> Checked {
        let tokens = HTTPAuthorization.presentedTokens(in: head.headers["Authorization"])
        guard !tokens.isEmpty else {
            return .denied(deny(401, "no session token",
                                hint: "run git inside the sandbox made by airlock (it sets the token), or pass `Authorization: Bearer <session token>`",
                                sandbox: sandbox, repository: repository, service: service, auditReason: "missing session token"))
        }
        let token = tokens.first(where: SessionToken.isWellFormed) ?? tokens[0]
        let check = sessions.check(token: token, sandbox: sandbox)
        switch check {
        case .valid(let grant):
            return .grant(grant)
        case let .otherSandbox(id, issuedFor):
            return .denied(deny(401, check.refusalReason!, sandbox: sandbox, repository: repository, service: service,
                                session: id, auditReason: "session issued for sandbox \(issuedFor) presented on \(sandbox)"))
        default:
            return .denied(deny(401, check.refusalReason!, sandbox: sandbox, repository: repository, service: service,
                                session: check.sessionID, auditReason: check.refusalReason!))
        }
    }

    /// The session's grant when it may use `repository` with `needed` access.
    private func authorize(_ head: HTTPRequestHead, repository: GitRepository, needed: RepoAccess, sandbox: String, service: String) -> Checked {
        let checked = session(head, sandbox: sandbox, repository: repository, service: service)
        guard case .grant(let grant) = checked else { return checked }
        guard let granted = grant.scope.access(to: repository) else {
            return .denied(deny(403, "this session does not cover \(repository)", hint: "ask for a session with --repo \(repository)",
                                sandbox: sandbox, repository: repository, service: service, session: grant.id,
                                auditReason: "repository not in session scope"))
        }
        guard granted >= needed else {
            return .denied(deny(403, "this session has read-only access to \(repository)",
                                hint: "creating or releasing LFS locks needs --repo \(repository):rw",
                                sandbox: sandbox, repository: repository, service: service, session: grant.id,
                                auditReason: "LFS lock change with a read-only session"))
        }
        return checked
    }

    // MARK: the batch API

    private func batch(_ path: GitRoute.RepositoryPath, head: HTTPRequestHead, sandbox: String) -> HTTPRoute {
        let repository = path.repository
        let service = "lfs-batch"
        let checked = authorize(head, repository: repository, needed: .read, sandbox: sandbox, service: service)
        guard case .grant(let grant) = checked else {
            if case .denied(let route) = checked { return route }
            return deny(500, "internal error", sandbox: sandbox, repository: repository, service: service)
        }
        guard let upstream = upstreams.upstream(for: repository.host) else {
            return deny(404, "\(repository.host) is not a configured git host", sandbox: sandbox, repository: repository, service: service)
        }
        let length = head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0
        let chunked = head.headers[canonicalForm: "transfer-encoding"].contains { $0.lowercased() == "chunked" }
        guard chunked || length > 0 else {
            return deny(400, "the LFS batch request has no body", sandbox: sandbox, repository: repository, service: service, session: grant.id)
        }
        guard length <= LFSBatch.bodyLimit else {
            return deny(413, "the LFS batch request is larger than \(LFSBatch.bodyLimit) bytes", sandbox: sandbox, repository: repository,
                        service: service, session: grant.id)
        }

        var exchange = apiExchange(path, head: head, upstream: upstream, grant: grant, sandbox: sandbox, service: service)
        let operation = NIOLockedValueBox<LFSBatch.Operation?>(nil)
        let audit = self.audit
        let scope = grant.scope
        let sessionID = grant.id
        exchange.bodyCheck = { body, ended in
            let refusal: (status: HTTPResponseStatus, reason: String, hint: String?, audit: String)
            if body.count > LFSBatch.bodyLimit {
                refusal = (.payloadTooLarge, "the LFS batch request is larger than \(LFSBatch.bodyLimit) bytes", nil, "LFS batch request too large")
            } else if !ended {
                return .needMore
            } else {
                switch LFSBatch.operation(of: body) {
                case .failure(let problem):
                    refusal = (.badRequest, problem.description, nil, problem.description)
                case .success(let op):
                    if scope.allows(repository, op.requiredAccess) {
                        operation.withLockedValue { $0 = op }
                        return .pass
                    }
                    refusal = (.forbidden, "this session has read-only access to \(repository); LFS upload refused",
                               "uploading needs --repo \(repository):rw", "LFS upload with a read-only session")
                }
            }
            audit.record(AuditEvent(.gitDeny, sandbox: sandbox, via: .git, host: repository.host, reason: refusal.audit,
                                    repo: repository.description, service: service, status: Int(refusal.status.code), session: sessionID))
            return .refuse(Self.error(refusal.status, reason: refusal.reason, hint: refusal.hint))
        }
        let actions = self.actions
        let tls = upstream.tls
        exchange.bufferedResponse = .init(limit: LFSBatch.bodyLimit) { responseHead, body in
            guard (200..<300).contains(responseHead.status.code) else {
                // The upstream's own LFS error (a 404 for a repository without LFS, a 422):
                // passed on as it came. Every success is rewritten, whatever its code.
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: responseHead.headers.first(name: "content-type") ?? LFSBatch.contentType)
                return LocalResponse(status: responseHead.status, headers: headers, body: String(decoding: body.readableBytesView, as: UTF8.self))
            }
            guard let op = operation.withLockedValue({ $0 }) else {
                return Self.error(.badGateway, reason: "the LFS batch request was not checked", hint: nil)
            }
            let now = NIODeadline.now()
            let result = LFSBatch.rewrite(body, operation: op) { kind, href, headers, lifetime in
                let seconds = max(0, min(lifetime ?? Int.max, Int(actions.maximumLifetime.nanoseconds / 1_000_000_000)))
                let action = LFSActionTable.Action(
                    sessionID: sessionID, repository: repository, kind: kind,
                    target: UpstreamTarget(host: href.host, port: href.port, tls: tls), uri: href.uri, hostHeader: href.hostHeader,
                    headers: headers, expires: now + .seconds(Int64(seconds)))
                return (Self.transferURLPrefix + actions.add(action, now: now), seconds)
            }
            switch result {
            case .success(let text):
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: LFSBatch.contentType)
                return LocalResponse(status: responseHead.status, headers: headers, body: text)
            case .failure(let problem):
                audit.record(AuditEvent(.gitDeny, sandbox: sandbox, via: .git, host: repository.host, reason: problem.description,
                                        repo: repository.description, service: service, status: 502, session: sessionID))
                return Self.error(.badGateway, reason: problem.description, hint: nil)
            }
        }
        return .forward(exchange)
    }

    // MARK: the locking API

    private func locks(_ path: GitRoute.RepositoryPath, needs: RepoAccess, head: HTTPRequestHead, sandbox: String) -> HTTPRoute {
        let repository = path.repository
        let service = "lfs-locks"
        let checked = authorize(head, repository: repository, needed: needs, sandbox: sandbox, service: service)
        guard case .grant(let grant) = checked else {
            if case .denied(let route) = checked { return route }
            return deny(500, "internal error", sandbox: sandbox, repository: repository, service: service)
        }
        guard let upstream = upstreams.upstream(for: repository.host) else {
            return deny(404, "\(repository.host) is not a configured git host", sandbox: sandbox, repository: repository, service: service)
        }
        return .forward(apiExchange(path, head: head, upstream: upstream, grant: grant, sandbox: sandbox, service: service))
    }

    /// An exchange to the repository's LFS API with the real credential.
    private func apiExchange(
        _ path: GitRoute.RepositoryPath, head: HTTPRequestHead, upstream: GitUpstreams.Upstream, grant: SessionGrant, sandbox: String,
        service: String
    ) -> UpstreamExchange {
        var headers = HTTPHeaders()
        for (name, value) in head.headers where !GitRouter.strippedRequestHeaders.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        headers.add(name: "Host", value: upstream.hostHeader)
        headers.add(name: "Authorization", value: HTTPAuthorization.upstreamCredential(grant.upstreamToken))
        var upstreamHead = HTTPRequestHead(version: head.version, method: head.method, uri: LFSRoute.upstreamURI(path, basePath: upstream.basePath))
        upstreamHead.headers = headers
        let gitHost = upstream.gitHost
        return exchange(target: upstream.target, head: upstreamHead, gatewayHeaders: ["host", "authorization"], host: gitHost,
                        repository: path.repository, service: service, sessionID: grant.id, sandbox: sandbox) { status in
            guard let refusal = GitRouter.refusalForUpstream(status: status, gitHost: gitHost) else { return nil }
            return Self.error(refusal.status, reason: refusal.reason, hint: nil, close: true)
        }
    }

    // MARK: transfers

    private func transfer(_ id: String, head: HTTPRequestHead, sandbox: String) -> HTTPRoute {
        let checked = session(head, sandbox: sandbox, repository: nil, service: "lfs-transfer")
        guard case .grant(let grant) = checked else {
            if case .denied(let route) = checked { return route }
            return deny(500, "internal error", sandbox: sandbox, repository: nil, service: "lfs-transfer")
        }
        guard let action = actions.action(for: id), action.sessionID == grant.id else {
            return deny(404, "no such LFS transfer (unknown, expired, or made for another session)",
                        hint: "run the git lfs command again", sandbox: sandbox, repository: nil, service: "lfs-transfer", session: grant.id)
        }
        let repository = action.repository
        let service = "lfs-\(action.kind.rawValue)"
        guard head.method == action.kind.method else {
            return deny(405, "this LFS \(action.kind.rawValue) takes \(action.kind.method.rawValue), not \(head.method.rawValue)",
                        sandbox: sandbox, repository: repository, service: service, session: grant.id)
        }
        guard grant.scope.allows(repository, action.kind.requiredAccess) else {
            return deny(403, "this session may no longer \(action.kind.rawValue) LFS objects of \(repository)",
                        sandbox: sandbox, repository: repository, service: service, session: grant.id)
        }
        var headers = HTTPHeaders()
        for (name, value) in head.headers where Self.transferRequestHeaders.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        var gatewayHeaders: Set<String> = ["host"]
        for (name, _) in action.headers {
            let lower = name.lowercased()
            guard !Self.reservedActionHeaders.contains(lower) else { continue }
            headers.remove(name: name)
            gatewayHeaders.insert(lower)
        }
        for (name, value) in action.headers where !Self.reservedActionHeaders.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        headers.add(name: "Host", value: action.hostHeader)
        var upstreamHead = HTTPRequestHead(version: head.version, method: head.method, uri: action.uri)
        upstreamHead.headers = headers
        let storageHost = action.target.host
        return .forward(exchange(target: action.target, head: upstreamHead, gatewayHeaders: gatewayHeaders, host: storageHost,
                                 repository: repository, service: service, sessionID: grant.id, sandbox: sandbox) { status in
            switch status {
            case 401, 407:
                return Self.error(.badGateway, reason: "the LFS storage host \(storageHost) rejected the upstream's credentials (HTTP \(status))",
                                  hint: nil, close: true)
            case 300..<400:
                return Self.error(.badGateway, reason: "the LFS storage host \(storageHost) answered with a redirect (HTTP \(status)); airlock does not follow redirects",
                                  hint: nil, close: true)
            default:
                return nil
            }
        })
    }

    // MARK: shared

    private func exchange(
        target: UpstreamTarget, head: HTTPRequestHead, gatewayHeaders: Set<String>, host: String, repository: GitRepository,
        service: String, sessionID: String, sandbox: String, intercept: @escaping @Sendable (Int) -> LocalResponse?
    ) -> UpstreamExchange {
        let intercepted = NIOLockedValueBox<String?>(nil)
        let audit = self.audit
        // Batch requests go to the git host (sharing the connections git's own requests
        // keep), transfers to the storage host: both keep their upstream connection for
        // the next request, as git requests do; credentials travel in each request.
        var exchange = UpstreamExchange(
            target: target, head: head, gatewayHeaders: gatewayHeaders,
            interceptResponse: { response in
                guard let answer = intercept(Int(response.status.code)) else { return nil }
                intercepted.withLockedValue { $0 = answer.headers.first(name: "X-Airlock-Denied") }
                return answer
            },
            completion: { outcome in
                let denied = intercepted.withLockedValue { $0 }
                // A dial the policy refused (a storage host on a private address) is a denial too.
                let refusedDial = outcome.failure != nil && outcome.status == 403
                audit.record(AuditEvent(
                    denied == nil && !refusedDial ? .gitAllow : .gitDeny, sandbox: sandbox, via: .git, host: host,
                    reason: denied.map { String($0.dropFirst(Refusal.prefix.count)) } ?? outcome.failure,
                    bytesUp: outcome.bytesUp, bytesDown: outcome.bytesDown, ms: outcome.milliseconds, repo: repository.description,
                    service: service, status: outcome.status, session: sessionID))
            })
        exchange.keepsConnection = true
        return exchange
    }

    /// An LFS error answer: `{"message": "airlock: …"}` with `X-Airlock-Denied`.
    package static func error(_ status: HTTPResponseStatus, reason: String, hint: String?, close: Bool = false) -> LocalResponse {
        let refusal = Refusal(status, reason: reason, hint: hint, closeConnection: close)
        var plain = refusal.response
        let line = refusal.text.split(whereSeparator: { $0 == "\r" || $0 == "\n" }).joined(separator: " ")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(["message": line])) ?? Data()
        plain.headers.replaceOrAdd(name: "Content-Type", value: LFSBatch.contentType)
        plain.body = String(decoding: data, as: UTF8.self) + "\n"
        return plain
    }

    private func deny(
        _ status: Int, _ reason: String, hint: String? = nil, sandbox: String, repository: GitRepository?, service: String,
        session: String? = nil, auditReason: String? = nil
    ) -> HTTPRoute {
        var answer = Self.error(HTTPResponseStatus(statusCode: status), reason: reason, hint: hint)
        if status == 401 {
            answer.headers.add(name: "WWW-Authenticate", value: GitRouter.challenge)
            answer.headers.add(name: "LFS-Authenticate", value: GitRouter.challenge)
        }
        audit.record(AuditEvent(
            .gitDeny, sandbox: sandbox, via: .git, host: repository?.host, reason: auditReason ?? reason,
            repo: repository?.description, service: service, status: status, session: session))
        return .respond(answer)
    }
}
