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
            return learning || allowRules.contains { Self.rule($0, matches: name) }
        }
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
    static func bytes(_ name: UnsafeRawBufferPointer, equalOrSubdomainOf text: String) -> Bool {
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

/// A policy's host and subdomain rules laid out flat for the DNS responder:
/// `allowsName(lowercaseBytes:)` with no reference counting per rule, and a cheap check
/// of whether it still describes the policy in force.
package final class DNSNameRules: Sendable {
    /// The policy the rules come from (for names decided as Strings, and for reasons).
    package let policy: Policy
    /// The rule names, back to back.
    private let names: [UInt8]
    /// Deny rules first, then allow rules, each in file order.
    private let entries: [Entry]
    private let denyCount: Int
    /// Identities of the rule arrays this was built from.
    private let allowIdentity: ArrayIdentity
    private let denyIdentity: ArrayIdentity

    private struct Entry: Sendable {
        var offset: Int
        var length: Int
        /// `*.name` (a proper subdomain) rather than exactly `name`.
        var subdomains: Bool
        /// For deny rules: the index in `policy.denyRules`.
        var ruleIndex: Int
    }

    private struct ArrayIdentity: Equatable, Sendable {
        var address: UInt
        var count: Int
        init(_ rules: [Rule]) {
            address = rules.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
            count = rules.count
        }
    }

    package init(_ policy: Policy) {
        self.policy = policy
        var names: [UInt8] = []
        var entries: [Entry] = []
        for (index, rule) in (policy.denyRules + policy.allowRules).enumerated() {
            switch rule.kind {
            case .host(let name):
                entries.append(Entry(offset: names.count, length: name.utf8.count, subdomains: false, ruleIndex: index))
                names.append(contentsOf: name.utf8)
            case .subdomains(let suffix):
                entries.append(Entry(offset: names.count, length: suffix.utf8.count, subdomains: true, ruleIndex: index))
                names.append(contentsOf: suffix.utf8)
            default:
                // Rule.matches(name:) is false for other kinds; `append` never files them here.
                continue
            }
        }
        self.names = names
        self.entries = entries
        self.denyCount = policy.denyRules.reduce(0) { count, rule in
            switch rule.kind {
            case .host, .subdomains: return count + 1
            default: return count
            }
        }
        self.allowIdentity = ArrayIdentity(policy.allowRules)
        self.denyIdentity = ArrayIdentity(policy.denyRules)
    }

    /// Whether these rules were built from `policy`'s rule arrays (the same storage, so
    /// the same rules): true until the store swaps in a reloaded policy.
    package func describes(_ policy: Policy) -> Bool {
        ArrayIdentity(policy.allowRules) == allowIdentity && ArrayIdentity(policy.denyRules) == denyIdentity
    }

    /// `Policy.allowsName(lowercaseBytes:)`, on the flat rules.
    package func allowsName(lowercaseBytes name: UnsafeRawBufferPointer) -> Bool {
        switch Policy.dnsShape(of: name) {
        case .needsString:
            return policy.allowsName(String(decoding: name, as: UTF8.self))
        case .badLabel:
            return false
        case .plainName:
            if Policy.bytes(name, equalOrSubdomainOf: HostName.gateway) { return false }
            guard let index = firstMatch(name) else { return policy.learning }
            return index >= denyCount
        }
    }

    /// The reason `policy.decide(host:port:)` gives for port 443, for a name
    /// `allowsName(lowercaseBytes:)` refused, built without normalising it again: nil when
    /// the name is not a plain host name (or is allowed), and the caller asks `decide`.
    package func denialReason(lowercaseBytes name: UnsafeRawBufferPointer) -> String? {
        guard Policy.dnsShape(of: name) == .plainName else { return nil }
        let text = String(decoding: name, as: UTF8.self)
        if Policy.bytes(name, equalOrSubdomainOf: HostName.gateway) {
            return "\(text) is the gateway itself, not an egress destination"
        }
        // decide names the first deny rule in file order: deny entries come first, in order.
        switch firstMatch(name) {
        case let index? where index < denyCount:
            let rule = policy.denyRules[entries[index].ruleIndex]
            return "\(text) is denied by rule \(rule.text) (\(rule.origin))"
        case nil:
            return policy.learning ? nil : "\(text) is not on the allowlist"
        default:
            return nil
        }
    }

    /// The index in `entries` of the first rule matching `name`.
    private func firstMatch(_ name: UnsafeRawBufferPointer) -> Int? {
        names.withUnsafeBytes { names in
            for index in entries.indices where Self.matches(name, entries[index], names) {
                return index
            }
            return nil
        }
    }

    private static func matches(_ name: UnsafeRawBufferPointer, _ entry: Entry, _ names: UnsafeRawBufferPointer) -> Bool {
        let rule = names.baseAddress.map { $0 + entry.offset }
        if entry.subdomains {
            guard name.count > entry.length + 1 else { return false }
            let dot = name.count - entry.length - 1
            guard name[dot] == UInt8(ascii: ".") else { return false }
            return entry.length == 0 || memcmp(name.baseAddress! + dot + 1, rule!, entry.length) == 0
        }
        guard name.count == entry.length else { return false }
        return entry.length == 0 || memcmp(name.baseAddress!, rule!, entry.length) == 0
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
