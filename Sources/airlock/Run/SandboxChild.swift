#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Netns
import GatewayCore

/// What the sandbox builder needs to know: the rootless builder has it in the memory it
/// was forked with; the root run spawns from it itself.
struct SandboxChildSpec {
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

/// The rootless sandbox builder: `airlock run` forks it (`RootlessLauncher.fork`) into a
/// new user namespace, with its uid and gid mapped to themselves and the capabilities to
/// build namespaces there, not dumpable.
///
/// It builds S and G, binds the gateway's listeners inside G, hands them to the gateway
/// over the socket pair, sets the sandbox up while the gateway starts, waits for "ready",
/// then starts CMD inside S and exits with CMD's status.
enum SandboxChild {
    static let listening = "listening"
    static let ready = "ready"

    /// The builder, in the forked child: never returns.
    /// - Parameters:
    ///   - channel: its end of the pair with the gateway.
    ///   - gateway: the gateway's pid (the parent), to die with.
    static func run(spec: SandboxChildSpec, channel: DescriptorChannel, gateway: pid_t) -> Never {
        var status = ExitCodes.wrapperFailure
        // Die with the gateway: a SIGKILL of `airlock run` must leave nothing behind.
        if ProcessControl.dieWithParent(expectedParent: gateway) {
            do {
                status = try reportingWrapperErrors { try build(spec: spec, channel: channel) }
            } catch let exit as ExitCode {
                status = exit.rawValue
            } catch {
                status = ExitCodes.wrapperFailure
            }
        }
        // The parent's buffered output is not this process's to write: no exit(3).
        _exit(status)
    }

    private static func build(spec: SandboxChildSpec, channel: DescriptorChannel) throws -> Int32 {
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
}
