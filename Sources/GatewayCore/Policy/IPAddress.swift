/// An IPv4 or IPv6 address as a plain value.
///
/// `init?(_:)` takes only the strict literal forms used in configuration (`127.0.0.1`,
/// `::1`); `HostLiteral.parse` is the lenient reader for hosts that clients send.
package enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// An IPv4 address, most significant byte first (`127.0.0.1` is `0x7F00_0001`).
    case v4(UInt32)
    /// An IPv6 address as its high and low 64 bits.
    case v6(UInt64, UInt64)

    /// Parses a strict literal: dotted-quad IPv4 with decimal parts and no leading zeros,
    /// or IPv6 text per RFC 4291 (no brackets, no zone id).
    package init?(_ text: String) {
        if let v4 = IPAddressText.strictIPv4(Substring(text)) {
            self = .v4(v4)
        } else if text.contains(":"), let v6 = IPAddressText.ipv6(Substring(text)) {
            self = v6
        } else {
            return nil
        }
    }

    /// The address in network byte order (4 or 16 bytes).
    package var bytes: [UInt8] {
        switch self {
        case .v4(let a):
            return (0..<4).map { UInt8(truncatingIfNeeded: a >> (24 - 8 * $0)) }
        case .v6(let hi, let lo):
            return (0..<8).map { UInt8(truncatingIfNeeded: hi >> (56 - 8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: lo >> (56 - 8 * $0)) }
        }
    }

    /// Builds an address from 4 or 16 bytes in network order.
    package init?(bytes: [UInt8]) {
        switch bytes.count {
        case 4:
            self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            let hi = bytes[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let lo = bytes[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            self = .v6(hi, lo)
        default:
            return nil
        }
    }

    /// Whether this is an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
    package var isIPv4Mapped: Bool {
        if case .v6(let hi, let lo) = self { return hi == 0 && lo >> 32 == 0xFFFF }
        return false
    }

    /// The IPv4 address an IPv6 address carries, for the forms that route to or stand
    /// for that IPv4 address: mapped (`::ffff:0:0/96`), SIIT-translated
    /// (`::ffff:0:0:0/96`), compatible (`::/96`, except `::` and `::1`), the NAT64
    /// well-known prefix (`64:ff9b::/96`), 6to4 (`2002::/16`) and Teredo
    /// (`2001::/32`, the client address, de-obfuscated). Nil for IPv4 and other IPv6.
    package var embeddedIPv4: UInt32? {
        guard case .v6(let hi, let lo) = self else { return nil }
        let low32 = UInt32(truncatingIfNeeded: lo)
        if hi == 0 {
            switch lo >> 32 {
            case 0xFFFF, 0xFFFF_0000:
                return low32
            case 0:
                return lo > 1 ? low32 : nil
            default:
                return nil
            }
        }
        if hi == 0x0064_FF9B_0000_0000, lo >> 32 == 0 { return low32 }
        if hi >> 48 == 0x2002 { return UInt32(truncatingIfNeeded: hi >> 16) }
        if hi >> 32 == 0x2001_0000 { return ~low32 }
        return nil
    }

    /// The Teredo server address (bits 32–63) for `2001::/32`, nil otherwise.
    package var teredoServer: UInt32? {
        guard case .v6(let hi, _) = self, hi >> 32 == 0x2001_0000 else { return nil }
        return UInt32(truncatingIfNeeded: hi)
    }

    /// Whether this is an IPv4 address.
    package var isIPv4: Bool {
        if case .v4 = self { return true }
        return false
    }

    /// Dotted quad for IPv4; RFC 5952 text for IPv6 (`::ffff:a.b.c.d` for mapped).
    package var description: String {
        switch self {
        case .v4(let a):
            return IPAddressText.dotted(a)
        case .v6(let hi, let lo):
            if isIPv4Mapped { return "::ffff:" + IPAddressText.dotted(UInt32(truncatingIfNeeded: lo)) }
            let groups: [UInt16] = (0..<4).map { UInt16(truncatingIfNeeded: hi >> (48 - 16 * $0)) }
                + (0..<4).map { UInt16(truncatingIfNeeded: lo >> (48 - 16 * $0)) }
            // The longest run of two or more zero groups, the first one on a tie.
            var bestStart = -1, bestLength = 0, index = 0
            while index < 8 {
                if groups[index] == 0 {
                    var end = index
                    while end < 8 && groups[end] == 0 { end += 1 }
                    if end - index > bestLength && end - index >= 2 { bestStart = index; bestLength = end - index }
                    index = end
                } else {
                    index += 1
                }
            }
            func hex(_ range: Range<Int>) -> String {
                groups[range].map { String($0, radix: 16) }.joined(separator: ":")
            }
            if bestStart < 0 { return hex(0..<8) }
            return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
        }
    }
}

/// Text forms of addresses, shared by the strict and the lenient readers.
enum IPAddressText {
    static func dotted(_ a: UInt32) -> String {
        "\(a >> 24).\(a >> 16 & 0xFF).\(a >> 8 & 0xFF).\(a & 0xFF)"
    }

    /// `a.b.c.d`, each part decimal 0–255 without leading zeros.
    static func strictIPv4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            if part.count > 1 && part.first == "0" { return nil }
            guard let octet = UInt32(part), octet <= 255 else { return nil }
            value = value << 8 | octet
        }
        return value
    }

    /// IPv6 text per RFC 4291 section 2.2: hex groups, at most one `::`, optionally a
    /// dotted-quad tail. No brackets, no zone id.
    static func ipv6(_ text: Substring) -> IPAddress? {
        guard text.utf8.count <= 45, text.utf8.count >= 2 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var halves: [Substring] = [text]
        if let gap = text.firstRange(of: "::") {
            halves = [text[..<gap.lowerBound], text[gap.upperBound...]]
            if halves[1].firstRange(of: "::") != nil { return nil }
        }
        func groups(_ s: Substring, allowIPv4Tail: Bool) -> [UInt16]? {
            if s.isEmpty { return [] }
            let pieces = s.split(separator: ":", omittingEmptySubsequences: false)
            var out: [UInt16] = []
            for (i, piece) in pieces.enumerated() {
                if i == pieces.count - 1 && allowIPv4Tail && piece.contains(".") {
                    guard let v4 = strictIPv4(piece) else { return nil }
                    out.append(UInt16(v4 >> 16))
                    out.append(UInt16(v4 & 0xFFFF))
                    continue
                }
                guard (1...4).contains(piece.count), piece.allSatisfy({ $0.isHexDigit && $0.isASCII }),
                      let g = UInt16(piece, radix: 16) else { return nil }
                out.append(g)
            }
            return out
        }
        if halves.count == 2 {
            guard let h = groups(halves[0], allowIPv4Tail: false),
                  let t = groups(halves[1], allowIPv4Tail: true),
                  h.count + t.count <= 7 else { return nil }
            head = h
            tail = t
        } else {
            guard let all = groups(text, allowIPv4Tail: true), all.count == 8 else { return nil }
            head = all
        }
        let all = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        let hi = all[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let lo = all[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        return .v6(hi, lo)
    }
}
