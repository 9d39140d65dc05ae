/// An address range: a network address and a prefix length, such as `10.0.0.0/8`.
///
/// Parsing is strict: the address must be a canonical literal and its host bits zero
/// (`10.0.0.1/8` is refused rather than guessed). A bare address is a one-address range.
package struct CIDR: Hashable, Sendable, CustomStringConvertible {
    /// The network address (host bits zero).
    package let network: IPAddress
    /// The prefix length: 0–32 for IPv4, 0–128 for IPv6.
    package let prefixLength: Int

    /// Parses `ADDRESS/LENGTH` or a bare address; nil when malformed or host bits are set.
    package init?(_ text: String) {
        guard let parsed = try? CIDR.parse(text) else { return nil }
        self = parsed
    }

    /// Builds a range, refusing a prefix length out of range or host bits set.
    package init?(network: IPAddress, prefixLength: Int) {
        let width = network.isIPv4 ? 32 : 128
        guard (0...width).contains(prefixLength) else { return nil }
        guard CIDR.masked(network, prefixLength) == network else { return nil }
        self.network = network
        self.prefixLength = prefixLength
    }

    /// Parses `text`, explaining what is wrong.
    /// - Throws: `CIDR.ParseError` naming the problem.
    package static func parse(_ text: String) throws -> CIDR {
        let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count <= 2, let address = IPAddress(String(pieces[0])) else {
            throw ParseError(message: "'\(text)' is not an address range (expected ADDRESS/LENGTH, such as 10.0.0.0/8 or fc00::/7)")
        }
        let width = address.isIPv4 ? 32 : 128
        var length = width
        if pieces.count == 2 {
            let digits = pieces[1]
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let value = Int(digits), value <= width,
                  !(digits.count > 1 && digits.first == "0") else {
                throw ParseError(message: "'\(text)' has an invalid prefix length (0–\(width) for \(address.isIPv4 ? "IPv4" : "IPv6"))")
            }
            length = value
        }
        let network = masked(address, length)
        guard network == address else {
            throw ParseError(message: "'\(text)' has host bits set; the network is \(network)/\(length)")
        }
        return CIDR(checkedNetwork: network, prefixLength: length)
    }

    private init(checkedNetwork: IPAddress, prefixLength: Int) {
        self.network = checkedNetwork
        self.prefixLength = prefixLength
    }

    /// Why a range did not parse.
    package struct ParseError: Error, CustomStringConvertible {
        /// What is wrong, naming the text.
        package var message: String
        package var description: String { message }
    }

    /// Whether `address` lies in this range. IPv4 ranges never contain IPv6 addresses
    /// (callers check an embedded IPv4 address separately).
    package func contains(_ address: IPAddress) -> Bool {
        guard address.isIPv4 == network.isIPv4 else { return false }
        return CIDR.masked(address, prefixLength) == network
    }

    /// `network/length`.
    package var description: String { "\(network)/\(prefixLength)" }

    private static func masked(_ address: IPAddress, _ length: Int) -> IPAddress {
        switch address {
        case .v4(let a):
            let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << (32 - length)
            return .v4(a & mask)
        case .v6(let hi, let lo):
            let hiMask: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << (64 - length))
            let loMask: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << (128 - length))
            return .v6(hi & hiMask, lo & loMask)
        }
    }
}
