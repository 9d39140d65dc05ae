import SystemPackage
import SystemCalls

/// An unnamed sandbox for `airlock run`: S and G exist only as the two descriptors held
/// here, with the topology built between them.
///
/// Leaves nothing behind: no pin, no state file. When both namespaces are closed (and no
/// process lives in them), the kernel frees the namespaces, the veth pair and the routes.
package struct EphemeralSandbox: ~Copyable {
    /// The sandbox namespace S.
    package let sandbox: NetworkNamespace
    /// The gateway namespace G.
    package let gateway: NetworkNamespace
    /// The topology built between them.
    package let topology: SandboxTopology

    /// Makes two unnamed namespaces and builds `topology` between them.
    /// - Parameter failAfter: tests only: fail after this step (everything is freed).
    /// - Throws: `Privileges.PrivilegeError`, `NetlinkError`, `SystemCallError`.
    /// - Requires: CAP_SYS_ADMIN and CAP_NET_ADMIN.
    package static func build(_ topology: SandboxTopology, failAfter: TopologyStep? = nil) throws -> EphemeralSandbox {
        try CapabilityCheck.requireNamespaceAdmin(for: "an unnamed sandbox")
        // S and G are made at once, each with a netlink socket opened inside it, through
        // which the main thread configures it: no thread per step.
        let made = try NetworkNamespace.createUnnamedPair(
            prepareFirst: { try SandboxTopology.prepareNamespace(); return try RouteSocket() },
            prepareSecond: { try SandboxTopology.prepareGatewayNamespace(); return try RouteSocket() })
        try topology.build(sandbox: made.first.descriptor, gateway: made.second.descriptor, failAfter: failAfter, namespacesPrepared: true,
                           routeSockets: (sandbox: made.firstPrepared, gateway: made.secondPrepared))
        return EphemeralSandbox(sandbox: made.first, gateway: made.second, topology: topology)
    }
}
