import Synchronization

/// The live git sessions of a gateway: thread-safe, in memory, and with a `SessionJournal`
/// (`gateway serve`) also in the session file, so they survive a restart.
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

    private typealias Record = StoredSession

    private enum Ending { case expired, revoked }

    private struct State {
        var live: [String: Record] = [:]
        var tombstones: [String: (digest: TokenDigest, ending: Ending)] = [:]
        var tombstoneOrder: [String] = []
        /// Where changes are recorded so they survive a restart (`gateway serve`); nil keeps
        /// the sessions in memory only.
        var journal: SessionJournal?
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
                Self.persist(&state, .create(record))
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
                if state.journal != nil, now - record.journaledUseAt >= Self.useRecordInterval(idleTimeout: record.idleTimeout) {
                    state.live[id]?.journaledUseAt = now
                    Self.persist(&state, .use(id: id, at: now))
                }
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
        persist(&state, .end(digest: digest, revoked: ending == .revoked))
        if state.tombstones[id] == nil { state.tombstoneOrder.append(id) }
        state.tombstones[id] = (digest, ending)
        if state.tombstoneOrder.count > maxTombstones {
            let drop = state.tombstoneOrder.count - maxTombstones
            for old in state.tombstoneOrder.prefix(drop) { state.tombstones[old] = nil }
            state.tombstoneOrder.removeFirst(drop)
        }
    }

    /// Appends `record` to the session file, if any, and rewrites the file when it has grown.
    private static func persist(_ state: inout State, _ record: SessionJournalRecord) {
        guard let journal = state.journal else { return }
        journal.append(record)
        if journal.wantsRewrite { journal.rewrite(snapshot(state)) }
    }

    /// The records that say everything the store holds: tombstones oldest first, then the
    /// live sessions oldest first.
    private static func snapshot(_ state: State) -> [SessionJournalRecord] {
        let ends: [SessionJournalRecord] = state.tombstoneOrder.compactMap { id in
            state.tombstones[id].map { .end(digest: $0.digest, revoked: $0.ending == .revoked) }
        }
        let live = state.live.sorted { ($0.value.createdAt, $0.key) < ($1.value.createdAt, $1.key) }.map { SessionJournalRecord.create($0.value) }
        return ends + live
    }

    /// How often a session's use is recorded at most: every minute, or twice per idle
    /// timeout when that is shorter. After a restart a session's idle clock therefore runs
    /// from a last use at most this much too early: it may expire that much sooner, never later.
    package static func useRecordInterval(idleTimeout: Double) -> Double {
        min(60, idleTimeout / 2)
    }

    /// Loads the sessions of `journal`, drops those revoked or expired, rewrites the file
    /// with what is left and records every later change in it. Call once, before serving.
    ///
    /// Replays the records in order: a revoked or expired session leaves its tombstone
    /// (bounded as in memory), never a live session; the absolute expiry and the recorded
    /// last use decide which of the rest have expired meanwhile (audited as `session_expire`).
    /// A file that cannot be read or holds a malformed record restores nothing, with one
    /// warning through the journal's sink, and is replaced by an empty one.
    /// - Returns: the live sessions restored.
    @discardableResult
    package func restore(from journal: SessionJournal) -> Int {
        var loaded = State()
        do {
            try journal.replay { record in try Self.replay(record, into: &loaded, limit: limits.maxLiveSessions) }
        } catch {
            journal.warning("airlock: the session file \(journal.path) is unreadable (\(error)); its sessions are lost, replaced by an empty one")
            audit.record(AuditEvent(.sessionRestore, via: .control,
                                    reason: "the session file is unreadable (\(error)); no session was restored", ok: false))
            loaded = State()
        }

        state.withLock { state in
            state.live = loaded.live
            state.tombstones = loaded.tombstones
            state.tombstoneOrder = loaded.tombstoneOrder
            state.journal = nil
        }
        sweep() // what expired while no gateway ran: tombstones, audited
        let restored = state.withLock { state in
            state.journal = journal
            journal.rewrite(Self.snapshot(state))
            return state.live.sorted(by: { $0.key < $1.key })
        }
        for (id, session) in restored {
            audit.record(AuditEvent(.sessionRestore, sandbox: session.sandbox, via: .control, session: id, scope: session.scope.descriptions, ok: true))
        }
        return restored.count
    }

    private static func replay(_ record: SessionJournalRecord, into state: inout State, limit: Int) throws {
        switch record {
        case let .create(session):
            let id = session.digest.sessionID
            guard state.live[id] == nil, state.tombstones[id] == nil else {
                throw SessionJournalRecord.Malformed(description: "session \(id) created twice")
            }
            guard state.live.count < limit else { throw SessionJournalRecord.Malformed(description: "more than \(limit) live sessions") }
            state.live[id] = session
        case let .use(id, at):
            guard let session = state.live[id] else { throw SessionJournalRecord.Malformed(description: "use of a session that is not live") }
            state.live[id]?.lastUsedAt = max(session.lastUsedAt, at)
            state.live[id]?.journaledUseAt = max(session.lastUsedAt, at)
        case let .end(digest, revoked):
            let id = digest.sessionID
            if let session = state.live[id], !session.digest.constantTimeEquals(digest) {
                throw SessionJournalRecord.Malformed(description: "end of session \(id) with another digest")
            }
            bury(&state, id: id, digest: digest, ending: revoked ? .revoked : .expired)
        }
    }

    private static func summary(id: String, _ record: Record) -> SessionSummary {
        SessionSummary(
            id: id, sandbox: record.sandbox, scope: record.scope.descriptions, createdAt: Int(record.createdAt),
            expiresAt: Int(record.expiresAt), lastUsedAt: Int(record.lastUsedAt), idleTimeout: Int(record.idleTimeout))
    }
}
