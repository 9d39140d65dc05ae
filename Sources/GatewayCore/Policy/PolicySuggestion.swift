import FoundationEssentials

/// Turns audit lines (of a `--learn` run, or of enforced runs) into a policy file: what
/// `airlock policy suggest` prints.
///
/// Every host the log shows used (`egress_allow`) or refused for want of a rule
/// (`egress_deny`, `dns_deny` "not on the allowlist", or a port not allowed) becomes a
/// rule: a preset where the host is one of a preset's, `*.suffix` where two or more
/// siblings under one suffix were used, `host:port` off ports 80 and 443, else the host.
/// Each rule has a comment with its counts and first and last use; shared-hosting names
/// (docs/policy.md) are flagged. IP literals, the gateway's own name, git requests and
/// refusals no rule lifts (deny rules, address checks) are left out. Every rule written
/// parses as a policy line.
package struct PolicySuggestion {
    /// One host and port seen in the log.
    package struct Use: Equatable {
        package var host: String
        package var port: Int
        package var count = 0
        package var refused = 0
        package var first = ""
        package var last = ""
    }

    /// Shared-hosting names and suffixes: allowing them reaches other tenants too.
    package static let sharedHosting = ["storage.googleapis.com", "githubusercontent.com"]

    private var uses: [String: Use] = [:]
    private var order: [String] = []
    /// Audit lines read, and lines that were not audit JSON.
    package private(set) var lines = 0
    package private(set) var unreadable = 0

    package init() {}

    /// Reads one audit line (without its newline).
    package mutating func add(line: String) {
        guard !line.isEmpty else { return }
        lines += 1
        guard let object = try? JSONDecoder().decode(AuditFields.self, from: Data(line.utf8)) else {
            unreadable += 1
            return
        }
        let event = object.event
        guard let rawHost = object.host, HostLiteral.parse(rawHost) == nil,
              let host = try? HostName.normalise(rawHost), host != HostName.gateway, !host.hasSuffix("." + HostName.gateway)
        else { return }
        let reason = object.reason ?? ""
        let port = object.port ?? 443
        let refusedForWantOfRule = reason.hasSuffix(" is not on the allowlist")
            || reason.hasPrefix("port \(port) is not allowed for \(host) ")
        let refused: Bool
        switch event {
        case "egress_allow":
            refused = false
        case "egress_deny" where !object.hasRule && refusedForWantOfRule,
             "dns_deny" where refusedForWantOfRule:
            refused = true
        default:
            return
        }
        let key = "\(host):\(port)"
        let ts = object.ts ?? ""
        if uses[key] == nil {
            uses[key] = Use(host: host, port: port, first: ts, last: ts)
            order.append(key)
        }
        uses[key]!.count += 1
        if refused { uses[key]!.refused += 1 }
        if !ts.isEmpty {
            if uses[key]!.first.isEmpty || ts < uses[key]!.first { uses[key]!.first = ts }
            if ts > uses[key]!.last { uses[key]!.last = ts }
        }
    }

    /// The hosts and ports seen, in the order first seen.
    package var seen: [Use] { order.compactMap { uses[$0] } }

    /// The policy file: a header, then one comment line and one rule per suggestion.
    /// - Parameter sources: the files read, named in the header.
    package func policy(sources: [String]) -> String {
        var out = "# Suggested by `airlock policy suggest` from \(sources.joined(separator: ", ")) (\(lines) audit lines).\n"
        out += "# It allows what the command used, not what it needs: review every line before use.\n"
        if unreadable > 0 { out += "# \(unreadable) lines were not audit lines and were skipped.\n" }
        var left = seen
        if left.isEmpty { return out + "# Nothing was used: this policy allows nothing.\n" }

        func describe(_ group: [Use]) -> String {
            let count = group.reduce(0) { $0 + $1.count }
            let refused = group.reduce(0) { $0 + $1.refused }
            let first = group.map(\.first).filter { !$0.isEmpty }.min() ?? "?"
            let last = group.map(\.last).max() ?? "?"
            var text = "\(count) use\(count == 1 ? "" : "s")"
            if refused > 0 { text += " (\(refused) refused)" }
            return text + ", first \(first), last \(last)"
        }
        func shared(_ host: String) -> Bool {
            Self.sharedHosting.contains { host == $0 || host.hasSuffix("." + $0) }
        }
        func flag(_ hosts: [String]) -> String {
            let flagged = hosts.filter(shared)
            return flagged.isEmpty ? "" : "\n# shared hosting (\(flagged.joined(separator: ", "))): serves many tenants; see docs/policy.md"
        }
        func parses(_ rule: String) -> Bool {
            (try? Policy.rules(allow: [rule], allowPrivate: [], resolve: [], source: "suggestion")) != nil
        }

        // Presets: a default-port host that is one of a preset's.
        for name in Presets.all.keys.sorted() {
            let hosts = Set(Presets.all[name] ?? [])
            let used = left.filter { Rule.defaultPorts.contains($0.port) && hosts.contains($0.host) }
            guard !used.isEmpty else { continue }
            let names = Array(Set(used.map(\.host))).sorted()
            out += "\n# @\(name) for \(names.joined(separator: ", ")): \(describe(used))\(flag(names))\n@\(name)\n"
            left.removeAll { Rule.defaultPorts.contains($0.port) && hosts.contains($0.host) }
        }

        // Siblings: two or more default-port names directly under one suffix of two labels or more.
        var bySuffix: [String: [Use]] = [:]
        for use in left where Rule.defaultPorts.contains(use.port) {
            guard let dot = use.host.firstIndex(of: ".") else { continue }
            let suffix = String(use.host[use.host.index(after: dot)...])
            guard suffix.contains(".") else { continue }
            bySuffix[suffix, default: []].append(use)
        }
        var grouped: Set<String> = []
        for suffix in bySuffix.keys.sorted() {
            let group = bySuffix[suffix]!
            let names = Array(Set(group.map(\.host))).sorted()
            guard names.count >= 2, parses("*." + suffix) else { continue }
            out += "\n# *.\(suffix) for \(names.joined(separator: ", ")): \(describe(group))\(flag(names + [suffix]))\n*.\(suffix)\n"
            grouped.formUnion(names)
        }
        left.removeAll { Rule.defaultPorts.contains($0.port) && grouped.contains($0.host) }

        // The rest, one rule per host (ports 80 and 443 together) or host:port.
        var written: Set<String> = []
        for use in left {
            let isDefault = Rule.defaultPorts.contains(use.port)
            let rule = isDefault ? use.host : "\(use.host):\(use.port)"
            guard !written.contains(rule) else { continue }
            written.insert(rule)
            let group = isDefault ? left.filter { $0.host == use.host && Rule.defaultPorts.contains($0.port) } : [use]
            guard parses(rule) else {
                out += "\n# skipped \(rule): not a valid policy rule\n"
                continue
            }
            out += "\n# \(rule): \(describe(group))\(flag([use.host]))\n\(rule)\n"
        }
        return out
    }
}

/// The fields of an audit line that suggestions read. A field of another type reads as
/// absent; a line without a string `event` is not an audit line.
private struct AuditFields: Decodable {
    var event: String
    var host: String?
    var reason: String?
    var port: Int?
    var ts: String?
    /// Whether the line names a rule at all (a deny rule refused it).
    var hasRule: Bool

    private enum CodingKeys: String, CodingKey { case event, host, reason, port, ts, rule }

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        event = try fields.decode(String.self, forKey: .event)
        host = try? fields.decode(String.self, forKey: .host)
        reason = try? fields.decode(String.self, forKey: .reason)
        port = try? fields.decode(Int.self, forKey: .port)
        ts = try? fields.decode(String.self, forKey: .ts)
        hasRule = fields.contains(.rule)
    }
}
