/// Reads a host the way resolvers and clients would, to recognise IP literals in any spelling.
///
/// Used to refuse literals: anything a resolver, `inet_aton`, curl or a browser would take
/// as an address is an address here, however it is written.
package enum HostLiteral {
    /// The address `host` spells, or nil when it is not an address literal.
    ///
    /// Accepts dotted quads, `inet_aton` forms (one to four parts, each decimal, octal with a
    /// leading `0`, or hex with `0x`; the last part fills the remaining bytes, so `127.1`
    /// and `2130706433` are `127.0.0.1`), trailing dots, bracketed IPv6, IPv6 with an
    /// embedded dotted quad, and zone ids (`fe80::1%eth0`, `[fe80::1%25eth0]`).
    package static func parse(_ host: String) -> IPAddress? {
        var text = Substring(host)
        guard text.utf8.count <= 300 else { return nil }
        if text.hasPrefix("[") {
            guard text.hasSuffix("]") else { return nil }
            text = text.dropFirst().dropLast()
        }
        if text.contains(":") {
            if let zone = text.firstIndex(of: "%") { text = text[..<zone] }
            return IPAddressText.ipv6(text)
        }
        // Every IPv4 spelling is hex digits, `x` and dots: a name with any other byte (nearly
        // every name) is not one, which one pass over its bytes tells.
        let numeric = text.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
                 UInt8(ascii: "A")...UInt8(ascii: "F"), UInt8(ascii: "x"), UInt8(ascii: "X"), UInt8(ascii: "."): true
            default: false
            }
        }
        guard numeric else { return nil }
        while text.hasSuffix(".") { text = text.dropLast() }
        return numericIPv4(text)
    }

    /// `inet_aton` semantics: one to four parts; each part decimal, octal (leading `0`)
    /// or hex (`0x`); the last part fills the remaining bytes.
    static func numericIPv4(_ text: Substring) -> IPAddress? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...4).contains(parts.count) else { return nil }
        var values: [UInt64] = []
        for part in parts {
            guard let value = number(part) else { return nil }
            values.append(value)
        }
        var address: UInt64 = 0
        for (i, value) in values.dropLast().enumerated() {
            guard value <= 0xFF else { return nil }
            address |= value << (8 * (3 - UInt64(i)))
        }
        let lastBits = 8 * (4 - UInt64(values.count) + 1)
        guard let last = values.last, last < (UInt64(1) << lastBits) else { return nil }
        address |= last
        return .v4(UInt32(truncatingIfNeeded: address))
    }

    /// One numeric part: `0x` hex, leading-`0` octal or decimal. Nil when not numeric or
    /// absurdly long.
    static func number(_ part: Substring) -> UInt64? {
        guard !part.isEmpty, part.utf8.count <= 20 else { return nil }
        let lower = part.lowercased()
        if lower.hasPrefix("0x") {
            let digits = lower.dropFirst(2)
            if digits.isEmpty { return 0 }  // inet_aton takes a bare "0x" as zero.
            guard digits.allSatisfy({ $0.isASCII && $0.isHexDigit }) else { return nil }
            return UInt64(digits, radix: 16)
        }
        guard lower.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        if lower.count > 1 && lower.hasPrefix("0") {
            guard lower.allSatisfy({ $0 < "8" }) else { return nil }
            return UInt64(lower.dropFirst(), radix: 8)
        }
        return UInt64(lower)
    }

    /// Whether `label` reads as a number (decimal, or `0x` hex): a last label like this
    /// makes a name an address attempt even when no address parses from it.
    static func looksNumeric(_ label: Substring) -> Bool {
        let lower = label.lowercased()
        if lower.hasPrefix("0x") { return lower.dropFirst(2).allSatisfy { $0.isASCII && $0.isHexDigit } }
        return !lower.isEmpty && lower.allSatisfy { $0.isASCII && $0.isNumber }
    }
}
