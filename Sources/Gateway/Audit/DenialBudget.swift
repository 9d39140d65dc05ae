import NIOConcurrencyHelpers
import NIOCore

/// A token bucket for audit lines of one kind: `burst` at once, refilled at `perSecond`.
/// Denials over it are counted so that the next line written can say how many were not.
package final class DenialBudget: Sendable {
    /// How many lines at once and a second.
    package struct Limits: Sendable, Equatable {
        package var burst: Int
        package var perSecond: Int

        /// 500 at once, 100 a second: far above what a working sandbox misses (a few names
        /// a second), far below what a flood would write (tens of megabytes a second).
        package static let standard = Limits(burst: 500, perSecond: 100)

        package init(burst: Int, perSecond: Int) {
            self.burst = max(1, burst)
            self.perSecond = max(1, perSecond)
        }
    }

    package let limits: Limits
    private let state: NIOLockedValueBox<(tokens: Double, refilled: NIODeadline, unreported: Int)>

    package init(_ limits: Limits) {
        self.limits = limits
        state = NIOLockedValueBox((Double(limits.burst), .now(), 0))
    }

    /// Takes room for `count` lines now.
    /// - Returns: how many may be written, and how many earlier ones were dropped and not
    ///   reported yet (reported now, so counted as reported).
    package func take(_ count: Int) -> (allowed: Int, unreported: Int) {
        let now = NIODeadline.now()
        return state.withLockedValue { state in
            let elapsed = Double((now - state.refilled).nanoseconds) / 1e9
            state.tokens = min(Double(limits.burst), state.tokens + max(0, elapsed) * Double(limits.perSecond))
            state.refilled = now
            let allowed = min(count, Int(state.tokens))
            state.tokens -= Double(allowed)
            var unreported = 0
            if allowed > 0 {
                unreported = state.unreported
                state.unreported = 0
            }
            state.unreported += count - allowed
            return (allowed, unreported)
        }
    }
}
