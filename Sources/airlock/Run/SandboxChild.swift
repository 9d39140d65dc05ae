#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Netns
import GatewayCore

/// What the sandbox builder needs to know: the rootless builder has it in the memory it
/// was forked with; the root run spawns from it itself.
struct SandboxChildSpec {
    let topology: SandboxTopology
    /// The policy's ports besides 80 and 443 (`Policy.listenerPorts`), each bound in G.
    let listenerPorts: [Int]
    /// The spawn request, but for the namespace (S exists only once built).
    private let process: SandboxProcessSpec

    init(plan: RunPlan, extraEnvironment: [String: String], listenerPorts: [Int]) {
        topology = plan.topology
        self.listenerPorts = listenerPorts
        var process = SandboxProcessSpec(
            argv: plan.command, environment: plan.environment, extraEnvironment: extraEnvironment, user: plan.user,
            networkNamespace: -1, gatewayAddress: plan.topology.gatewayAddress.address.description,
            masks: plan.view.masks, workingDirectory: plan.workingDirectory)
        process.privateTmp = !plan.sandboxOptions.shareTmp
        process.allowNestedNamespaces = plan.sandboxOptions.allowNestedNamespaces
        self.process = process
    }

    /// The spawn request for CMD inside the sandbox namespace `networkNamespace`.
    func processSpec(networkNamespace: CInt) -> SandboxProcessSpec {
        var spec = process
        spec.networkNamespace = networkNamespace
        return spec
    }
}

/// The rootless sandbox builder: `airlock run` forks it (`RootlessLauncher.fork`) into a
/// new user namespace, with its uid and gid mapped to themselves and the capabilities to
/// build namespaces there, not dumpable.
///
/// It makes S and G, binds the gateway's listeners inside G and hands them to the gateway
/// over the socket pair at once, builds the rest and sets the sandbox up while the gateway
/// starts, waits for "ready", then starts CMD inside S and exits with CMD's status.
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
        let topology = spec.topology
        // The listeners go to the gateway as soon as G exists; it starts serving while S, the
        // veth pair and the addresses are made.
        let sandbox = try EphemeralSandbox.build(topology, listeners: .init(ports: spec.listenerPorts) { sockets in
            try channel.send(Self.listening, descriptors: sockets.all.map(\.descriptor.rawValue))
        })
        // Set up while the gateway starts; CMD starts once it serves.
        let pending = try SandboxProcess.prepare(spec.processSpec(networkNamespace: sandbox.sandbox.descriptor.rawValue))
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
