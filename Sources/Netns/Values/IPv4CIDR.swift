/// An IPv4 address with a prefix length, `169.254.200.1/30`; host bits may be set
/// (it names an interface address, not a network).
package struct IPv4CIDR: Hashable, Codable, CustomStringConvertible, Sendable {
    /// The address.
    package let address: IPv4Address
    /// The prefix length, 0 to 32.
    package let prefixLength: UInt8

    /// An address with a prefix length.
    /// - Throws: `InvalidValue` if the prefix length is above 32.
    package init(address: IPv4Address, prefixLength: Int) throws {
        guard (0...32).contains(prefixLength) else {
            throw InvalidValue("invalid prefix length /\(prefixLength) of \(address): expected 0-32")
        }
        self.address = address
        self.prefixLength = UInt8(prefixLength)
    }

    /// Parses `A.B.C.D/P`.
    /// - Throws: `InvalidValue` naming the text.
    package init(_ text: String) throws {
        // Built only for a refusal: quoting reflects over the text (a tenth of this parse).
        var what: String { "invalid address \(quoted(text))" }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw InvalidValue("\(what): expected ADDRESS/PREFIX like 169.254.200.1/30") }
        let address: IPv4Address
        do { address = try IPv4Address(String(parts[0])) } catch {
            throw InvalidValue("\(what): \(quoted(String(parts[0]))) is not an IPv4 address")
        }
        let prefix = parts[1]
        guard !prefix.isEmpty, prefix.count <= 2, prefix.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let length = Int(prefix), length <= 32 else {
            throw InvalidValue("\(what): prefix \(quoted(String(prefix))) is not a number 0-32")
        }
        self.address = address
        self.prefixLength = UInt8(length)
    }

    /// The netmask in host byte order.
    package var netmask: UInt32 { prefixLength == 0 ? 0 : UInt32.max << (32 - UInt32(prefixLength)) }
    /// The first address of the subnet.
    package var network: IPv4Address { IPv4Address(address.value & netmask) }
    /// The last address of the subnet.
    package var broadcast: IPv4Address { IPv4Address(address.value | ~netmask) }

    /// True if `other` lies in this subnet.
    package func contains(_ other: IPv4Address) -> Bool { other.value & netmask == network.value }

    package var description: String { "\(address)/\(prefixLength)" }

    package init(from decoder: Decoder) throws {
        try self.init(decoder.singleValueContainer().decode(String.self))
    }

    package func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
