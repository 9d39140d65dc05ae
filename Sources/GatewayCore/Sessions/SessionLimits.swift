/// Bounds on sessions: how many may live at once and how long they last.
package struct SessionLimits: Sendable, Equatable {
    /// Live sessions one store holds at most; creating one more is refused.
    package var maxLiveSessions: Int
    /// Absolute lifetime when the caller names none, in seconds (8 hours).
    package var defaultTTL: Double
    /// The longest absolute lifetime a caller may ask for, in seconds (30 days).
    package var maxTTL: Double
    /// A session unused for this long expires, in seconds (2 hours).
    package var idleTimeout: Double

    package init(maxLiveSessions: Int = 1024, defaultTTL: Double = 8 * 3600, maxTTL: Double = 30 * 86400, idleTimeout: Double = 2 * 3600) {
        self.maxLiveSessions = maxLiveSessions
        self.defaultTTL = defaultTTL
        self.maxTTL = maxTTL
        self.idleTimeout = idleTimeout
    }
}
