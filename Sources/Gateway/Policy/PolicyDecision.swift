/// What the policy says about one connection to a host and port.
package enum PolicyDecision: Equatable, Sendable {
    /// Allowed by the rule with this text, as written (`*.pythonhosted.org`, or
    /// `@pypi: files.pythonhosted.org` for a preset's rule).
    case allow(rule: String)
    /// Refused; one line naming the host and why.
    case deny(reason: String)

    /// Whether the decision allows the connection.
    package var isAllowed: Bool {
        if case .allow = self { return true }
        return false
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
