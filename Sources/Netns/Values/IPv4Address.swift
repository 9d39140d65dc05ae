/// An IPv4 address, parsed strictly from dotted-quad text (`169.254.200.1`).
package struct IPv4Address: Hashable, Comparable, Codable, CustomStringConvertible, Sendable {
    /// The address in host byte order.
    package let value: UInt32

    /// The address from its host-byte-order value.
    package init(_ value: UInt32) { self.value = value }

    /// Parses four decimal octets without leading zeros (`010` would be read as octal elsewhere).
    /// - Throws: `InvalidValue` naming the text.
    package init(_ text: String) throws {
        guard let value = Self.parse(text) else {
            throw InvalidValue("invalid IPv4 address \(quoted(text)): expected four numbers 0-255 like 169.254.200.1")
        }
        self.value = value
    }

    private static func parse(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
            if part.count > 1 && part.first == "0" { return nil }
            guard let octet = UInt32(part), octet <= 255 else { return nil }
            value = value << 8 | octet
        }
        return value
    }

    /// The address in network byte order, as netlink and `sockaddr_in` carry it.
    package var networkOrder: UInt32 { value.bigEndian }

    /// The four octets, most significant first.
    package var octets: [UInt8] { [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }

    /// The address from four bytes in network order.
    package init?(octets: some Collection<UInt8>) {
        guard octets.count == 4 else { return nil }
        self.value = octets.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Interpolated, not `octets.map(String.init).joined`: that made an array and five strings
    /// for each address a run writes.
    package var description: String { "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)" }

    package static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }

    package init(from decoder: Decoder) throws {
        try self.init(decoder.singleValueContainer().decode(String.self))
    }

    package func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
