extension Policy {
    /// Lines that say how the policy treats `host` on `port`: the decision, every rule that
    /// matches the host, what DNS would answer, pinned addresses and, for IP literals, the
    /// address and its class. Used by `airlock policy explain`.
    package func explain(host: String, port: Int) -> [String] {
        var lines: [String] = []
        let presetList = presets.isEmpty ? "" : "; presets " + presets.map { "@" + $0 }.joined(separator: ", ")
        lines.append("policy: \(source) (\(ruleCount) rules\(presetList))")
        let decision = decide(host: host, port: port)
        switch decision {
        case .allow(let rule):
            let origin = allRules.first { $0.text == rule }.map { " (\($0.origin))" } ?? ""
            lines.append("decision: allow \(host) port \(port) by rule \(rule)\(origin)")
        case .deny(let reason):
            lines.append("decision: deny: \(reason)")
        }

        if let address = HostLiteral.parse(host) {
            let block = AddressClass.block(of: address)
            var what = "\(host) is an IP literal for \(address), class \(block.addressClass.rawValue)"
            if let embedded = address.embeddedIPv4 {
                what += " (embeds \(IPAddress.v4(embedded)))"
            }
            lines.append("address: " + what)
            let cidrs = cidrRules.filter { rule in
                guard case .cidr(let range) = rule.kind else { return false }
                return range.contains(address) || address.embeddedIPv4.map { range.contains(.v4($0)) } == true
            }
            lines.append(cidrs.isEmpty
                ? "cidr: no cidr rule covers \(address)"
                : "cidr: covered by " + cidrs.map { "\($0.text) (\($0.origin))" }.joined(separator: ", "))
            lines.append("address check: " + verdictText(checkResolved(address)))
            lines.append("dns: not asked (clients do not resolve literals)")
            return lines
        }

        guard let name = try? HostName.normalise(host) else {
            lines.append("dns: NXDOMAIN")
            return lines
        }
        if name != host { lines.append("host: \(host) is normalised to \(name)") }
        let matching = (denyRules + allowRules).filter { $0.matches(name: name) }
        if matching.isEmpty {
            lines.append("rules: none match \(name)")
        } else {
            lines.append("rules matching \(name):")
            for rule in matching {
                let effect: String
                if rule.isDeny {
                    effect = "denies every port"
                } else if let own = rule.port {
                    effect = "allows port \(own)"
                } else {
                    effect = "allows ports 80 and 443"
                }
                lines.append("  \(rule.text) (\(rule.origin)): \(effect)")
            }
        }
        if name == HostName.gateway {
            lines.append("dns: A \(name) -> the gateway address (the gateway itself; requests go to its own endpoints)")
        } else if allowsName(name) {
            lines.append("dns: A \(name) -> the gateway address; AAAA and other types -> no answer")
        } else {
            lines.append("dns: NXDOMAIN for \(name) (audited as dns_deny)")
        }
        if let pinned = resolveOverrides[name] {
            let origin = resolveRules[name].map { " by \($0.text) (\($0.origin))" } ?? ""
            lines.append("resolve: \(name) is pinned to \(pinned.map(\.description).joined(separator: ", "))\(origin)")
            for address in pinned {
                lines.append("  \(address): " + verdictText(checkResolved(address, for: name)))
            }
        } else if decision.isAllowed {
            lines.append("resolve: the gateway resolves \(name) itself; each address is checked: public addresses pass, others need allow-private")
        }
        return lines
    }

    /// Every rule, in no particular order, for looking up origins.
    var allRules: [Rule] {
        allowRules + denyRules + cidrRules + allowPrivateRules + Array(resolveRules.values)
    }

    private func verdictText(_ verdict: AddressVerdict) -> String {
        switch verdict {
        case .allowed(nil): return "allowed (public)"
        case .allowed(let rule?): return "allowed by \(rule)"
        case .refused(let reason): return "refused: \(reason)"
        }
    }
}
