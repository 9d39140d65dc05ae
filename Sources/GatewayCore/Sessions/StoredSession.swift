/// One live session as the store keeps it: the token's digest, never the token.
package struct StoredSession: Sendable, Equatable {
    /// The SHA-256 digest of the session token; its first 12 hex digits are the session id.
    package var digest: TokenDigest
    /// The sandbox whose gateway issued it; the only one it is valid on.
    package var sandbox: String
    /// The repositories it may use, and how.
    package var scope: SessionScope
    /// The real upstream credential the session stands for.
    package var upstreamToken: Secret
    /// What its pushes may update.
    package var pushPolicy: PushPolicy
    /// Seconds since the epoch.
    package var createdAt: Double
    /// Absolute expiry, seconds since the epoch.
    package var expiresAt: Double
    /// Last successful use (creation counts), seconds since the epoch.
    package var lastUsedAt: Double
    /// Idle expiry after the last use, in seconds.
    package var idleTimeout: Double
    /// The last use the session file holds (not itself written): a use is recorded again
    /// only once `SessionStore.useRecordInterval` has passed since.
    package var journaledUseAt: Double

    package init(
        digest: TokenDigest, sandbox: String, scope: SessionScope, upstreamToken: Secret, pushPolicy: PushPolicy,
        createdAt: Double, expiresAt: Double, lastUsedAt: Double, idleTimeout: Double
    ) {
        self.digest = digest
        self.sandbox = sandbox
        self.scope = scope
        self.upstreamToken = upstreamToken
        self.pushPolicy = pushPolicy
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastUsedAt = lastUsedAt
        self.idleTimeout = idleTimeout
        journaledUseAt = lastUsedAt
    }

    /// Why the session has expired at `now`, or nil while it lives.
    package func expiry(at now: Double) -> String? {
        if now >= expiresAt { return "absolute lifetime reached" }
        if now - lastUsedAt >= idleTimeout { return "idle for \(Int(idleTimeout))s" }
        return nil
    }
}
