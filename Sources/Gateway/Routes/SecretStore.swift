import NIOConcurrencyHelpers
import GatewayCore

/// The secrets credential routes send upstream, by name, held in memory only.
///
/// Filled from `run --secret` at start and, for a persistent gateway, by `airlock secret
/// set` over the control socket. Values are `Secret`s: they print as `<redacted>` and are
/// read only where a header is built.
package final class SecretStore: Sendable {
    private let secrets: NIOLockedValueBox<[String: Secret]>

    /// A store holding `initial`.
    package init(_ initial: [String: Secret] = [:]) {
        secrets = NIOLockedValueBox(initial)
    }

    /// The secret named `name`, if it was given.
    package func secret(named name: String) -> Secret? {
        secrets.withLockedValue { $0[name] }
    }

    /// Sets (or replaces) the secret named `name`.
    package func set(_ name: String, _ secret: Secret) {
        secrets.withLockedValue { $0[name] = secret }
    }

    /// The names of the secrets held, sorted.
    package var names: [String] {
        secrets.withLockedValue { $0.keys.sorted() }
    }
}

/// What each route's `budget` has used, for the gateway's life: shared by every copy of the
/// router and kept across policy reloads (a reload does not refill a budget).
package final class RouteBudgets: Sendable {
    private let used: NIOLockedValueBox<[String: Int]>

    package init() {
        used = NIOLockedValueBox([:])
    }

    /// Takes one request from `route`'s budget of `limit`.
    /// - Returns: false when the budget is spent (nothing is taken).
    package func take(_ route: String, limit: Int) -> Bool {
        used.withLockedValue { used in
            let count = used[route, default: 0]
            guard count < limit else { return false }
            used[route] = count + 1
            return true
        }
    }

    /// How many requests `route` has used.
    package func used(_ route: String) -> Int {
        used.withLockedValue { $0[route, default: 0] }
    }
}
