#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import SystemPackage
import SystemCalls

/// A sandbox whose S is a network namespace someone else owns: a pod's, made by the
/// container runtime and handed to the CNI plugin. Recorded in `SandboxState.external`.
///
/// airlock adds G (pinned at `/run/netns/NAME.gw`), the veth pair and the addresses, and
/// removes every route in S that does not go to G; it never pins, unpins or deletes S.
package struct ExternalSandbox: Codable, Equatable, Sendable {
    /// Who owns S: `cni`.
    package var owner: String
    /// The runtime's container id (`CNI_CONTAINERID`).
    package var containerID: String
    /// The CNI network name (`name` in the network configuration).
    package var network: String
    /// The pod as `NAMESPACE/NAME`, when the runtime said (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`).
    package var pod: String?
    /// The policy file the sandbox is served with.
    package var policy: String?

    /// A record of S owned by `owner`.
    package init(owner: String, containerID: String, network: String, pod: String?, policy: String?) {
        self.owner = owner
        self.containerID = containerID
        self.network = network
        self.pod = pod
        self.policy = policy
    }

    /// Deletes the link `interface` inside the namespace at `path`, if both exist.
    /// - Returns: true if the link was there.
    /// - Throws: `NetlinkError`, `SystemCallError` other than "no such namespace or link".
    /// - Requires: CAP_SYS_ADMIN and CAP_NET_ADMIN.
    static func deleteInterface(_ interface: InterfaceName, in path: String) throws -> Bool {
        guard Pinning.exists(path), let namespace = try? NetworkNamespace.open(path: path) else { return false }
        return try namespace.withNamespace {
            let socket = try RouteSocket()
            guard try socket.link(named: interface) != nil else { return false }
            do {
                try socket.perform { try .deleteLink(name: interface, sequence: $0, portID: $1) }
            } catch let error as NetlinkError where error.code == ENODEV {
                return false
            }
            return true
        }
    }
}

/// The steps of `PersistentSandbox.attach`, in order; tests name one to inject a failure.
package enum AttachStep: String, CaseIterable, Sendable {
    /// `state.json` written with `complete: false`.
    case stateRecorded
    /// G made and pinned.
    case gatewayPinned
    /// The veth pair made, both sides configured.
    case topologyBuilt
    /// `state.json` rewritten with `complete: true`.
    case stateCompleted
}

/// Why attaching to or checking an external S failed; one line each.
package enum ExternalSandboxError: Error, CustomStringConvertible, Equatable {
    /// The sandbox name is taken by another container or by `netns create`.
    case nameTaken(NamespaceName, String)
    /// S already has a link with the sandbox interface's name.
    case interfaceExists(InterfaceName, String)
    /// S is the pin airlock itself would make: refused, so destroy never touches it.
    case sandboxIsAirlockPin(String)
    /// CHECK found S not as attach left it.
    case tampered(String)

    package var description: String {
        switch self {
        case let .nameTaken(name, holder):
            return "sandbox \(quoted(name.rawValue)) already exists for \(holder)"
        case let .interfaceExists(interface, path):
            return "\(path) already has an interface named \(interface); choose another sandboxInterface"
        case let .sandboxIsAirlockPin(path):
            return "\(path) is where airlock pins its own sandboxes; refusing to attach to it"
        case let .tampered(what):
            return what
        }
    }
}

