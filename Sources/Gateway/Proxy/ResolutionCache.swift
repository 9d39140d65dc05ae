import GatewayCore

/// The host resolver's recent answers, so that a sandbox opening many connections to the
/// same name costs one lookup every 30 seconds instead of one per connection (a
/// `getaddrinfo` on the thread pool and two thread hops each).
///
/// Only addresses are kept, never a decision: every dial still checks each address
/// against the policy in force at that moment (private ranges, the gateway's own
/// address, `allow-private`), so a reload that narrows the policy applies at once.
/// Failed lookups are not kept. A name's answer is fixed for at most 30 seconds, which
/// also keeps a name from changing its addresses between a sandbox's connections within
/// that window. Keyed by the absolute name.
package typealias ResolutionCache = ExpiringCache<[IPAddress]>

extension ExpiringCache where Value == [IPAddress] {
    /// 30 s, short next to the TTLs hosting providers and package registries publish
    /// (minutes), long enough for a burst of requests; at most 1,024 names.
    package static func resolverAnswers(
        clock: @escaping @Sendable () -> Double = DenialBudget.monotonicClock
    ) -> ResolutionCache {
        ResolutionCache(lifetime: 30, capacity: 1024, clock: clock)
    }
}
