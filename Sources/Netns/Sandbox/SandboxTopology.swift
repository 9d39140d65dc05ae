#if canImport(Glibc)
import Glibc
#endif
import SystemPackage
import SystemCalls

/// The network between a sandbox namespace S and its gateway namespace G: one veth pair,
/// `eth0` in S and `gw0` in G, with one address each in a shared subnet and a single
/// host route in each direction.
///
/// Validation rules: both addresses have the same prefix length, from /8 to /31; they are
/// distinct and in the same subnet; up to /30 neither may be the subnet's network or
/// broadcast address (a /31 has none, RFC 3021; a /32 cannot hold two addresses).
/// Loopback, multicast, reserved (240/4) and 0.0.0.0/8 addresses are refused.
package struct SandboxTopology: Hashable, Codable, Sendable, CustomStringConvertible {
    /// The default gateway address, `169.254.200.1/30`.
    package static let defaultGatewayAddress = try! IPv4CIDR("169.254.200.1/30")
    /// The default sandbox address, `169.254.200.2/30`.
    package static let defaultSandboxAddress = try! IPv4CIDR("169.254.200.2/30")
    /// The default sandbox-side interface, `eth0`.
    package static let defaultSandboxInterface = try! InterfaceName("eth0")
    /// The default gateway-side interface, `gw0`.
    package static let defaultGatewayInterface = try! InterfaceName("gw0")

    /// The gateway's address on `gatewayInterface`, in G.
    package let gatewayAddress: IPv4CIDR
    /// The sandbox's address on `sandboxInterface`, in S.
    package let sandboxAddress: IPv4CIDR
    /// The veth end in S.
    package let sandboxInterface: InterfaceName
    /// The veth end in G.
    package let gatewayInterface: InterfaceName

    /// A validated topology.
    /// - Throws: `InvalidValue` naming the clashing or unusable addresses.
    package init(
        gatewayAddress: IPv4CIDR = Self.defaultGatewayAddress,
        sandboxAddress: IPv4CIDR = Self.defaultSandboxAddress,
        sandboxInterface: InterfaceName = Self.defaultSandboxInterface,
        gatewayInterface: InterfaceName = Self.defaultGatewayInterface
    ) throws {
        try Self.validate(gateway: gatewayAddress, sandbox: sandboxAddress)
        self.gatewayAddress = gatewayAddress
        self.sandboxAddress = sandboxAddress
        self.sandboxInterface = sandboxInterface
        self.gatewayInterface = gatewayInterface
    }

    private static func validate(gateway: IPv4CIDR, sandbox: IPv4CIDR) throws {
        for (role, cidr) in [("gateway", gateway), ("sandbox", sandbox)] {
            if let reason = unusableReason(cidr.address) {
                throw InvalidValue("\(role) address \(cidr) is \(reason)")
            }
            if cidr.prefixLength < 8 {
                throw InvalidValue("\(role) address \(cidr): prefix /\(cidr.prefixLength) is too short, at least /8")
            }
            if cidr.prefixLength == 32 {
                throw InvalidValue("\(role) address \(cidr): a /32 cannot hold both gateway and sandbox, at most /31")
            }
        }
        if gateway.prefixLength != sandbox.prefixLength {
            throw InvalidValue("gateway address \(gateway) and sandbox address \(sandbox) have different prefix lengths")
        }
        if gateway.address == sandbox.address {
            throw InvalidValue("gateway address \(gateway) and sandbox address \(sandbox) are the same address")
        }
        if !gateway.contains(sandbox.address) {
            throw InvalidValue("gateway address \(gateway) and sandbox address \(sandbox) are not in the same subnet")
        }
        if gateway.prefixLength <= 30 {
            for (role, cidr) in [("gateway", gateway), ("sandbox", sandbox)] {
                if cidr.address == cidr.network {
                    throw InvalidValue("\(role) address \(cidr) is the network address of \(cidr.network)/\(cidr.prefixLength)")
                }
                if cidr.address == cidr.broadcast {
                    throw InvalidValue("\(role) address \(cidr) is the broadcast address of \(cidr.network)/\(cidr.prefixLength)")
                }
            }
        }
    }

    private static func unusableReason(_ address: IPv4Address) -> String? {
        switch address.value >> 24 {
        case 0: return "in 0.0.0.0/8 (this network)"
        case 127: return "a loopback address"
        case 224...239: return "a multicast address"
        case 240...255: return "reserved (240.0.0.0/4)"
        default: return nil
        }
    }

    private enum CodingKeys: String, CodingKey {
        case gatewayAddress, sandboxAddress, sandboxInterface, gatewayInterface
    }

    /// Decodes and validates a recorded topology.
    /// - Throws: `InvalidValue` as `init`, or a decoding error.
    package init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            gatewayAddress: container.decode(IPv4CIDR.self, forKey: .gatewayAddress),
            sandboxAddress: container.decode(IPv4CIDR.self, forKey: .sandboxAddress),
            sandboxInterface: container.decode(InterfaceName.self, forKey: .sandboxInterface),
            gatewayInterface: container.decode(InterfaceName.self, forKey: .gatewayInterface))
    }

    package var description: String {
        "gateway \(gatewayAddress) on \(gatewayInterface), sandbox \(sandboxAddress) on \(sandboxInterface)"
    }

    /// What differs between this topology and `other`, one phrase per field; empty if equal.
    package func differences(from other: SandboxTopology) -> [String] {
        var result: [String] = []
        if gatewayAddress != other.gatewayAddress { result.append("gateway address \(other.gatewayAddress) (requested \(gatewayAddress))") }
        if sandboxAddress != other.sandboxAddress { result.append("sandbox address \(other.sandboxAddress) (requested \(sandboxAddress))") }
        if sandboxInterface != other.sandboxInterface { result.append("sandbox interface \(other.sandboxInterface) (requested \(sandboxInterface))") }
        if gatewayInterface != other.gatewayInterface { result.append("gateway interface \(other.gatewayInterface) (requested \(gatewayInterface))") }
        return result
    }
}

