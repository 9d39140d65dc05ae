import Synchronization
import GatewayCore

/// The host resolver's recent answers, so that a sandbox opening many connections to the
/// same name costs one lookup every `lifetime` seconds instead of one per connection
/// (a `getaddrinfo` on the thread pool and two thread hops each).
///
/// Only addresses are kept, never a decision: every dial still checks each address
/// against the policy in force at that moment (private ranges, the gateway's own
/// address, `allow-private`), so a reload that narrows the policy applies at once.
/// Failed lookups are not kept. A name's answer is fixed for at most `lifetime`
/// seconds, which also keeps a name from changing its addresses between a sandbox's
/// connections within that window. Bounded: at most `capacity` names; when full,
/// expired names go first, then the one that expires soonest.
package final class ResolutionCache: Sendable {
    /// How long an answer is used: 30 s, short next to the TTLs hosting providers and
    /// package registries publish (minutes), long enough for a burst of requests.
    package static let defaultLifetime: Double = 30
    /// At most this many names.
    package static let defaultCapacity = 1024

    private struct Entry {
        var addresses: [IPAddress]
        var expires: Double
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let lifetime: Double
    private let capacity: Int
    private let clock: @Sendable () -> Double

    /// - Parameters:
    ///   - lifetime: seconds an answer is used; 0 keeps nothing.
    ///   - capacity: names kept at most.
    ///   - clock: monotonic seconds (tests pass their own).
    package init(lifetime: Double = ResolutionCache.defaultLifetime, capacity: Int = ResolutionCache.defaultCapacity,
                 clock: @escaping @Sendable () -> Double = DenialBudget.monotonicClock) {
        self.lifetime = lifetime
        self.capacity = max(0, capacity)
        self.clock = clock
    }

    /// The kept answer for `name` (an absolute name), if it has not expired.
    package func addresses(of name: String) -> [IPAddress]? {
        let now = clock()
        return entries.withLock { entries in
            guard let entry = entries[name] else { return nil }
            guard entry.expires > now else {
                entries[name] = nil
                return nil
            }
            return entry.addresses
        }
    }

    /// Keeps `addresses` as `name`'s answer for `lifetime` seconds.
    package func store(_ addresses: [IPAddress], for name: String) {
        guard lifetime > 0, capacity > 0, !addresses.isEmpty else { return }
        let now = clock()
        entries.withLock { entries in
            if entries[name] == nil, entries.count >= capacity {
                entries = entries.filter { $0.value.expires > now }
                if entries.count >= capacity, let soonest = entries.min(by: { $0.value.expires < $1.value.expires }) {
                    entries[soonest.key] = nil
                }
            }
            entries[name] = Entry(addresses: addresses, expires: now + lifetime)
        }
    }

    /// How many names are kept (expired ones included until they are next looked at).
    package var count: Int {
        entries.withLock { $0.count }
    }
}