extension PersistentSandbox {
    /// Makes the sandbox `name` around the existing network namespace at `sandboxPath`
    /// (a pod's): G pinned at `/run/netns/NAME.gw` and the veth pair with `topology`'s
    /// addresses. S's other routes are left to `SandboxRoutes.isolate`, once the gateway
    /// serves the sandbox.
    ///
    /// Idempotent for the same container (returns `.unchanged`); refused for another.
    /// On failure, removes everything it made (G, the veth, the state).
    /// - Parameter failAfter: tests only: fail after this step.
    /// - Throws: `ExternalSandboxError`, `SandboxError`, `NetlinkError`, `SystemCallError`.
    /// - Requires: CAP_SYS_ADMIN and CAP_NET_ADMIN.
    package func attach(
        _ name: NamespaceName, sandboxPath: String, external: ExternalSandbox, topology: SandboxTopology,
        failAfter: AttachStep? = nil
    ) throws -> CreateOutcome {
        try CapabilityCheck.requireNamespaceAdmin(for: "airlock-cni")
        if sandboxPath == sandboxPin(name) || sandboxPath == gatewayPin(name) {
            throw ExternalSandboxError.sandboxIsAirlockPin(sandboxPath)
        }
        return try withLock {
            if Pinning.exists(stateDirectory(name)) {
                let state = try? readState(name)
                guard let state, let recorded = state.external, recorded.containerID == external.containerID else {
                    let holder = (try? readState(name))?.external.map { "container \($0.containerID)" } ?? "a sandbox made by `airlock netns create`"
                    throw ExternalSandboxError.nameTaken(name, holder)
                }
                guard state.complete else { throw SandboxError.halfMade(name) }
                let differences = topology.differences(from: state.topology)
                guard differences.isEmpty else { throw SandboxError.differentParameters(name, differences) }
                return .unchanged(state)
            }
            if Pinning.exists(gatewayPin(name)) { throw SandboxError.foreignPin(gatewayPin(name)) }
            return .created(try attachNew(name, sandboxPath: sandboxPath, external: external, topology: topology, failAfter: failAfter))
        }
    }

    private func attachNew(
        _ name: NamespaceName, sandboxPath: String, external: ExternalSandbox, topology: SandboxTopology, failAfter: AttachStep?
    ) throws -> SandboxState {
        func done(_ step: AttachStep) throws {
            if step == failAfter { throw InjectedFailure(after: step.rawValue) }
        }
        let sandbox = try NetworkNamespace.open(path: sandboxPath)
        let present = try sandbox.withNamespace { try RouteSocket().link(named: topology.sandboxInterface) }
        if present != nil { throw ExternalSandboxError.interfaceExists(topology.sandboxInterface, sandboxPath) }

        var state = SandboxState(
            name: name, topology: topology, createdAt: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)),
            airlockVersion: AirlockVersion.current, sandboxPin: sandboxPath, gatewayPin: gatewayPin(name), complete: false,
            external: external)
        var madeDirectory = false
        var madeGateway = false
        do {
            try Pinning.makeDirectories(stateDirectory)
            guard mkdir(stateDirectory(name), 0o755) == 0 else { throw SystemCallError.last("mkdir \(stateDirectory(name))") }
            madeDirectory = true
            try write(state)
            try done(.stateRecorded)

            let gateway = try NetworkNamespace.createUnnamed()
            try gateway.pin(at: state.gatewayPin)
            madeGateway = true
            try done(.gatewayPinned)

            try topology.build(sandbox: sandbox.descriptor, gateway: gateway.descriptor)
            try done(.topologyBuilt)

            state.complete = true
            try write(state)
            try done(.stateCompleted)
            return state
        } catch {
            var undo: [() throws -> Void] = [{ _ = try ExternalSandbox.deleteInterface(topology.sandboxInterface, in: sandboxPath) }]
            if madeGateway { undo.append { try Pinning.unpin(state.gatewayPin) } }
            if madeDirectory { undo.append { try removeDirectory(stateDirectory(name)) } }
            try SandboxError.rethrow(error, undoing: undo)
        }
    }

    /// Removes the sandbox `name` made for the container `containerID`, complete or
    /// half-made (G, the veth end in S, the state); never S. Nothing there, or a sandbox of
    /// that name made for another container or by `netns create`, is left alone and is
    /// not an error.
    /// - Returns: what was removed.
    /// - Throws: `Privileges.PrivilegeError`, `NetlinkError`, `SystemCallError`.
    /// - Requires: CAP_SYS_ADMIN and CAP_NET_ADMIN.
    @discardableResult
    package func detach(_ name: NamespaceName, containerID: String) throws -> [String] {
        try CapabilityCheck.requireNamespaceAdmin(for: "airlock-cni")
        return try withLock {
            guard let state = try? readState(name), state.external?.containerID == containerID else { return [] }
            return try remove(name)
        }
    }

    /// The recorded state of `name`, complete or not, or nil if there is none.
    package func recordedState(_ name: NamespaceName) -> SandboxState? {
        try? readState(name)
    }

    /// Every sandbox whose S belongs to a container runtime, by name.
    package func externalSandboxes() -> [SandboxState] {
        list().compactMap { try? readState($0.name) }.filter { $0.external != nil }
    }
}

