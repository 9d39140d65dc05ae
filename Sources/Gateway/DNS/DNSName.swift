import GatewayCore
/// A domain name as DNS carries it: labels of raw bytes, compared case-insensitively.
package struct DNSName: Hashable, Sendable, CustomStringConvertible {
    /// The labels, root excluded (`www`, `example`, `com`).
    package var labels: [[UInt8]]

    /// The longest name on the wire (length octets and the root included), RFC 1035.
    package static let maximumWireLength = 255
    /// The longest label, RFC 1035.
    package static let maximumLabelLength = 63

    package init(labels: [[UInt8]]) {
        self.labels = labels
    }

    /// Splits a dotted ASCII name; nil for empty labels, over-long labels or names.
    package init?(_ text: String) {
        var t = Substring(text)
        if t.hasSuffix(".") { t = t.dropLast() }
        if t.isEmpty { self.labels = []; return }
        let labels = t.split(separator: ".", omittingEmptySubsequences: false).map { Array($0.utf8) }
        guard labels.allSatisfy({ !$0.isEmpty && $0.count <= DNSName.maximumLabelLength }) else { return nil }
        self.labels = labels
        guard wireLength <= DNSName.maximumWireLength else { return nil }
    }

    /// Bytes this name takes uncompressed on the wire.
    package var wireLength: Int {
        labels.reduce(1) { $0 + 1 + $1.count }
    }

    /// The name as a host name for the policy (labels joined with dots), or nil when a
    /// label holds a byte no host name can contain (a dot, a space, a control or non-ASCII
    /// byte). Case is kept; the policy lowercases.
    package var hostName: String? {
        guard !labels.isEmpty else { return nil }
        for label in labels {
            for byte in label where !(byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))) {
                return nil
            }
        }
        return labels.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ".")
    }

    /// Presentation form with RFC 1035 escapes (`\.` and `\DDD`) for odd bytes; `.` for the root.
    package var description: String {
        if labels.isEmpty { return "." }
        return labels.map { label in
            var out = ""
            for byte in label {
                switch byte {
                case UInt8(ascii: "."), UInt8(ascii: "\\"):
                    out += "\\" + String(UnicodeScalar(byte))
                case 0x21...0x7E:
                    out.unicodeScalars.append(UnicodeScalar(byte))
                default:
                    let digits = String(byte)
                    out += "\\" + String(repeating: "0", count: 3 - digits.count) + digits
                }
            }
            return out
        }.joined(separator: ".")
    }

    /// The labels lowercased (ASCII), for case-insensitive comparison.
    package var lowercased: DNSName {
        DNSName(labels: labels.map { $0.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 } })
    }

    /// Whether two names are equal ignoring ASCII case.
    package func matches(_ other: DNSName) -> Bool {
        lowercased == other.lowercased
    }

    /// The reverse-lookup name of `address`: `1.200.254.169.in-addr.arpa` or the nibble
    /// form under `ip6.arpa`.
    package static func reverse(of address: IPAddress) -> DNSName {
        switch address {
        case .v4:
            let labels = address.bytes.reversed().map { Array(String($0).utf8) }
            return DNSName(labels: labels + [Array("in-addr".utf8), Array("arpa".utf8)])
        case .v6:
            let hex = Array("0123456789abcdef".utf8)
            var labels: [[UInt8]] = []
            for byte in address.bytes.reversed() {
                labels.append([hex[Int(byte & 0xF)]])
                labels.append([hex[Int(byte >> 4)]])
            }
            return DNSName(labels: labels + [Array("ip6".utf8), Array("arpa".utf8)])
        }
    }
}
