import Synchronization

/// The live git sessions of a gateway: thread-safe, in memory only.
///
/// Tokens are kept only as SHA-256 digests and compared in constant time. Each session
/// is bound to one sandbox, has a scope, an absolute and an idle expiry, and holds the
/// upstream credential it stands for as a `Secret`. Revoked and expired sessions leave a
/// bounded tombstone so a late request gets a precise refusal. Creating, revoking and
/// expiring sessions is audited by session id and scope, never by token.
package final class SessionStore: Sendable {
    /// Why the store refused a request.
    package enum Failure: Error, CustomStringConvertible, Equatable {
        case tooManySessions(limit: Int)
        case emptyUpstreamToken
        case invalidTTL(seconds: Double, max: Double)
        case unknownSession(id: String)
        case invalidSandbox(String)

        package var description: String {
            switch self {
            case let .tooManySessions(limit): "too many live sessions (limit \(limit)); revoke some first"
            case .emptyUpstreamToken: "the upstream token is empty"
            case let .invalidTTL(seconds, max): "session lifetime \(Int(seconds))s is not between 1s and \(Int(max))s"
            case let .unknownSession(id): "no live session with id \(GitRepository.printable(id))"
            case let .invalidSandbox(name): "invalid sandbox name \(GitRepository.printable(name))"
            }
        }
    }

    private struct Record {
        var digest: TokenDigest
        var sandbox: String
        var scope: SessionScope
        var upstreamToken: Secret
        var pushPolicy: PushPolicy
        var createdAt: Double
        var expiresAt: Double
        var lastUsedAt: Double
        var idleTimeout: Double

        func expiry(at now: Double) -> String? {
            if now >= expiresAt { return "absolute lifetime reached" }
            if now - lastUsedAt >= idleTimeout { return "idle for \(Int(idleTimeout))s" }
            return nil
        }
    }

    private enum Ending { case expired, revoked }

    private struct State {
        var live: [String: Record] = [:]
        var tombstones: [String: (digest: TokenDigest, ending: Ending)] = [:]
        var tombstoneOrder: [String] = []
    }

    /// Tombstones kept at most; the oldest are forgotten first.
    package static let maxTombstones = 4096

    private let state = Mutex(State())
    private let limits: SessionLimits
    private let audit: AuditLog
    private let clock: @Sendable () -> Double

    /// - Parameters:
    ///   - limits: cap on live sessions and lifetimes.
    ///   - audit: where `session_create`, `session_revoke` and `session_expire` go.
    ///   - clock: seconds since the epoch; tests inject their own.
    package init(limits: SessionLimits = SessionLimits(), audit: AuditLog, clock: @escaping @Sendable () -> Double = SessionStore.wallClock) {
        self.limits = limits
        self.audit = audit
        self.clock = clock
    }

    /// The system's wall clock, in seconds since the epoch.
    package static let wallClock: @Sendable () -> Double = {
        let t = AuditTimestamp.now()
        return Double(t.secondsSinceEpoch) + Double(t.milliseconds) / 1000
    }

    /// Creates a session for `sandbox` and returns its token (shown once, never stored).
    /// - Parameters:
    ///   - ttl: absolute lifetime in seconds (default from the limits).
    ///   - idleTimeout: idle expiry in seconds (default from the limits, never longer than `ttl`).
    ///   - pushPolicy: what its pushes may update (default: `main`, `master`, `release/*` protected).
    /// - Throws: `Failure` when the token is empty, the lifetime out of range, or the cap reached.
    package func create(
        sandbox: String, scope: SessionScope, upstreamToken: Secret, ttl: Double? = nil, idleTimeout: Double? = nil,
        pushPolicy: PushPolicy = .standard
    ) throws -> (token: Secret, summary: SessionSummary) {
        guard !sandbox.isEmpty, sandbox.utf8.count <= 64 else { throw Failure.invalidSandbox(sandbox) }
        guard !upstreamToken.isEmpty else { throw Failure.emptyUpstreamToken }
        let lifetime = ttl ?? limits.defaultTTL
        guard lifetime >= 1, lifetime <= limits.maxTTL else { throw Failure.invalidTTL(seconds: lifetime, max: limits.maxTTL) }
        let idle = min(idleTimeout ?? limits.idleTimeout, lifetime)
        guard idle >= 1 else { throw Failure.invalidTTL(seconds: idle, max: limits.maxTTL) }
        sweep()
        let now = clock()
        let result: (Secret, SessionSummary) = try state.withLock { state in
            guard state.live.count < limits.maxLiveSessions else { throw Failure.tooManySessions(limit: limits.maxLiveSessions) }
            while true {
                let token = SessionToken.generate()
                let digest = SessionToken.digest(of: token)
                let id = digest.sessionID
                if state.live[id] != nil || state.tombstones[id] != nil { continue }
                let record = Record(
                    digest: digest, sandbox: sandbox, scope: scope, upstreamToken: upstreamToken, pushPolicy: pushPolicy,
                    createdAt: now, expiresAt: now + lifetime, lastUsedAt: now, idleTimeout: idle)
                state.live[id] = record
                return (token, Self.summary(id: id, record))
            }
        }
        audit.record(AuditEvent(.sessionCreate, sandbox: sandbox, via: .control, session: result.1.id, scope: scope.descriptions))
        return result
    }

    /// Checks a presented token for a request that arrived on `sandbox`'s listener, and
    /// marks a valid session as used.
    package func check(token presented: String, sandbox: String) -> SessionCheck {
        guard SessionToken.isWellFormed(presented) else { return .malformed }
        let digest = SessionToken.digest(of: Secret(presented))
        let id = digest.sessionID
        let now = clock()
        var expiredEvent: AuditEvent?
        let outcome: SessionCheck = state.withLock { state in
            if let record = state.live[id], record.digest.constantTimeEquals(digest) {
                if let why = record.expiry(at: now) {
                    Self.bury(&state, id: id, digest: digest, ending: .expired)
                    expiredEvent = AuditEvent(.sessionExpire, sandbox: record.sandbox, reason: why, session: id, scope: record.scope.descriptions)
                    return .expired(id: id)
                }
                guard record.sandbox == sandbox else { return .otherSandbox(id: id, issuedFor: record.sandbox) }
                state.live[id]?.lastUsedAt = now
                return .valid(SessionGrant(
                    id: id, sandbox: record.sandbox, scope: record.scope, upstreamToken: record.upstreamToken, pushPolicy: record.pushPolicy))
            }
            if let tomb = state.tombstones[id], tomb.digest.constantTimeEquals(digest) {
                switch tomb.ending {
                case .expired: return .expired(id: id)
                case .revoked: return .revoked(id: id)
                }
            }
            return .unknown
        }
        if let expiredEvent { audit.record(expiredEvent) }
        return outcome
    }

    /// Revokes the session with `id`; later requests with its token get 401.
    /// - Throws: `Failure.unknownSession` when no live session has that id.
    @discardableResult
    package func revoke(id: String) throws -> SessionSummary {
        let summary: SessionSummary = try state.withLock { state in
            guard let record = state.live[id] else { throw Failure.unknownSession(id: id) }
            Self.bury(&state, id: id, digest: record.digest, ending: .revoked)
            return Self.summary(id: id, record)
        }
        audit.record(AuditEvent(.sessionRevoke, sandbox: summary.sandbox, via: .control, session: id, scope: summary.scope))
        return summary
    }

    /// The live sessions, oldest first, without secrets.
    package func list() -> [SessionSummary] {
        sweep()
        return state.withLock { state in
            state.live.map { Self.summary(id: $0.key, $0.value) }
        }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    /// Live sessions right now.
    package var liveCount: Int { state.withLock { $0.live.count } }

    /// Expires every session past its absolute or idle expiry, auditing each.
    package func sweep() {
        let now = clock()
        let events: [AuditEvent] = state.withLock { state in
            var events: [AuditEvent] = []
            for (id, record) in state.live {
                if let why = record.expiry(at: now) {
                    Self.bury(&state, id: id, digest: record.digest, ending: .expired)
                    events.append(AuditEvent(.sessionExpire, sandbox: record.sandbox, reason: why, session: id, scope: record.scope.descriptions))
                }
            }
            return events
        }
        for event in events { audit.record(event) }
    }

    private static func bury(_ state: inout State, id: String, digest: TokenDigest, ending: Ending) {
        state.live[id] = nil
        if state.tombstones[id] == nil { state.tombstoneOrder.append(id) }
        state.tombstones[id] = (digest, ending)
        if state.tombstoneOrder.count > maxTombstones {
            let drop = state.tombstoneOrder.count - maxTombstones
            for old in state.tombstoneOrder.prefix(drop) { state.tombstones[old] = nil }
            state.tombstoneOrder.removeFirst(drop)
        }
    }

    private static func summary(id: String, _ record: Record) -> SessionSummary {
        SessionSummary(
            id: id, sandbox: record.sandbox, scope: record.scope.descriptions, createdAt: Int(record.createdAt),
            expiresAt: Int(record.expiresAt), lastUsedAt: Int(record.lastUsedAt), idleTimeout: Int(record.idleTimeout))
    }
}
