/// One parsed policy line (or one line of an expanded preset).
package struct Rule: Hashable, Sendable {
    /// What a rule matches.
    package enum Kind: Hashable, Sendable {
        /// Exactly this normalised host.
        case host(String)
        /// Any name ending in `.suffix`, not the suffix itself.
        case subdomains(of: String)
        /// IP literals in this range may be used by clients.
        case cidr(CIDR)
        /// Special-purpose addresses in this range may be dialled, for any name.
        case allowPrivate(CIDR)
        /// Special-purpose addresses in this range may be dialled for names the host
        /// pattern (a `.host` or `.subdomains` kind) matches, and for no other.
        indirect case allowPrivateFor(CIDR, names: Kind)
        /// The name is pinned to these addresses.
        case resolve(host: String, addresses: [IPAddress])
    }

    /// What the rule matches or does.
    package var kind: Kind
    /// The one port a `host:port` rule allows; nil for ports 80 and 443.
    package var port: Int?
    /// A `!` rule: denies, and wins over every allow.
    package var isDeny: Bool
    /// The rule as written, such as `*.pythonhosted.org` or `@pypi: files.pythonhosted.org`.
    package var text: String
    /// Where it came from: `line 4`, or a flag such as `--allow`.
    package var origin: String

    package init(kind: Kind, port: Int? = nil, isDeny: Bool = false, text: String, origin: String) {
        self.kind = kind
        self.port = port
        self.isDeny = isDeny
        self.text = text
        self.origin = origin
    }

    /// The ports a host rule allows when no port is given.
    package static let defaultPorts = [80, 443]

    /// Whether this host or subdomain rule matches the normalised `name`, any port.
    package func matches(name: String) -> Bool {
        switch kind {
        case .host(let host):
            return name == host
        case .subdomains(let suffix):
            return name.utf8.count > suffix.utf8.count + 1 && name.hasSuffix("." + suffix)
        default:
            return false
        }
    }

    /// Whether this rule allows `port` for a host it matches.
    package func allows(port: Int) -> Bool {
        if let own = self.port { return own == port }
        return Rule.defaultPorts.contains(port)
    }
}
