/// Host-name normalisation for rules and for hosts that clients send.
package enum HostName {
    /// Why a host name was refused.
    package struct InvalidName: Error, CustomStringConvertible {
        /// The name as given.
        package var name: String
        /// What is wrong, such as `empty label`.
        package var problem: String
        package var description: String { "'\(name)' is not a valid host name: \(problem)" }
    }

    /// The gateway's own name inside the sandbox; never an egress destination.
    package static let gateway = "airlock.internal"

    /// Lowercases `s`, strips one trailing dot and checks the label rules: ASCII letters,
    /// digits, `-` and `_` only (IDN as `xn--` punycode), labels of 1–63 bytes not starting
    /// or ending with `-`, at most 253 bytes, and a last label that is not numeric (that
    /// would be an IP literal in some reader's eyes).
    /// - Throws: `InvalidName` naming the problem.
    package static func normalise(_ s: String) throws -> String {
        if let name = plainName(s) { return name }
        return try checked(s)
    }

    /// The usual name in one pass over its bytes, for every connection's authority: the
    /// name lowercased without its trailing dot when it passes every rule of `normalise`;
    /// nil when anything is off or unusual (then `checked` decides and names the problem).
    /// A last label that starts with a digit goes to `checked` too, which knows the
    /// numeric spellings of an address.
    package static func plainName(_ s: String) -> String? {
        var s = s
        return s.withUTF8 { bytes -> String? in
            var count = bytes.count
            if count > 0 && bytes[count - 1] == UInt8(ascii: ".") { count -= 1 }
            guard count > 0, count <= 253 else { return nil }
            var labelStart = 0
            for index in 0...count {
                let byte = index < count ? bytes[index] : UInt8(ascii: ".")
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                     UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                    continue
                case UInt8(ascii: "."):
                    let length = index - labelStart
                    guard length > 0, length <= 63, bytes[labelStart] != UInt8(ascii: "-"),
                          bytes[index - 1] != UInt8(ascii: "-") else { return nil }
                    if index == count, bytes[labelStart] >= UInt8(ascii: "0"), bytes[labelStart] <= UInt8(ascii: "9") {
                        return nil
                    }
                    labelStart = index + 1
                default:
                    return nil
                }
            }
            return String(unsafeUninitializedCapacity: count) { out in
                for index in 0..<count {
                    let byte = bytes[index]
                    out[index] = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
                }
                return count
            }
        }
    }

    /// `normalise` rule by rule, naming the first problem.
    package static func checked(_ s: String) throws -> String {
        func fail(_ problem: String) -> InvalidName { InvalidName(name: s, problem: problem) }
        if s.unicodeScalars.contains(where: { !$0.isASCII }) {
            throw fail("non-ASCII characters; write international names as punycode (xn--…)")
        }
        var name = Substring(s.lowercased())
        if name.hasSuffix(".") { name = name.dropLast() }
        guard !name.isEmpty else { throw fail("empty") }
        guard name.utf8.count <= 253 else { throw fail("longer than 253 bytes") }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard !label.isEmpty else { throw fail("empty label (two dots in a row, or a leading dot)") }
            guard label.utf8.count <= 63 else { throw fail("label '\(label)' is longer than 63 bytes") }
            if let bad = label.first(where: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
                throw fail("character '\(printable(bad))' is not allowed in a host name")
            }
            guard label.first != "-", label.last != "-" else {
                throw fail("label '\(label)' starts or ends with '-'")
            }
        }
        if let last = labels.last, HostLiteral.looksNumeric(last) {
            throw fail("the last label is numeric, which spells an IP address")
        }
        return String(name)
    }

    private static func printable(_ c: Character) -> String {
        guard let scalar = c.unicodeScalars.first, scalar.value >= 0x20, scalar.value != 0x7F else {
            let v = c.unicodeScalars.first?.value ?? 0
            return "\\x" + (v < 16 ? "0" : "") + String(v, radix: 16)
        }
        return String(c)
    }
}