/// The steps of building a topology, in order; tests name one to inject a failure after it.
package enum TopologyStep: String, CaseIterable, Sendable {
    /// IPv6 is off by default in S and G, so the veth ends never get an IPv6 address.
    case namespacesPrepared
    /// The veth pair exists, one end in each namespace.
    case vethCreated
    /// G is configured: address, lo and the gateway end up, route to S, forwarding off.
    case gatewayConfigured
    /// S is configured: lo up, address, the sandbox end up, the one route to G.
    case sandboxConfigured
}

/// A failure injected by a test after a named step.
package struct InjectedFailure: Error, CustomStringConvertible, Equatable {
    /// The step after which the failure was injected.
    package var after: String
    /// The failure injected after the step named `after`.
    package init(after: String) { self.after = after }
    package var description: String { "injected failure after \(after)" }
}

extension SandboxTopology {
    /// Builds this topology between the sandbox namespace `sandbox` (S) and the gateway
    /// namespace `gateway` (G), both fresh.
    ///
    /// The veth pair is made by one RTM_NEWLINK from the caller's namespace, each end
    /// placed directly in S or G; then each side is configured from a dedicated thread
    /// inside it. Leaves behind only what lives in S and G: closing (and unpinning) both
    /// frees everything. Not idempotent: a second build fails with EEXIST.
    /// - Parameters:
    ///   - failAfter: tests only: throw `InjectedFailure` after this step.
    ///   - namespacesPrepared: both namespaces were made with `prepareNamespace` as
    ///     `NetworkNamespace.createUnnamed(prepare:)`, so this step is done already.
    /// - Throws: `NetlinkError` with the kernel's text, `SystemCallError`, `InjectedFailure`.
    /// - Requires: CAP_NET_ADMIN and CAP_SYS_ADMIN.
    ///   - routeSockets: netlink sockets opened inside S and G by `prepareNamespace` and
    ///     `prepareGatewayNamespace` (which did the namespace-wide settings there): each
    ///     side is configured through its socket, without entering the namespace again.
    package func build(sandbox: FileDescriptor, gateway: FileDescriptor, failAfter: TopologyStep? = nil,
                       namespacesPrepared: Bool = false, routeSockets: (sandbox: RouteSocket, gateway: RouteSocket)? = nil) throws {
        func done(_ step: TopologyStep) throws {
            if step == failAfter { throw InjectedFailure(after: step.rawValue) }
        }
        if !namespacesPrepared {
            for namespace in [sandbox, gateway] {
                try NetworkNamespace.withNamespace(namespace, Self.prepareNamespace)
            }
        }
        try done(.namespacesPrepared)

        let socket = try RouteSocket()
        try socket.perform {
            try .createVeth(name: gatewayInterface, namespaceFD: gateway.rawValue,
                            peerName: sandboxInterface, peerNamespaceFD: sandbox.rawValue,
                            sequence: $0, portID: $1)
        }
        try done(.vethCreated)

        // Through the socket `prepare…Namespace` opened inside, or from a thread that enters.
        func configure(_ namespace: FileDescriptor, socket: RouteSocket?, interface: InterfaceName, local: IPv4CIDR,
                       peer: IPv4Address, isGateway: Bool) throws {
            if let socket {
                try configureSide(interface: interface, local: local, peer: peer, isGateway: isGateway, socket: socket, inside: false)
            } else {
                try NetworkNamespace.withNamespace(namespace) {
                    try configureSide(interface: interface, local: local, peer: peer, isGateway: isGateway, socket: try RouteSocket(), inside: true)
                }
            }
        }
        try configure(gateway, socket: routeSockets?.gateway, interface: gatewayInterface, local: gatewayAddress,
                      peer: sandboxAddress.address, isGateway: true)
        try done(.gatewayConfigured)

        try configure(sandbox, socket: routeSockets?.sandbox, interface: sandboxInterface, local: sandboxAddress,
                      peer: gatewayAddress.address, isGateway: false)
        try done(.sandboxConfigured)
    }

