/// What the policy says about one connection to a host and port.
package enum PolicyDecision: Equatable, Sendable {
    /// Allowed by the rule with this text, as written (`*.pythonhosted.org`, or
    /// `@pypi: files.pythonhosted.org` for a preset's rule).
    case allow(rule: String)
    /// Refused, and why.
    case deny(DenyReason)

    /// Whether the decision allows the connection.
    package var isAllowed: Bool {
        if case .allow = self { return true }
        return false
    }
}

/// Why the policy refused a connection. `description` is the one line the audit log and
/// the sandbox see (the sandbox's with `airlock: ` before it and what to change after it,
/// see `Refusal`).
package enum DenyReason: Equatable, Sendable, CustomStringConvertible {
    /// The port is not 1…65535.
    case portOutOfRange(host: String, port: Int)
    /// The host is not a valid name; the problem, one line.
    case invalidName(problem: String)
    /// The gateway's own name, or a name under it.
    case gatewayItself(name: String)
    /// A `!` rule matches.
    case deniedByRule(name: String, rule: String, origin: String)
    /// No allow rule matches.
    case notAllowlisted(name: String)
    /// Allow rules match the name but none allows this port; `detail` says what they allow.
    case portNotAllowed(name: String, port: Int, detail: String)
    /// An IP literal that no `cidr` rule covers.
    case literalNotCovered(host: String)
    /// An IP literal on a port other than 80 and 443.
    case literalPortNotAllowed(host: String, port: Int)
    /// An IP literal whose address the address check refused.
    case literalAddressRefused(host: String, reason: String)

    package var description: String {
        switch self {
        case let .portOutOfRange(host, port): "port \(port) is out of range for \(host)"
        case let .invalidName(problem): problem
        case let .gatewayItself(name): "\(name) is the gateway itself, not an egress destination"
        case let .deniedByRule(name, rule, origin): "\(name) is denied by rule \(rule) (\(origin))"
        case let .notAllowlisted(name): "\(name) is not on the allowlist"
        case let .portNotAllowed(name, port, detail): "port \(port) is not allowed for \(name) (\(detail))"
        case let .literalNotCovered(host): "IP literal \(host) refused: connect by name, or add a cidr rule"
        case let .literalPortNotAllowed(host, port): "port \(port) is not allowed for IP literal \(host) (cidr rules allow only 80 and 443)"
        case let .literalAddressRefused(host, reason): "IP literal \(host): \(reason)"
        }
    }
}

/// What the policy says about an address a name resolved to (or an allowed literal).
package enum AddressVerdict: Equatable, Sendable {
    /// The address may be dialled; `rule` is the `allow-private` rule that permitted a
    /// special-purpose address, nil for a public one.
    case allowed(rule: String?)
    /// The address must not be dialled; one line naming the address, its class and the
    /// rule that would permit it.
    case refused(reason: String)

    /// Whether the address may be dialled.
    package var isAllowed: Bool {
        if case .allowed = self { return true }
        return false
    }
}
