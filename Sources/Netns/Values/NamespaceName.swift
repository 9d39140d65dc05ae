/// The name of a persistent sandbox: the pin `/run/netns/NAME`, its gateway side
/// `/run/netns/NAME.gw` and the state directory `/run/airlock/NAME`.
///
/// 1 to 12 bytes of `A-Z a-z 0-9 _ . -`, so that `NAME.gw` stays within an interface-sized
/// name (15 bytes); never `.`, never containing `..` or `/`, never ending in `.gw` (the
/// gateway pin of another name) or `.sock` (the daemon's sockets share `/run/airlock`).
package struct NamespaceName: Hashable, Comparable, Codable, CustomStringConvertible, Sendable {
    /// The longest name: IFNAMSIZ - 1 minus the 3 bytes of the `.gw` suffix.
    package static let maximumLength = 12

    /// The validated name.
    package let rawValue: String

    /// Validates `rawValue`.
    /// - Throws: `InvalidValue` naming the value and the rule it breaks.
    package init(_ rawValue: String) throws {
        var what: String { "invalid sandbox name \(quoted(rawValue))" }  // built only to refuse
        let bytes = Array(rawValue.utf8)
        if bytes.isEmpty { throw InvalidValue("\(what): empty") }
        if bytes.count > Self.maximumLength {
            throw InvalidValue("\(what): \(bytes.count) bytes, at most \(Self.maximumLength) (NAME.gw must fit an interface name)")
        }
        if rawValue.contains("/") { throw InvalidValue("\(what): contains \"/\"") }
        if rawValue.contains(where: { $0.isWhitespace }) { throw InvalidValue("\(what): contains a space") }
        if rawValue == "." { throw InvalidValue("\(what): \".\" is not a name") }
        if rawValue.contains("..") { throw InvalidValue("\(what): contains \"..\"") }
        for scalar in rawValue.unicodeScalars where !Self.isAllowed(scalar) {
            throw InvalidValue("\(what): \(quoted(String(scalar))) is not allowed (use A-Z a-z 0-9 _ . -)")
        }
        if rawValue.hasPrefix("-") { throw InvalidValue("\(what): starts with \"-\"") }
        // NAME.gw is another sandbox's gateway pin; /run/airlock/NAME.sock the daemon's sockets.
        for suffix in [".gw", ".sock"] where rawValue.hasSuffix(suffix) {
            throw InvalidValue("\(what): ends in \"\(suffix)\" (reserved: \(suffix == ".gw" ? "gateway pins are NAME.gw" : "airlock's sockets in /run/airlock"))")
        }
        self.rawValue = rawValue
    }

    private static func isAllowed(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", "_", ".", "-": return true
        default: return false
        }
    }

    /// The name of the gateway-side pin, `NAME.gw`.
    package var gatewayPinName: String { rawValue + ".gw" }

    package var description: String { rawValue }

    package static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    package init(from decoder: Decoder) throws {
        try self.init(decoder.singleValueContainer().decode(String.self))
    }

    package func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
