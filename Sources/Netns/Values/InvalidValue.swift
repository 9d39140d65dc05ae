/// A value given by a user that airlock refuses; the message names the value and why.
package struct InvalidValue: Error, CustomStringConvertible, Equatable {
    /// One line naming the value and the reason it is refused.
    package var message: String

    /// Creates the refusal with its one-line message.
    package init(_ message: String) { self.message = message }

    package var description: String { message }
}

/// Quotes a user-given value for an error message, escaping control characters.
func quoted(_ raw: String) -> String { String(reflecting: raw) }
