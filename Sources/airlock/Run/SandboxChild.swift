#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import FoundationEssentials
import Netns
import GatewayCore

/// What the rootless sandbox builder needs to know, sent by the gateway over the socket
/// pair (never on the command line, where `/proc/PID/cmdline` would show it).
struct SandboxChildSpec: Codable {
    var gatewayAddress: String
    var sandboxAddress: String
    var argv: [String]
    var environment: [String: String]
    var extraEnvironment: [String: String]
    var maskedDirectories: [String]
    var maskedFiles: [String]
    var privateTmp: Bool
    var allowNestedNamespaces: Bool
    var workingDirectory: String?
    var uid: UInt32
    var gid: UInt32
    var groups: [UInt32]
    var home: String
    var userName: String
    /// The policy's ports besides 80 and 443 (`Policy.listenerPorts`), each bound in G.
    var listenerPorts: [Int]

    init(plan: RunPlan, extraEnvironment: [String: String], listenerPorts: [Int]) {
        self.listenerPorts = listenerPorts
        gatewayAddress = plan.topology.gatewayAddress.description
        sandboxAddress = plan.topology.sandboxAddress.description
        argv = plan.command
        environment = plan.environment
        self.extraEnvironment = extraEnvironment
        maskedDirectories = plan.view.masks.filter { $0.kind == .directory }.map(\.path)
        maskedFiles = plan.view.masks.filter { $0.kind != .directory }.map(\.path)
        privateTmp = !plan.sandboxOptions.shareTmp
        allowNestedNamespaces = plan.sandboxOptions.allowNestedNamespaces
        workingDirectory = plan.workingDirectory
        uid = plan.user.uid
        gid = plan.user.gid
        groups = plan.user.groups
        home = plan.user.home
        userName = plan.user.name
    }

    func encoded() throws -> String {
        String(decoding: try JSONEncoder().encode(self), as: UTF8.self)
    }

    static func decode(_ text: String) throws -> SandboxChildSpec {
        try JSONDecoder().decode(SandboxChildSpec.self, from: Data(text.utf8))
    }

    func topology() throws -> SandboxTopology {
        try SandboxTopology(gatewayAddress: IPv4CIDR(gatewayAddress), sandboxAddress: IPv4CIDR(sandboxAddress))
    }

    /// The spawn request for CMD inside the sandbox namespace `networkNamespace`.
    func processSpec(networkNamespace: CInt) throws -> SandboxProcessSpec {
        let gateway = try IPv4CIDR(gatewayAddress).address.description
        var spec = SandboxProcessSpec(
            argv: argv, environment: environment, extraEnvironment: extraEnvironment,
            user: SandboxUser(uid: uid, gid: gid, groups: groups, home: home, name: userName),
            networkNamespace: networkNamespace, gatewayAddress: gateway,
            masks: maskedDirectories.map { Mask(path: $0, kind: .directory) } + maskedFiles.map { Mask(path: $0, kind: .file) },
            workingDirectory: workingDirectory)
        spec.privateTmp = privateTmp
        spec.allowNestedNamespaces = allowNestedNamespaces
        return spec
    }
}

/// The rootless sandbox builder: `airlock run` starts it in a new user namespace (with
/// its uid and gid mapped to themselves and the capabilities to build namespaces there).
///
/// It builds S and G, binds the gateway's listeners inside G, hands them to the gateway
/// over descriptor 3, waits for "ready", then spawns CMD inside S and exits with CMD's
/// status. Not for direct use.
struct SandboxChild: ParsableCommand {
    static let commandName = "__sandbox-child"
    static let listening = "listening"
    static let ready = "ready"

    /// The gateway's pid, given in the environment by `airlock run` (`AIRLOCK_GATEWAY_PID`).
    static var gatewayPID: pid_t {
        ProcessInfoEnvironment.current["AIRLOCK_GATEWAY_PID"].flatMap { pid_t($0) } ?? 1
    }

    static let configuration = CommandConfiguration(
        commandName: commandName,
        abstract: "Internal: the rootless sandbox builder of `airlock run`.",
        shouldDisplay: false)

    func run() throws {
        // Die with the gateway: a SIGKILL of `airlock run` must leave nothing behind.
        guard ProcessControl.dieWithParent(expectedParent: Self.gatewayPID) else { throw ExitCode(ExitCodes.wrapperFailure) }
        let status = try reportingWrapperErrors { () throws -> Int32 in
            let channel = DescriptorChannel(adopting: 3)
            guard let (message, _) = try channel.receive() else {
                throw CLIError("sandbox builder: the gateway went away before sending the plan")
            }
            let spec = try SandboxChildSpec.decode(message)
            let topology = try spec.topology()
            let sandbox = try EphemeralSandbox.build(topology)
            do {
                let sockets = try GatewaySockets.bind(
                    in: sandbox.gateway.descriptor, address: topology.gatewayAddress.address, ports: spec.listenerPorts)
                try channel.send(Self.listening, descriptors: sockets.all.map(\.descriptor.rawValue))
                for socket in sockets.all { try? socket.descriptor.close() }
            }
            // Set up while the gateway starts; CMD starts once it serves.
            let pending = try SandboxProcess.prepare(try spec.processSpec(networkNamespace: sandbox.sandbox.descriptor.rawValue))
            guard let (answer, _) = try channel.receive(), answer == Self.ready else {
                pending.cancel()
                throw CLIError("sandbox builder: the gateway did not become ready")
            }
            channel.close()
            let process = try pending.start()
            try SignalForwarding.start(to: process.pid)
            return process.wait().shellCode
        }
        throw ExitCode(status)
    }
}
