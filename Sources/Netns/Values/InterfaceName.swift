/// A network interface name as the kernel accepts it: 1 to 15 bytes (IFNAMSIZ - 1),
/// not `.` or `..`, without `/`, `:` or whitespace.
package struct InterfaceName: Hashable, Codable, CustomStringConvertible, Sendable {
    /// The longest name the kernel accepts (IFNAMSIZ - 1).
    package static let maximumLength = 15

    /// The validated name.
    package let rawValue: String

    /// Validates `rawValue`.
    /// - Throws: `InvalidValue` naming the value and the rule it breaks.
    package init(_ rawValue: String) throws {
        var what: String { "invalid interface name \(quoted(rawValue))" }  // built only to refuse
        let count = rawValue.utf8.count
        if count == 0 { throw InvalidValue("\(what): empty") }
        if count > Self.maximumLength { throw InvalidValue("\(what): \(count) bytes, at most \(Self.maximumLength)") }
        if rawValue == "." || rawValue == ".." { throw InvalidValue("\(what): not a name") }
        if rawValue.contains("/") { throw InvalidValue("\(what): contains \"/\"") }
        if rawValue.contains(":") { throw InvalidValue("\(what): contains \":\"") }
        if rawValue.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7f }) {
            throw InvalidValue("\(what): contains a space or control character")
        }
        self.rawValue = rawValue
    }

    package var description: String { rawValue }

    package init(from decoder: Decoder) throws {
        try self.init(decoder.singleValueContainer().decode(String.self))
    }

    package func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
