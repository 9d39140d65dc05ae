import NIOCore
import NIOHTTP1
import GatewayCore

/// Routes sandbox egress by the policy: absolute-form proxy requests, transparent HTTP by
/// `Host`, and tunnels (`CONNECT`, SNI). Requests for the gateway itself
/// (`airlock.internal` or its address) go to the health endpoint or the internal router.
///
/// Every decision is audited: refusals here, allowed exchanges and tunnels when they end.
package struct EgressRouter: HTTPRouter, TunnelRouter {
    /// Which listener the router serves.
    package enum Mode: Sendable {
        /// The explicit proxy: absolute-form targets (`GET http://host/…`).
        case proxy
        /// Transparent HTTP on port 80: the `Host` header names the upstream.
        case transparent
    }

    private let mode: Mode
    private let policy: PolicyStore
    private let audit: AuditLog
    private let gatewayHost: String
    private let internalRouter: (any HTTPRouter)?
    private let listenerPort: Int?

    /// - Parameters:
    ///   - mode: the listener's kind.
    ///   - policy: the sandbox's policy, read per request.
    ///   - audit: where decisions go.
    ///   - gatewayHost: the gateway's address as text (`169.254.200.1`), treated like `airlock.internal`.
    ///   - internalRouter: serves `/git/…` and `/api/…` on `airlock.internal`; `nil` answers `404`.
    ///   - listenerPort: transparent HTTP on a port other than 80: the port every request is
    ///     sent to, whatever port its `Host` names.
    package init(mode: Mode, policy: PolicyStore, audit: AuditLog, gatewayHost: String, internalRouter: (any HTTPRouter)?,
                 listenerPort: Int? = nil) {
        self.listenerPort = listenerPort
        self.mode = mode
        self.policy = policy
        self.audit = audit
        self.gatewayHost = gatewayHost
        self.internalRouter = internalRouter
    }

    package func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
        let loop = context.eventLoop
        let target: HostAndPort
        let authorityText: String
        let origin: String
        if head.uri.hasPrefix("/") {
            guard mode == .transparent || isInternal(hostHeader(head)) else {
                return loop.makeSucceededFuture(.respond(Refusal(.badRequest,
                    reason: "malformed request: the proxy needs an absolute URL such as http://host/path", closeConnection: true).response))
            }
            guard let host = head.headers.first(name: "host") else {
                return loop.makeSucceededFuture(.respond(Refusal(.badRequest, reason: "malformed request: no Host header", closeConnection: true).response))
            }
            switch HostAndPort.parseAuthority(host, defaultPort: 80) {
            case .failure(let problem):
                return loop.makeSucceededFuture(.respond(Refusal(.badRequest, reason: problem.description, closeConnection: true).response))
            case .success(let parsed): target = listenerPort.map { HostAndPort(host: parsed.host, port: $0) } ?? parsed
            }
            authorityText = host
            origin = head.uri
        } else {
            switch HostAndPort.parseAbsolute(head.uri) {
            case .failure(let problem):
                return loop.makeSucceededFuture(.respond(Refusal(.badRequest, reason: problem.description, closeConnection: true).response))
            case .success(let absolute):
                if absolute.scheme == "https" {
                    return loop.makeSucceededFuture(.respond(Refusal(.badRequest,
                        reason: "https URLs go through CONNECT, not as absolute-form requests", closeConnection: true).response))
                }
                target = absolute.authority
                authorityText = absolute.authorityText
                origin = absolute.originForm
            }
        }
        if isInternal(target.host) {
            return internalRoute(head, path: origin, context: context)
        }
        let current = policy.current
        switch current.decide(host: target.host, port: target.port) {
        case .deny(let reason):
            let refusal = Refusal(denied: reason, host: target.host, port: target.port, source: current.source)
            audit.record(AuditEvent(.egressDeny, sandbox: context.sandbox, via: context.via, host: target.host, port: target.port, reason: refusal.reason))
            return loop.makeSucceededFuture(.respond(refusal.response))
        case .allow(let rule):
            var upstreamHead = head
            upstreamHead.uri = origin
            upstreamHead.headers.replaceOrAdd(name: "Host", value: authorityText)
            let host = (try? HostName.normalise(target.host)) ?? target.host
            let audit = self.audit
            let via = context.via
            let sandbox = context.sandbox
            let port = target.port
            let exchange = UpstreamExchange(
                target: UpstreamTarget(host: host, port: port),
                head: upstreamHead,
                completion: { outcome in
                    Self.recordEnd(audit, sandbox: sandbox, via: via, host: host, port: port, rule: rule, outcome: outcome)
                })
            return loop.makeSucceededFuture(.forward(exchange))
        }
    }

    package func routeTunnel(host: String, port: Int, context: RequestContext) -> TunnelRoute {
        let current = policy.current
        switch current.decide(host: host, port: port) {
        case .deny(let reason):
            let refusal = Refusal(denied: reason, host: host, port: port, source: current.source, closeConnection: true)
            audit.record(AuditEvent(.egressDeny, sandbox: context.sandbox, via: context.via, host: host, port: port, reason: refusal.reason))
            return .refuse(refusal.response)
        case .allow(let rule):
            let name = (try? HostName.normalise(host)) ?? host
            let audit = self.audit
            let via = context.via
            let sandbox = context.sandbox
            return .open(UpstreamTarget(host: name, port: port), completion: { outcome in
                Self.recordEnd(audit, sandbox: sandbox, via: via, host: name, port: port, rule: rule, outcome: outcome)
            })
        }
    }

    private static func recordEnd(_ audit: AuditLog, sandbox: String, via: AuditEvent.Via, host: String, port: Int, rule: String, outcome: ExchangeOutcome) {
        if let failure = outcome.failure, outcome.bytesDown == 0, outcome.status.map({ $0 >= 400 }) ?? true {
            audit.record(AuditEvent(.egressDeny, sandbox: sandbox, via: via, host: host, port: port, rule: rule, reason: failure,
                                    bytesUp: outcome.bytesUp, bytesDown: outcome.bytesDown, ms: outcome.milliseconds, status: outcome.status))
            return
        }
        audit.record(AuditEvent(.egressAllow, sandbox: sandbox, via: via, host: host, port: port, rule: rule, reason: outcome.failure,
                                bytesUp: outcome.bytesUp, bytesDown: outcome.bytesDown, ms: outcome.milliseconds,
                                status: via == .connect || via == .sni ? nil : outcome.status))
    }

    private func hostHeader(_ head: HTTPRequestHead) -> String {
        guard let host = head.headers.first(name: "host"),
              case .success(let parsed) = HostAndPort.parseAuthority(host, defaultPort: 80) else { return "" }
        return parsed.host
    }

    private func isInternal(_ host: String) -> Bool {
        var name = host.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        return name == HostName.gateway || name == gatewayHost
    }

    private func internalRoute(_ head: HTTPRequestHead, path: String, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
        let loop = context.eventLoop
        let pathOnly = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? path
        if pathOnly == "/healthz" {
            guard head.method == .GET || head.method == .HEAD else {
                return loop.makeSucceededFuture(.respond(Refusal(.methodNotAllowed, reason: "/healthz answers GET only").response))
            }
            return loop.makeSucceededFuture(.respond(.text(.ok, "ok\n")))
        }
        if pathOnly.hasPrefix("/git/") || pathOnly.hasPrefix("/api/") || pathOnly.hasPrefix(LFSRoute.transferPrefix) {
            guard let internalRouter else {
                let what = pathOnly.hasPrefix("/api/") ? "credential routes are" : "the git gateway is"
                return loop.makeSucceededFuture(.respond(Refusal(.notFound, reason: "\(what) not enabled for this sandbox").response))
            }
            var internalHead = head
            internalHead.uri = path
            return internalRouter.route(internalHead, context: context)
        }
        let shown = String(pathOnly.prefix(100))
        return loop.makeSucceededFuture(.respond(Refusal(.notFound, reason: "no such endpoint on \(HostName.gateway): \(shown)").response))
    }
}
