/// A credential or token the gateway holds (in memory, and for `gateway serve` the session file).
///
/// Every way Swift has of printing a value (`description`, `debugDescription`, `dump`,
/// string interpolation, reflection) shows `<redacted>`. The value is reachable only
/// through `withRevealed`, so each place that uses it is explicit and easy to audit.
package struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    private let value: String

    package init(_ value: String) {
        self.value = value
    }

    /// Whether the secret is empty.
    package var isEmpty: Bool { value.isEmpty }

    /// Runs `body` with the secret's value.
    package func withRevealed<R>(_ body: (String) throws -> R) rethrows -> R {
        try body(value)
    }

    package var description: String { "<redacted>" }
    package var debugDescription: String { "<redacted>" }
    package var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