/// S's routes when it is someone else's namespace: only the host route to G may remain.
package enum SandboxRoutes {
    /// In the namespace at `path` (S): turns IPv6 off on every interface (which removes
    /// its addresses and routes) and deletes every IPv4 route outside the local table that
    /// does not go out of `topology.sandboxInterface`, so S's only route goes to G.
    /// Removed routes are not restored by anything: the pod's network is the runtime's to
    /// tear down.
    /// - Throws: `NetlinkError`, `SystemCallError`.
    /// - Requires: CAP_SYS_ADMIN and CAP_NET_ADMIN.
    package static func isolate(in path: String, keeping topology: SandboxTopology) throws {
        try NetworkNamespace.open(path: path).withNamespace { try isolateHere(keeping: topology) }
    }

    private static func isolateHere(keeping topology: SandboxTopology) throws {
        try SystemControl.write("1", to: "net/ipv6/conf/all/disable_ipv6", optional: true)
        try SystemControl.write("1", to: "net/ipv6/conf/default/disable_ipv6", optional: true)
        let socket = try RouteSocket()
        guard let end = try socket.link(named: topology.sandboxInterface) else {
            throw NetlinkError(operation: "RTM_GETLINK \(topology.sandboxInterface)", code: ENODEV)
        }
        let names = Dictionary(try socket.links().map { ($0.index, $0.name) }, uniquingKeysWith: { first, _ in first })
        for route in try socket.routes() where route.table != localTable && route.outputInterface != end.index {
            guard let destination = route.destination else { continue }
            let device = names[route.outputInterface].map { "dev \($0)" } ?? "dev \(route.outputInterface)"
            do {
                try socket.perform {
                    try .deleteRoute(to: destination, prefixLength: route.destinationPrefix, table: route.table,
                                     index: route.outputInterface, label: device, sequence: $0, portID: $1)
                }
            } catch let error as NetlinkError where error.code == ESRCH {
                // Gone already (removed with an earlier route's nexthop).
            }
        }
    }

    /// The routes of the namespace at `path` that break the sandbox: any IPv4 route outside
    /// the local table other than the host route to G on the sandbox interface, and any
    /// IPv6 route outside the local table. Empty when S is as attach left it.
    /// - Throws: `ExternalSandboxError.tampered` when the veth end is missing or down;
    ///   `NetlinkError`, `SystemCallError`.
    package static func violations(in path: String, topology: SandboxTopology) throws -> [String] {
        let sandbox = try NetworkNamespace.open(path: path)
        return try sandbox.withNamespace {
            let socket = try RouteSocket()
            guard let end = try socket.link(named: topology.sandboxInterface) else {
                throw ExternalSandboxError.tampered("\(topology.sandboxInterface) is missing from \(path)")
            }
            guard end.isUp else { throw ExternalSandboxError.tampered("\(topology.sandboxInterface) in \(path) is down") }
            let names = Dictionary(try socket.links().map { ($0.index, $0.name) }, uniquingKeysWith: { first, _ in first })
            var found: [String] = []
            for route in try socket.routes() where route.table != localTable {
                let expected = route.outputInterface == end.index && route.destination == topology.gatewayAddress.address
                    && route.destinationPrefix == 32 && !route.hasGateway
                if expected { continue }
                let destination = route.destinationPrefix == 0 ? "default" : "\(route.destination.map(String.init(describing:)) ?? "?")/\(route.destinationPrefix)"
                let via = route.gateway.map { " via \($0)" } ?? ""
                let device = names[route.outputInterface].map { " dev \($0)" } ?? ""
                let table = route.table == mainTable ? "" : " table \(route.table)"
                found.append("\(destination)\(via)\(device)\(table)")
            }
            let ipv6Routes: [Route]
            do {
                ipv6Routes = try socket.routes(ipv6: true)
            } catch let error as NetlinkError where error.code == EAFNOSUPPORT {
                ipv6Routes = []  // IPv6 is not in this kernel at all.
            }
            for route in ipv6Routes where route.table != localTable {
                let device = names[route.outputInterface].map { " dev \($0)" } ?? ""
                found.append("an IPv6 route\(device)")
            }
            return found
        }
    }

    private static let localTable: UInt32 = 255
    private static let mainTable: UInt32 = 254
}
