#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A token bucket for the denial lines of one sandbox (`dns_deny`, `egress_deny`,
/// `git_deny` together): `burst` at once, refilled at `perSecond`. Denials over it are
/// counted by kind so that the next line written can say how many were not.
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

    /// What `take` decided for one batch of denials.
    package struct Grant: Equatable {
        /// How many of the batch's denials may be written: the first ones, in order.
        package var allowed: Int
        /// Denials dropped earlier and not reported yet, by kind in `AuditEvent.Kind.denials`
        /// order; reported now (so counted as reported). Empty unless `allowed > 0`.
        package var unreported: [(kind: AuditEvent.Kind, count: Int)]

        package static func == (a: Grant, b: Grant) -> Bool {
            a.allowed == b.allowed && a.unreported.elementsEqual(b.unreported) { $0.kind == $1.kind && $0.count == $1.count }
        }
    }

    private struct State {
        var tokens: Double
        var refilled: Double
        var unreported: [AuditEvent.Kind: Int] = [:]
    }

    package let limits: Limits
    private let state: Mutex<State>
    private let clock: @Sendable () -> Double

    /// - Parameters:
    ///   - limits: the burst and the refill rate.
    ///   - clock: the time now in seconds, from any fixed origin; tests pass their own to
    ///     refill without waiting.
    package init(_ limits: Limits, clock: @escaping @Sendable () -> Double = DenialBudget.monotonicClock) {
        self.limits = limits
        self.clock = clock
        state = Mutex(State(tokens: Double(limits.burst), refilled: clock()))
    }

    /// Seconds since an arbitrary point (the system's monotonic clock): never jumps when the
    /// wall clock is set.
    package static let monotonicClock: @Sendable () -> Double = {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// Takes room for one line per denial in `kinds`, in order.
    package func take(_ kinds: [AuditEvent.Kind]) -> Grant {
        let now = clock()
        return state.withLock { state in
            let elapsed = now - state.refilled
            state.tokens = min(Double(limits.burst), state.tokens + max(0, elapsed) * Double(limits.perSecond))
            state.refilled = now
            let allowed = min(kinds.count, Int(state.tokens))
            state.tokens -= Double(allowed)
            var unreported: [(kind: AuditEvent.Kind, count: Int)] = []
            if allowed > 0 {
                for kind in AuditEvent.Kind.denials {
                    if let count = state.unreported[kind], count > 0 { unreported.append((kind, count)) }
                }
                state.unreported = [:]
            }
            for kind in kinds.dropFirst(allowed) { state.unreported[kind, default: 0] += 1 }
            return Grant(allowed: allowed, unreported: unreported)
        }
    }

    /// Takes room for `count` lines of one kind.
    /// - Returns: how many may be written, and how many earlier ones were dropped and not
    ///   reported yet (all kinds together).
    package func take(_ count: Int) -> (allowed: Int, unreported: Int) {
        let grant = take(Array(repeating: AuditEvent.Kind.dnsDeny, count: count))
        return (grant.allowed, grant.unreported.reduce(0) { $0 + $1.count })
    }
}
