import Synchronization

/// Answers kept for a while under a name: the host resolver's addresses for a host
/// (`PolicyDialer`), the branch an upstream's `HEAD` names (the push check). Each answer
/// is used for `lifetime` seconds after it was stored, then asked for again. Bounded: at
/// most `capacity` names; when full, expired answers go first, then the one that expires
/// soonest. Only answers are kept, never failures; callers store what they learned.
package final class ExpiringCache<Value: Sendable>: Sendable {
    /// Seconds an answer is used.
    package let lifetime: Double
    /// Names kept at most.
    package let capacity: Int
    private let clock: @Sendable () -> Double
    private let entries = Mutex<[String: (value: Value, until: Double)]>([:])

    /// - Parameters:
    ///   - lifetime: seconds an answer is used; 0 keeps nothing.
    ///   - capacity: names kept at most; 0 keeps nothing.
    ///   - clock: monotonic seconds (tests pass their own).
    package init(lifetime: Double, capacity: Int, clock: @escaping @Sendable () -> Double = DenialBudget.monotonicClock) {
        self.lifetime = lifetime
        self.capacity = max(0, capacity)
        self.clock = clock
    }

    /// The answer stored for `name` less than `lifetime` seconds ago.
    package func value(for name: String) -> Value? {
        let now = clock()
        return entries.withLock { entries in
            guard let entry = entries[name] else { return nil }
            guard entry.until > now else {
                entries[name] = nil
                return nil
            }
            return entry.value
        }
    }

    /// Keeps `value` as `name`'s answer for `lifetime` seconds.
    package func store(_ value: Value, for name: String) {
        guard lifetime > 0, capacity > 0 else { return }
        let now = clock()
        entries.withLock { entries in
            if entries[name] == nil, entries.count >= capacity {
                entries = entries.filter { $0.value.until > now }
                if entries.count >= capacity, let soonest = entries.min(by: { $0.value.until < $1.value.until }) {
                    entries[soonest.key] = nil
                }
            }
            entries[name] = (value, now + lifetime)
        }
    }

    /// How many names are kept (expired ones included until they are next looked at).
    package var count: Int {
        entries.withLock { $0.count }
    }
}
