/// What a session list shows about one session: never the token or the credential.
package struct SessionSummary: Sendable, Equatable, Codable {
    /// The session id: the first 12 hex digits of the token's SHA-256.
    package var id: String
    /// The sandbox the session was issued for.
    package var sandbox: String
    /// Scope entries, `host/owner/repo:read|rw`.
    package var scope: [String]
    /// Seconds since the epoch.
    package var createdAt: Int
    /// Absolute expiry, seconds since the epoch.
    package var expiresAt: Int
    /// Last successful use (creation counts), seconds since the epoch.
    package var lastUsedAt: Int
    /// Idle expiry after the last use, in seconds.
    package var idleTimeout: Int

    package init(id: String, sandbox: String, scope: [String], createdAt: Int, expiresAt: Int, lastUsedAt: Int, idleTimeout: Int) {
        self.id = id
        self.sandbox = sandbox
        self.scope = scope
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastUsedAt = lastUsedAt
        self.idleTimeout = idleTimeout
    }
}

/// A session that passed every check: what the git gateway needs to serve one request.
package struct SessionGrant: Sendable {
    package var id: String
    package var sandbox: String
    package var scope: SessionScope
    /// The real upstream credential this session stands for.
    package var upstreamToken: Secret
    /// What its pushes may update.
    package var pushPolicy: PushPolicy = .standard
}

/// The outcome of presenting a token to the store.
package enum SessionCheck: Sendable {
    case valid(SessionGrant)
    /// Not shaped like a session token at all.
    case malformed
    /// Well formed, but no session has this token.
    case unknown
    /// The session existed and expired (absolute or idle).
    case expired(id: String)
    /// The session existed and was revoked.
    case revoked(id: String)
    /// The session is live but was issued for another sandbox.
    case otherSandbox(id: String, issuedFor: String)

    /// One line for the refusal text and the audit reason; never contains the token.
    package var refusalReason: String? {
        switch self {
        case .valid: nil
        case .malformed: "the session token is malformed"
        case .unknown: "the session token is not known to this gateway"
        case .expired: "the session has expired"
        case .revoked: "the session was revoked"
        case .otherSandbox: "the session token was issued for another sandbox"
        }
    }

    /// The session id when one is known.
    package var sessionID: String? {
        switch self {
        case let .valid(grant): grant.id
        case let .expired(id), let .revoked(id), let .otherSandbox(id, _): id
        case .malformed, .unknown: nil
        }
    }
}
