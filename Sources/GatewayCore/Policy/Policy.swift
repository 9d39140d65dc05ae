/// The egress allowlist of one sandbox: host rules, denies, presets, address rules and
/// pinned names. A plain value, safe to share across threads; `PolicyStore` swaps it on
/// reload.
///
/// Port rules: a plain host rule allows ports 80 and 443; any other port needs a
/// `host:port` rule. Deny rules win over every allow. IP literals are refused unless a
/// `cidr` rule covers them, and special-purpose addresses (loopback, private, …) are
/// refused unless an `allow-private` rule covers them. The file format is in
/// docs/policy.md.
package struct Policy: Sendable {
    /// Host and subdomain allow rules, in file order.
    package private(set) var allowRules: [Rule] = []
    /// `!` rules, in file order.
    package private(set) var denyRules: [Rule] = []
    /// `cidr` rules: literal ranges clients may use.
    package private(set) var cidrRules: [Rule] = []
    /// `allow-private` rules: special-purpose ranges that may be dialled, for every name
    /// (`allow-private CIDR`) or for some (`allow-private CIDR for HOST`).
    package private(set) var allowPrivateRules: [Rule] = []
    /// Normalised host → pinned addresses, from `resolve` rules.
    package private(set) var resolveOverrides: [String: [IPAddress]] = [:]
    /// The `resolve` rules behind `resolveOverrides`, by host, for explanations.
    package private(set) var resolveRules: [String: Rule] = [:]
    /// Presets used, in first-use order, without the `@`.
    package private(set) var presets: [String] = []
    /// Credential routes (`route NAME URL header …`), in file order, one per name.
    package internal(set) var routes: [CredentialRoute] = []
    /// The file path, or the flag the rules came from (`--allow`); `a + b` after merging.
    package var source: String
    /// Learn mode (`--learn`): every valid name is allowed, on every port, where no deny
    /// rule matches. IP literals still need a `cidr` rule and resolved addresses still pass
    /// the address check. Set only from the command line, never by a policy file.
    package var learning = false

    /// The `rule` of decisions that only learn mode allowed.
    package static let learnRule = "learn mode"

    /// A policy that allows nothing.
    package static let denyAll = Policy(source: "no policy")

    /// An empty policy from `source`.
    package init(source: String) {
        self.source = source
    }

    /// How many rules the policy holds, presets expanded.
    package var ruleCount: Int {
        allowRules.count + denyRules.count + cidrRules.count + allowPrivateRules.count + resolveRules.count
    }

    /// Adds one parsed rule. A later `resolve` for the same host replaces the earlier one.
    package mutating func append(_ rule: Rule) {
        switch rule.kind {
        case .host, .subdomains:
            if rule.isDeny { denyRules.append(rule) } else { allowRules.append(rule) }
        case .cidr:
            cidrRules.append(rule)
        case .allowPrivate, .allowPrivateFor:
            allowPrivateRules.append(rule)
        case .resolve(let host, let addresses):
            resolveOverrides[host] = addresses
            resolveRules[host] = rule
        }
    }

    /// Records that `name` was expanded, once.
    mutating func notePreset(_ name: String) {
        if !presets.contains(name) { presets.append(name) }
    }

    /// This policy with `other`'s rules added (the file plus command-line flags).
    /// `other`'s `resolve` rules replace this policy's for the same host.
    package func adding(rulesFrom other: Policy) -> Policy {
        var merged = self
        for rule in other.allowRules + other.denyRules + other.cidrRules + other.allowPrivateRules {
            merged.append(rule)
        }
        for host in other.resolveRules.keys.sorted() {
            if let rule = other.resolveRules[host] { merged.append(rule) }
        }
        for preset in other.presets { merged.notePreset(preset) }
        for route in other.routes { merged.replaceRoute(route) }
        merged.learning = learning || other.learning
        if other.ruleCount > 0 || !other.routes.isEmpty {
            merged.source = self.source == Policy.denyAll.source ? other.source : self.source + " + " + other.source
        }
        return merged
    }

    // MARK: Decisions

    /// Decides a connection to `host` (exactly as the client sent it: CONNECT target,
    /// SNI or `Host`, without the port) on `port`.
    package func decide(host: String, port: Int) -> PolicyDecision {
        guard (1...65535).contains(port) else {
            return .deny(.portOutOfRange(host: host, port: port))
        }
        if let address = HostLiteral.parse(host) {
            return decideLiteral(host, address, port: port)
        }
        let name: String
        do {
            name = try HostName.normalise(host)
        } catch {
            return .deny(.invalidName(problem: String(describing: error)))
        }
        if name == HostName.gateway || name.hasSuffix("." + HostName.gateway) {
            return .deny(.gatewayItself(name: name))
        }
        if let deny = denyRules.first(where: { $0.matches(name: name) }) {
            return .deny(.deniedByRule(name: name, rule: deny.text, origin: deny.origin))
        }
        let matching = allowRules.filter { $0.matches(name: name) }
        if matching.isEmpty {
            if learning { return .allow(rule: Self.learnRule) }
            return .deny(.notAllowlisted(name: name))
        }
        // Exact hosts before subdomain rules, a rule naming this port before the defaults.
        let ranked = matching.sorted { rank($0) < rank($1) }
        if let rule = ranked.first(where: { $0.allows(port: port) }) {
            return .allow(rule: rule.text)
        }
        if learning { return .allow(rule: Self.learnRule) }
        let ports = Set(matching.compactMap(\.port)).sorted()
        let other = ports.isEmpty ? "" : "; rules allow \(ports.map(String.init).joined(separator: ", "))"
        let defaults = matching.contains { $0.port == nil } ? "only 80 and 443 without a host:port rule" : "no rule for this port"
        return .deny(.portNotAllowed(name: name, port: port, detail: defaults + other))
    }

    private func rank(_ rule: Rule) -> Int {
        var r = 0
        if case .subdomains = rule.kind { r += 2 }
        if rule.port == nil { r += 1 }
        return r
    }

    private func decideLiteral(_ host: String, _ address: IPAddress, port: Int) -> PolicyDecision {
        guard let cidr = cidrRule(for: address) else {
            return .deny(.literalNotCovered(host: host))
        }
        guard Rule.defaultPorts.contains(port) else {
            return .deny(.literalPortNotAllowed(host: host, port: port))
        }
        switch checkResolved(address) {
        case .allowed:
            return .allow(rule: cidr.text)
        case .refused(let reason):
            return .deny(.literalAddressRefused(host: host, reason: reason))
        }
    }

    private func cidrRule(for address: IPAddress) -> Rule? {
        cidrRules.first { rule in
            guard case .cidr(let range) = rule.kind else { return false }
            return range.contains(address) || address.embeddedIPv4.map { range.contains(.v4($0)) } == true
        }
    }

    /// Whether DNS should answer for `name`: some allow rule matches it (for any port)
    /// and no deny rule does. The gateway's own name is answered by the DNS responder,
    /// not here.
    package func allowsName(_ name: String) -> Bool {
        guard HostLiteral.parse(name) == nil, let normal = try? HostName.normalise(name) else { return false }
        if normal == HostName.gateway || normal.hasSuffix("." + HostName.gateway) { return false }
        if denyRules.contains(where: { $0.matches(name: normal) }) { return false }
        return learning || allowRules.contains { $0.matches(name: normal) }
    }

    /// Checks an address after resolution (or an allowed literal) against the address
    /// classes and the `allow-private` rules: the global ones, and those for `host` (the
    /// name that resolved to it, normalised; nil for a literal).
    package func checkResolved(_ address: IPAddress, for host: String? = nil) -> AddressVerdict {
        let block = AddressClass.block(of: address)
        if block.addressClass == .publicUnicast { return .allowed(rule: nil) }
        let embedded = address.embeddedIPv4.map { IPAddress.v4($0) }
        let shown = embedded.map { "\(address) (\($0))" } ?? "\(address)"
        guard block.addressClass.mayBeAllowed else {
            return .refused(reason: "\(shown) is \(block.addressClass.rawValue) and can never be a destination")
        }
        for rule in allowPrivateRules {
            let range: CIDR
            switch rule.kind {
            case .allowPrivate(let global):
                range = global
            case .allowPrivateFor(let scoped, let names):
                guard let host, Rule(kind: names, text: "", origin: "").matches(name: host) else { continue }
                range = scoped
            default:
                continue
            }
            if range.contains(address) || embedded.map(range.contains) == true {
                return .allowed(rule: rule.text)
            }
        }
        let suggestion = block.range.map { "add allow-private \($0) to permit it" } ?? "add an allow-private rule to permit it"
        return .refused(reason: "\(shown) is \(block.addressClass.rawValue); \(suggestion)")
    }
}
