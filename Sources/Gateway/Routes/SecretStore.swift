import NIOConcurrencyHelpers

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
