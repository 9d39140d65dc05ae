/// The check every namespace operation makes before it changes anything.
package enum CapabilityCheck {
    /// The capabilities making, pinning and entering namespaces needs.
    package static let namespaceAdmin: [Capability] = [.netAdmin, .sysAdmin]

    /// Throws unless the process holds CAP_SYS_ADMIN and CAP_NET_ADMIN.
    /// - Throws: `Privileges.PrivilegeError.missing` naming the operation and the missing
    ///   capabilities, the one error (and wording) every command uses for missing privileges.
    package static func requireNamespaceAdmin(for operation: String) throws {
        try Privileges.requireRoot(for: operation, capabilities: namespaceAdmin)
    }
}
