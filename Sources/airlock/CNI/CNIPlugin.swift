#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Gateway
import Netns

/// `airlock-cni`: the `airlock` binary run under that name (a symlink in `/opt/cni/bin`)
/// is a chained CNI plugin (spec 1.0 and 1.1) that turns a pod's network namespace into a
/// sandbox S whose only peer is a per-pod gateway namespace G, served by the node's
/// gateway daemon (`airlock gateway serve --all`).
///
/// Its input is the spec's (`CNI_*` variables, the network configuration on stdin); its
/// output is the spec's: a result or nothing on stdout and exit 0, or the error object
/// on stdout and exit 1. Nothing else is printed.
enum CNIPlugin {
    /// The name the binary answers to as the plugin.
    static let programName = "airlock-cni"

    /// Whether the process was started as the plugin (`argv[0]`'s last component).
    static func isInvoked(as argument0: String?) -> Bool {
        guard let argument0 else { return false }
        return argument0.split(separator: "/").last.map(String.init) == programName
    }

    /// Runs one CNI command and exits.
    static func main() -> Never {
        var version = CNIConfig.currentVersion
        do {
            let environment = try CNIEnvironment.current()
            let input = try readStandardInput()
            if environment.command == "VERSION" {
                write(#"{"cniVersion":"\#(CNIConfig.currentVersion)","supportedVersions":["\#(CNIConfig.supportedVersions.joined(separator: "\",\""))"]}"#)
                exit(0)
            }
            let config = try CNIConfig.parse(input)
            version = config.cniVersion
            switch environment.command {
            case "ADD": try write(add(config, environment))
            case "DEL": try delete(config, environment)
            case "CHECK": try check(config, environment)
            case "STATUS": try status(config)
            case "GC": try collectGarbage(config)
            default:
                throw CNIError(code: CNIError.invalidEnvironment,
                               msg: "unknown CNI_COMMAND \(String(reflecting: environment.command)); expected ADD, DEL, CHECK, STATUS, GC or VERSION")
            }
            exit(0)
        } catch let error as CNIError {
            fail(error, version: version)
        } catch {
            fail(CNIError(code: CNIError.sandboxFailure, msg: String(describing: error)), version: version)
        }
    }

    // MARK: commands

    /// ADD: attaches the sandbox to `CNI_NETNS`, registers it with the daemon, removes the
    /// routes that bypass G, and returns
    /// the previous result with the airlock interface, its address and its one route.
    static func add(_ config: CNIConfig, _ environment: CNIEnvironment) throws -> String {
        let containerID = try environment.requireContainerID()
        let netns = try environment.requireNetns()
        let interface = try environment.requireInterface()
        let name = try sandboxName(containerID)
        let topology = try config.topology(interface: interface)
        let policy = try config.policyFile()
        do {
            _ = try NetworkNamespace.open(path: netns)
        } catch {
            throw CNIError(code: CNIError.unknownContainer, msg: "CNI_NETNS \(netns) is not a network namespace: \(error)")
        }
        let external = ExternalSandbox(owner: "cni", containerID: containerID, network: config.name, pod: environment.pod, policy: policy)
        let store = PersistentSandbox()
        do {
            _ = try store.attach(name, sandboxPath: netns, external: external, topology: topology)
        } catch {
            throw CNIError(code: CNIError.sandboxFailure, msg: "cannot make sandbox \(name) in \(netns): \(error)")
        }
        do {
            try register(name, policy: policy, socket: config.daemonSocketPath)
        } catch {
            _ = try? store.detach(name, containerID: containerID)
            throw error
        }
        // Last, so a failed ADD leaves the pod's routes as the main plugin made them.
        do {
            try SandboxRoutes.isolate(in: netns, keeping: topology)
        } catch {
            _ = try? ControlClient.send(.stop(sandbox: name.rawValue), path: config.daemonSocketPath)
            _ = try? store.detach(name, containerID: containerID)
            throw CNIError(code: CNIError.sandboxFailure, msg: "cannot remove the routes that bypass the gateway from \(netns): \(error)")
        }
        return try result(config, netns: netns, topology: topology)
    }

    /// DEL: stops the daemon serving the sandbox and removes G, the veth and the state;
    /// never the runtime's namespace. Nothing there (ADD never ran, or half ran) is fine.
    static func delete(_ config: CNIConfig, _ environment: CNIEnvironment) throws {
        let containerID = try environment.requireContainerID()
        _ = try environment.requireInterface()
        let name = try sandboxName(containerID)
        var daemonError: String?
        do {
            if case let .failure(message) = try ControlClient.send(.stop(sandbox: name.rawValue), path: config.daemonSocketPath) {
                daemonError = message
            }
        } catch let error as ControlClientError where error.notFound {
            // No daemon: nothing is served.
        } catch {
            daemonError = String(describing: error)
        }
        do {
            try PersistentSandbox().detach(name, containerID: containerID)
        } catch {
            throw CNIError(code: CNIError.sandboxFailure, msg: "cannot remove sandbox \(name): \(error)")
        }
        if let daemonError {
            throw CNIError(code: CNIError.tryAgainLater, msg: "removed sandbox \(name), but the gateway daemon did not confirm it stopped serving it: \(daemonError)")
        }
    }

    /// CHECK: the sandbox exists for this container, G and its veth end are there, and
    /// every route in S goes to G.
    static func check(_ config: CNIConfig, _ environment: CNIEnvironment) throws {
        let containerID = try environment.requireContainerID()
        let netns = try environment.requireNetns()
        _ = try environment.requireInterface()
        let name = try sandboxName(containerID)
        guard let state = PersistentSandbox().recordedState(name), state.external?.containerID == containerID else {
            throw CNIError(code: CNIError.checkFailure, msg: "no airlock sandbox for container \(containerID) (expected \(name))")
        }
        guard state.complete else {
            throw CNIError(code: CNIError.checkFailure, msg: "sandbox \(name) is half-made (an ADD did not finish)")
        }
        guard state.sandboxPin == netns else {
            throw CNIError(code: CNIError.checkFailure, msg: "sandbox \(name) was made in \(state.sandboxPin), not \(netns)")
        }
        guard Pinning.isPinned(state.gatewayPin) else {
            throw CNIError(code: CNIError.checkFailure, msg: "sandbox \(name): the gateway namespace \(state.gatewayPin) is gone")
        }
        do {
            let gateway = try NetworkNamespace.open(path: state.gatewayPin)
            let end = try gateway.withNamespace { try RouteSocket().link(named: state.topology.gatewayInterface) }
            guard end != nil else {
                throw CNIError(code: CNIError.checkFailure, msg: "sandbox \(name): \(state.topology.gatewayInterface) is missing from \(state.gatewayPin)")
            }
            let violations = try SandboxRoutes.violations(in: netns, topology: state.topology)
            guard violations.isEmpty else {
                throw CNIError(code: CNIError.checkFailure,
                               msg: "sandbox \(name): \(netns) has routes that do not go to the gateway: \(violations.joined(separator: ", "))")
            }
        } catch let error as CNIError {
            throw error
        } catch {
            throw CNIError(code: CNIError.checkFailure, msg: "sandbox \(name): \(error)")
        }
    }

    /// STATUS (spec 1.1): ready iff the gateway daemon answers `list`.
    static func status(_ config: CNIConfig) throws {
        do {
            if case let .failure(message) = try ControlClient.send(.list, path: config.daemonSocketPath, timeoutSeconds: 5) {
                throw CNIError(code: CNIError.notAvailable, msg: "the gateway daemon refused list: \(message)")
            }
        } catch let error as CNIError {
            throw error
        } catch {
            throw CNIError(code: CNIError.notAvailable, msg: String(describing: error))
        }
    }

    /// GC (spec 1.1): removes this network's sandboxes whose container the runtime no
    /// longer lists in `cni.dev/valid-attachments`.
    static func collectGarbage(_ config: CNIConfig) throws {
        let valid = Set((config.validAttachments ?? []).map(\.containerID))
        let store = PersistentSandbox()
        var failures: [String] = []
        for state in store.externalSandboxes() {
            guard let external = state.external, external.network == config.name, !valid.contains(external.containerID) else { continue }
            do {
                if case let .failure(message) = try ControlClient.send(.stop(sandbox: state.name.rawValue), path: config.daemonSocketPath) {
                    failures.append("\(state.name): \(message)")
                }
            } catch let error as ControlClientError where error.notFound {
            } catch {
                failures.append("\(state.name): \(error)")
            }
            do { try store.detach(state.name, containerID: external.containerID) } catch { failures.append("\(state.name): \(error)") }
        }
        if !failures.isEmpty {
            throw CNIError(code: CNIError.sandboxFailure, msg: "GC could not remove every stale sandbox: \(failures.joined(separator: "; "))")
        }
    }

    // MARK: parts

    /// The sandbox's name: `k` and the first 11 letters and digits of the container id,
    /// so it is a valid `NamespaceName` and `airlock netns list` shows it beside
    /// `crictl pods` ids.
    static func sandboxName(_ containerID: String) throws -> NamespaceName {
        let letters = containerID.unicodeScalars.filter { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
        guard !letters.isEmpty else {
            throw CNIError(code: CNIError.invalidEnvironment, msg: "CNI_CONTAINERID \(String(reflecting: containerID)) has no letters or digits")
        }
        return try NamespaceName("k" + String(String.UnicodeScalarView(letters.prefix(11))))
    }

    /// Asks the daemon to serve `name` with `policy`.
    /// - Throws: `CNIError` 11 when no daemon runs, 101 when it refuses or fails.
    static func register(_ name: NamespaceName, policy: String, socket: String) throws {
        let response: DaemonResponse
        do {
            response = try ControlClient.send(.serve(sandbox: name.rawValue, policy: policy), path: socket)
        } catch let error as ControlClientError where error.notFound {
            throw CNIError(code: CNIError.tryAgainLater, msg: "cannot register sandbox \(name): \(error)")
        } catch {
            throw CNIError(code: CNIError.daemonFailure, msg: "cannot register sandbox \(name): \(error)")
        }
        if case let .failure(message) = response {
            throw CNIError(code: CNIError.daemonFailure, msg: "the gateway daemon refused to serve sandbox \(name): \(message)")
        }
    }

    /// The ADD result: `prevResult` (or an empty result) with `cniVersion` set, the
    /// airlock interface and its address appended, its host route to G as the only route
    /// (the others were removed) and G as the nameserver.
    static func result(_ config: CNIConfig, netns: String, topology: SandboxTopology) throws -> String {
        var result = config.prevResult?.object ?? [:]
        result["cniVersion"] = .string(config.cniVersion)
        var interfaces = result["interfaces"]?.array ?? []
        interfaces.append(.object(["name": .string(topology.sandboxInterface.rawValue), "sandbox": .string(netns)]))
        var ips = result["ips"]?.array ?? []
        ips.append(.object([
            "address": .string(topology.sandboxAddress.description),
            "gateway": .string(topology.gatewayAddress.address.description),
            "interface": .int(interfaces.count - 1),
        ]))
        result["interfaces"] = .array(interfaces)
        result["ips"] = .array(ips)
        result["routes"] = .array([.object(["dst": .string("\(topology.gatewayAddress.address)/32")])])
        result["dns"] = .object(["nameservers": .array([.string(topology.gatewayAddress.address.description)])])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(JSONValue.object(result)), as: UTF8.self)
    }

    // MARK: I/O

    /// Reads stdin to its end, at most `CNIConfig.maxBytes`.
    /// - Throws: `CNIError` 5 when reading fails, 6 when it is too long.
    static func readStandardInput() throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CNIError(code: CNIError.ioFailure, msg: "cannot read the network configuration from stdin: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > CNIConfig.maxBytes {
                throw CNIError(code: CNIError.decodeFailure, msg: "the network configuration on stdin is longer than \(CNIConfig.maxBytes) bytes")
            }
        }
    }

    /// Writes `text` and a newline to stdout.
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        bytes.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            offset += n
        }
    }

    /// Prints the spec's error object and exits 1.
    static func fail(_ error: CNIError, version: String) -> Never {
        struct Wire: Encodable {
            var cniVersion: String
            var code: Int
            var msg: String
            var details: String?
        }
        let oneLine = { (text: String) in text.split(whereSeparator: \.isNewline).joined(separator: " ") }
        let wire = Wire(cniVersion: version, code: error.code, msg: oneLine(error.msg), details: error.details.isEmpty ? nil : oneLine(error.details))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if let data = try? encoder.encode(wire) {
            write(String(decoding: data, as: UTF8.self))
        } else {
            write(#"{"code":\#(error.code),"cniVersion":"\#(version)","msg":"airlock-cni failed"}"#)
        }
        exit(1)
    }
}