    /// Run inside a fresh S or G before the veth exists: new interfaces there are born
    /// with IPv6 off (no link-local address, no router solicitation, ever). Where
    /// `/proc/sys` is read-only (inside a container) the veth end is kept off IPv6 over
    /// netlink instead, in `configureSide`.
    /// - Throws: `SystemCallError`.
    package static func prepareNamespace() throws {
        try SystemControl.write("1", to: "net/ipv6/conf/default/disable_ipv6", optional: true, backedByNetlink: true)
    }

    /// `prepareNamespace` for G, and G never forwards (the gateway process serves
    /// connections itself): what `build` otherwise does from inside G once the veth exists.
    package static func prepareGatewayNamespace() throws {
        try prepareNamespace()
        try forwardingOff()
    }

    /// G's namespace-wide forwarding off, where `/proc/sys` is writable (the veth end's own
    /// setting is made over netlink).
    private static func forwardingOff() throws {
        try SystemControl.write("0", to: "net/ipv4/ip_forward", backedByNetlink: true)
        try SystemControl.write("0", to: "net/ipv4/conf/all/forwarding", backedByNetlink: true)
    }

    /// Configures one side through `socket`, a netlink socket of its namespace: IPv6 off on
    /// the veth end, lo up, the address (no prefix route), the end up, the one host route
    /// to the peer. `inside`: on a thread in that namespace, which also writes its
    /// `/proc/sys` settings (else `prepareNamespace` and `prepareGatewayNamespace` did).
    private func configureSide(
        interface: InterfaceName, local: IPv4CIDR, peer: IPv4Address, isGateway: Bool, socket: RouteSocket, inside: Bool
    ) throws {
        let loopback = try InterfaceName("lo")
        guard let lo = try socket.link(named: loopback) else {
            throw NetlinkError(operation: "RTM_GETLINK lo", code: ENODEV)
        }
        guard let end = try socket.link(named: interface) else {
            throw NetlinkError(operation: "RTM_GETLINK \(interface)", code: ENODEV)
        }
        // Both settings twice: over netlink for the veth end, which works wherever the
        // namespace is ours, and in /proc/sys for the whole namespace where it is writable
        // (inside a container it is mounted read-only).
        if isGateway {
            // G never forwards: the gateway process serves connections itself.
            try socket.perform { try .setIPv4Forwarding(false, index: end.index, label: "dev \(interface)", sequence: $0, portID: $1) }
            if inside { try Self.forwardingOff() }
        }
        let ipv6 = try Self.keepIPv6Off(end.index, interface: interface, socket: socket)
        // A prepared namespace made the end with IPv6 off already (the default it was born with).
        if inside {
            try SystemControl.write("1", to: "net/ipv6/conf/\(interface)/disable_ipv6", optional: true, backedByNetlink: ipv6)
        }
        try socket.perform { try .setLinkUp(index: lo.index, label: "lo", sequence: $0, portID: $1) }
        try socket.perform { try .addAddress(local, index: end.index, label: "dev \(interface)", sequence: $0, portID: $1) }
        try socket.perform { try .setLinkUp(index: end.index, label: interface.rawValue, sequence: $0, portID: $1) }
        try socket.perform {
            try .addHostRoute(to: peer, index: end.index, source: local.address, label: "dev \(interface)", sequence: $0, portID: $1)
        }
        // Up (with carrier once both ends are), a link IPv6 may use has its link-local
        // address at once: there must be none.
        try Self.refuseIPv6(on: interface, index: end.index, socket: socket)
    }

    /// Throws when link `index` has an IPv6 address: the last check of a side's
    /// configuration, which fails the build (and rolls it back) should every measure that
    /// keeps IPv6 off a sandbox's veth end have missed.
    /// - Throws: `NetlinkError` ("IPv6 off on IFACE (it has an IPv6 address, /PREFIX)", `EEXIST`).
    static func refuseIPv6(on interface: InterfaceName, index: UInt32, socket: RouteSocket) throws {
        if let stray = try socket.addresses().first(where: { $0.index == index && $0.isIPv6 }) {
            throw NetlinkError(operation: "IPv6 off on \(interface) (it has an IPv6 address, /\(stray.prefixLength))", code: EEXIST)
        }
    }

    /// Sets the link's IPv6 address generation to none; false when the kernel has no IPv6
    /// (nothing to keep off), true when the setting is made.
    private static func keepIPv6Off(_ index: UInt32, interface: InterfaceName, socket: RouteSocket) throws -> Bool {
        do {
            try socket.perform { try .disableIPv6AddressGeneration(index: index, label: "dev \(interface)", sequence: $0, portID: $1) }
            return true
        } catch let error as NetlinkError where error.code == EAFNOSUPPORT {
            return false
        }
    }
}
