/// The capabilities an operation needs, checked before it changes anything.
package struct MissingCapabilities: Error, CustomStringConvertible, Equatable {
    /// What was attempted, e.g. `airlock netns create`.
    package var operation: String
    /// The capabilities the operation needs.
    package var required: [String]
    /// Those the process lacks.
    package var missing: [String]

    package var description: String {
        "\(operation) needs \(required.joined(separator: " and ")) (run as root); missing: \(missing.joined(separator: ", "))"
    }
}

/// The check every namespace operation makes before it changes anything.
package enum CapabilityCheck {
    /// Throws unless the process holds CAP_SYS_ADMIN and CAP_NET_ADMIN (what making,
    /// pinning and entering namespaces needs). Reads the set through `Privileges`.
    /// - Throws: `MissingCapabilities` naming the missing ones.
    package static func requireNamespaceAdmin(for operation: String) throws {
        let required: [Capability] = [.sysAdmin, .netAdmin]
        let missing = Privileges.missing(required, effective: Privileges.effectiveCapabilities())
        if !missing.isEmpty {
            throw MissingCapabilities(
                operation: operation, required: required.sorted(by: >).map(\.description),
                missing: missing.sorted(by: >).map(\.description))
        }
    }
}
