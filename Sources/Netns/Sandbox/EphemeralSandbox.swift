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
    package static func build(
        _ topology: SandboxTopology, failAfter: TopologyStep? = nil, listeners: EarlyListeners? = nil
    ) throws -> EphemeralSandbox {
        try CapabilityCheck.requireNamespaceAdmin(for: "an unnamed sandbox")
        // S and G are made at once, each with a netlink socket opened inside it, through
        // which the main thread configures it: no thread per step.
        let made = try NetworkNamespace.createUnnamedPair(
            prepareFirst: { try SandboxTopology.prepareNamespace(); return try RouteSocket() },
            prepareSecond: { () throws -> (RouteSocket, HeldSockets?) in
                try SandboxTopology.prepareGatewayNamespace()
                let socket = try RouteSocket()
                guard let listeners else { return (socket, nil) }
                return (socket, HeldSockets(try GatewaySockets.bindHere(
                    address: topology.gatewayAddress.address, ports: listeners.ports, beforeTheAddress: true)))
            })
        if let listeners, let held = made.secondPrepared.1 { try held.hand(to: listeners.hand) }
        try topology.build(sandbox: made.first.descriptor, gateway: made.second.descriptor, failAfter: failAfter, namespacesPrepared: true,
                           routeSockets: (sandbox: made.firstPrepared, gateway: made.secondPrepared.0))
        return EphemeralSandbox(sandbox: made.first, gateway: made.second, topology: topology)
    }

    /// The gateway's listening sockets, bound in G as soon as it exists: on the thread that
    /// made G, before its veth end and address (`ListenerSockets.bindHere`), and handed over
    /// while the rest is built, so the gateway starts serving meanwhile.
    package struct EarlyListeners {
        /// The policy's ports besides the standard ones (`GatewaySockets.bind`).
        package var ports: [Int]
        /// Takes the sockets (the gateway process gets copies); they are closed here after.
        package var hand: (GatewaySockets) throws -> Void

        package init(ports: [Int], hand: @escaping (GatewaySockets) throws -> Void) {
            self.ports = ports
            self.hand = hand
        }
    }

    /// Sockets bound inside a namespace thread and not yet handed: closed if never handed
    /// (the other namespace failed to come up).
    private final class HeldSockets {
        private var sockets: GatewaySockets?

        init(_ sockets: GatewaySockets) { self.sockets = sockets }

        func hand(to body: (GatewaySockets) throws -> Void) throws {
            guard let sockets else { return }
            self.sockets = nil
            defer { for socket in sockets.all { try? socket.descriptor.close() } }
            try body(sockets)
        }

        deinit {
            for socket in sockets?.all ?? [] { try? socket.descriptor.close() }
        }
    }
}
