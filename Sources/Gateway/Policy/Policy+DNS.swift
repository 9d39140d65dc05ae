/// The DNS responder's allocation-free form of `allowsName(_:)`.
extension Policy {
    /// `allowsName(_:)` for a name given as bytes, without building a `String`: the DNS
    /// responder calls it once per query with the question name lowercased and dotted.
    ///
    /// The decision is always the one `allowsName(String(decoding: name, as: UTF8.self))`
    /// gives. Names that are not lowercase host names (any byte other than `a-z`, `0-9`,
    /// `-`, `_` and single dots between labels) and names whose last label could be read
    /// as a number or an IP literal part (only `0-9`, `a-f` and `x`) take that `String`
    /// path; for the rest no IP literal can be spelled, so the checks left are the label
    /// rules of `HostName.normalise`, the gateway's own name and the rules, compared byte
    /// for byte (rules hold normalised names, which are lowercase ASCII).
    package func allowsName(lowercaseBytes name: UnsafeRawBufferPointer) -> Bool {
        switch Self.dnsShape(of: name) {
        case .needsString:
            return allowsName(String(decoding: name, as: UTF8.self))
        case .badLabel:
            return false
        case .plainName:
            if Self.bytes(name, equalOrSubdomainOf: HostName.gateway) { return false }
            if denyRules.contains(where: { Self.rule($0, matches: name) }) { return false }
            return allowRules.contains { Self.rule($0, matches: name) }
        }
    }

    /// The reason `decide(host:port:)` gives for port 443, for a name
    /// `allowsName(lowercaseBytes:)` refused, built without normalising it again: nil when
    /// the name is not a plain host name (or is allowed), and the caller asks `decide`.
    package func dnsDenialReason(lowercaseBytes name: UnsafeRawBufferPointer) -> String? {
        guard Self.dnsShape(of: name) == .plainName else { return nil }
        let text = String(decoding: name, as: UTF8.self)
        if Self.bytes(name, equalOrSubdomainOf: HostName.gateway) {
            return "\(text) is the gateway itself, not an egress destination"
        }
        if let deny = denyRules.first(where: { Self.rule($0, matches: name) }) {
            return "\(text) is denied by rule \(deny.text) (\(deny.origin))"
        }
        if !allowRules.contains(where: { Self.rule($0, matches: name) }) {
            return "\(text) is not on the allowlist"
        }
        return nil
    }

    /// How `allowsName(lowercaseBytes:)` decides a name.
    enum DNSNameShape: Equatable {
        /// A lowercase host name whose last label cannot be read as a number: decided on bytes.
        case plainName
        /// Otherwise fine, but a label starts or ends with '-': `HostName.normalise` refuses it.
        case badLabel
        /// Anything else: decided by `allowsName(_:)` on a String.
        case needsString
    }

    static func dnsShape(of name: UnsafeRawBufferPointer) -> DNSNameShape {
        guard !name.isEmpty, name.count <= 253 else { return .needsString }
        var labelStart = 0
        var lastLabelMayBeNumeric = true
        var badLabel = false
        var index = 0
        while index <= name.count {
            let byte = index < name.count ? name[index] : UInt8(ascii: ".")
            if byte == UInt8(ascii: ".") {
                let length = index - labelStart
                // An empty or over-long label: let the String path name the problem.
                guard length > 0, length <= 63 else { return .needsString }
                // HostName.normalise: labels may not start or end with '-'.
                if name[labelStart] == UInt8(ascii: "-") || name[index - 1] == UInt8(ascii: "-") { badLabel = true }
                labelStart = index + 1
                if index < name.count { lastLabelMayBeNumeric = true }
            } else if (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                        || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f")) || byte == UInt8(ascii: "x") {
                // Still possibly a number (decimal, octal or 0x hex).
            } else if (byte >= UInt8(ascii: "g") && byte <= UInt8(ascii: "z"))
                        || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") {
                lastLabelMayBeNumeric = false
            } else {
                return .needsString
            }
            index += 1
        }
        // A numeric-looking last label is refused by normalise, and every IP literal
        // without ':' or '[' ends in one: both are decided by the String path.
        if lastLabelMayBeNumeric { return .needsString }
        return badLabel ? .badLabel : .plainName
    }

    /// `Rule.matches(name:)` on bytes.
    private static func rule(_ rule: Rule, matches name: UnsafeRawBufferPointer) -> Bool {
        switch rule.kind {
        case .host(let host):
            return equal(name, host, strictSuffix: false)
        case .subdomains(let suffix):
            return equal(name, suffix, strictSuffix: true)
        default:
            return false
        }
    }

    /// Whether `name` is `text` or ends in `.text`.
    private static func bytes(_ name: UnsafeRawBufferPointer, equalOrSubdomainOf text: String) -> Bool {
        equal(name, text, strictSuffix: false) || equal(name, text, strictSuffix: true)
    }

    /// With `strictSuffix` false: whether `name` is `text`. With it true: whether `name`
    /// ends in `.text` with at least one byte before the dot.
    private static func equal(_ name: UnsafeRawBufferPointer, _ text: String, strictSuffix: Bool) -> Bool {
        let result = text.utf8.withContiguousStorageIfAvailable { text -> Bool in
            if text.isEmpty { return !strictSuffix && name.isEmpty }
            if strictSuffix {
                guard name.count > text.count + 1 else { return false }
                let dot = name.count - text.count - 1
                guard name[dot] == UInt8(ascii: ".") else { return false }
                return memcmp(name.baseAddress! + dot + 1, text.baseAddress!, text.count) == 0
            }
            guard name.count == text.count else { return false }
            return memcmp(name.baseAddress!, text.baseAddress!, text.count) == 0
        }
        if let result { return result }
        // A String without contiguous UTF-8 (never made by the parser): compare as Strings.
        let string = String(decoding: name, as: UTF8.self)
        return strictSuffix ? string.utf8.count > text.utf8.count + 1 && string.hasSuffix("." + text) : string == text
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
