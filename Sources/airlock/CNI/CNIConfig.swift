#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Gateway
import Netns

/// A CNI error: the spec's error object on stdout and a non-zero exit.
///
/// Codes 1-11 are the spec's well-known ones, 50-51 STATUS's; 100 and up are the plugin's.
struct CNIError: Error, CustomStringConvertible {
    /// The spec's or the plugin's error code.
    var code: Int
    /// One line saying what failed.
    var msg: String
    /// More context, one line; empty if none.
    var details = ""

    var description: String { msg }

    /// 1: the configuration's `cniVersion` is not one the plugin supports.
    static let incompatibleVersion = 1
    /// 3: the container (its network namespace) does not exist.
    static let unknownContainer = 3
    /// 4: a necessary `CNI_*` variable is missing or invalid.
    static let invalidEnvironment = 4
    /// 5: reading stdin failed.
    static let ioFailure = 5
    /// 6: stdin is not a JSON network configuration.
    static let decodeFailure = 6
    /// 7: the network configuration (or the pod's annotation) is invalid.
    static let invalidConfig = 7
    /// 11: a transient condition (the gateway daemon is not running yet).
    static let tryAgainLater = 11
    /// 50: STATUS: the plugin cannot serve ADD.
    static let notAvailable = 50
    /// 100: making or removing the sandbox failed.
    static let sandboxFailure = 100
    /// 101: the gateway daemon refused or failed a request.
    static let daemonFailure = 101
    /// 102: CHECK found the sandbox not as ADD left it.
    static let checkFailure = 102
}

/// A JSON value kept as it came, so `prevResult` passes through unchanged.
enum JSONValue: Codable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int.self) { self = .int(value) }
        else if let value = try? container.decode(Double.self) { self = .double(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case let .bool(value): try container.encode(value)
        case let .int(value): try container.encode(value)
        case let .double(value): try container.encode(value)
        case let .string(value): try container.encode(value)
        case let .array(value): try container.encode(value)
        case let .object(value): try container.encode(value)
        }
    }

    /// The members of an object, nil for anything else.
    var object: [String: JSONValue]? {
        if case let .object(members) = self { return members }
        return nil
    }

    /// The elements of an array, nil for anything else.
    var array: [JSONValue]? {
        if case let .array(elements) = self { return elements }
        return nil
    }
}

/// The network configuration the runtime writes on stdin: the spec's fields and the
/// plugin's own (`daemonSocket`, `policyDirectory`, `defaultPolicy`, addresses).
struct CNIConfig: Decodable {
    /// The spec version the runtime speaks.
    var cniVersion: String
    /// The network's name.
    var name: String
    /// The plugin's name (`airlock-cni`).
    var type: String
    /// The previous plugin's result in a chain, nil when airlock-cni runs alone.
    var prevResult: JSONValue?
    /// Dynamic data from the runtime (capability arguments).
    var runtimeConfig: RuntimeConfig?
    /// The gateway daemon's socket; default `/run/airlock/gateway.sock`.
    var daemonSocket: String?
    /// Where named policies live; default `/etc/airlock/policies`.
    var policyDirectory: String?
    /// The policy for pods without the `airlock.dev/policy` annotation; none by default,
    /// so such pods are refused.
    var defaultPolicy: String?
    /// G's address; default `169.254.200.1/30`.
    var gatewayAddress: String?
    /// S's address on the airlock interface; default `169.254.200.2/30`.
    var sandboxAddress: String?
    /// The airlock interface in S when chained; default `airlock0`. Alone, `CNI_IFNAME`.
    var sandboxInterface: String?
    /// GC (spec 1.1): the attachments the runtime still knows.
    var validAttachments: [Attachment]?

    /// The runtime's capability arguments the plugin reads.
    struct RuntimeConfig: Decodable {
        /// containerd's `io.kubernetes.cri.pod-annotations` capability.
        var podAnnotations: [String: String]?

        private enum CodingKeys: String, CodingKey {
            case podAnnotations = "io.kubernetes.cri.pod-annotations"
        }
    }

    /// One attachment in GC's `cni.dev/valid-attachments`.
    struct Attachment: Decodable {
        var containerID: String
        var ifname: String
    }

    private enum CodingKeys: String, CodingKey {
        case cniVersion, name, type, prevResult, runtimeConfig, daemonSocket, policyDirectory, defaultPolicy
        case gatewayAddress, sandboxAddress, sandboxInterface
        case validAttachments = "cni.dev/valid-attachments"
    }

    /// The spec versions whose configuration and result formats the plugin speaks.
    static let supportedVersions = ["1.0.0", "1.1.0"]
    /// The newest of them, reported by VERSION.
    static let currentVersion = "1.1.0"
    /// The pod annotation naming the pod's policy.
    static let policyAnnotation = "airlock.dev/policy"
    /// The default directory of named policies.
    static let defaultPolicyDirectory = "/etc/airlock/policies"
    /// The default airlock interface in S when chained.
    static let defaultChainedInterface = "airlock0"
    /// The largest configuration accepted on stdin.
    static let maxBytes = 1 << 20

    /// Parses `bytes` (stdin).
    /// - Throws: `CNIError` 6 when it is not JSON, 7 when a field is missing or mistyped, 1
    ///   for an unsupported `cniVersion`.
    static func parse(_ bytes: [UInt8]) throws -> CNIConfig {
        guard (try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)))?.object != nil else {
            throw CNIError(code: CNIError.decodeFailure, msg: "the network configuration on stdin is not a JSON object")
        }
        let config: CNIConfig
        do {
            config = try JSONDecoder().decode(CNIConfig.self, from: Data(bytes))
        } catch let DecodingError.keyNotFound(key, context) {
            throw CNIError(code: CNIError.invalidConfig, msg: "the network configuration has no \(fieldName(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw CNIError(code: CNIError.invalidConfig, msg: "the network configuration's \(fieldName(context.codingPath)) has the wrong type")
        } catch let DecodingError.valueNotFound(_, context) {
            throw CNIError(code: CNIError.invalidConfig, msg: "the network configuration's \(fieldName(context.codingPath)) is null")
        } catch {
            throw CNIError(code: CNIError.decodeFailure, msg: "the network configuration on stdin cannot be decoded")
        }
        guard supportedVersions.contains(config.cniVersion) else {
            throw CNIError(code: CNIError.incompatibleVersion,
                           msg: "CNI version \(String(reflecting: config.cniVersion)) is not supported; airlock-cni supports \(supportedVersions.joined(separator: ", "))")
        }
        return config
    }

    private static func fieldName(_ path: [CodingKey]) -> String {
        "`" + path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") + "`"
    }

    /// The daemon's socket path.
    var daemonSocketPath: String { daemonSocket ?? DaemonRequest.socketPath }

    /// The sandbox topology: the configured addresses, the airlock interface in S
    /// (`CNI_IFNAME` when alone, `sandboxInterface` or `airlock0` when chained) and `gw0` in G.
    /// - Throws: `CNIError` 7 naming the bad value.
    func topology(interface: String) throws -> SandboxTopology {
        do {
            let sandboxInterface = prevResult == nil ? interface : (self.sandboxInterface ?? Self.defaultChainedInterface)
            return try SandboxTopology(
                gatewayAddress: gatewayAddress.map(IPv4CIDR.init) ?? SandboxTopology.defaultGatewayAddress,
                sandboxAddress: sandboxAddress.map(IPv4CIDR.init) ?? SandboxTopology.defaultSandboxAddress,
                sandboxInterface: InterfaceName(sandboxInterface))
        } catch {
            throw CNIError(code: CNIError.invalidConfig, msg: "invalid network configuration: \(error)")
        }
    }

    /// The pod's policy file: the name from the pod's `airlock.dev/policy` annotation, or
    /// `defaultPolicy`, as `POLICY_DIRECTORY/NAME.policy`, which must be a regular file.
    /// - Throws: `CNIError` 7 when there is no policy, the name is not a plain name, or
    ///   the file does not exist.
    func policyFile() throws -> String {
        let fromAnnotation = runtimeConfig?.podAnnotations?[Self.policyAnnotation]
        guard let name = fromAnnotation ?? defaultPolicy else {
            throw CNIError(code: CNIError.invalidConfig,
                           msg: "no policy for the pod: annotate it with \(Self.policyAnnotation) or set defaultPolicy in the network configuration")
        }
        let source = fromAnnotation != nil ? "the pod's \(Self.policyAnnotation) annotation" : "defaultPolicy"
        if let reason = PolicyName.invalidReason(name) {
            throw CNIError(code: CNIError.invalidConfig, msg: "invalid policy name \(String(reflecting: name)) in \(source): \(reason)")
        }
        let directory = policyDirectory ?? Self.defaultPolicyDirectory
        guard directory.hasPrefix("/") else {
            throw CNIError(code: CNIError.invalidConfig, msg: "policyDirectory \(String(reflecting: directory)) is not an absolute path")
        }
        let path = directory + "/" + name + ".policy"
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw CNIError(code: CNIError.invalidConfig, msg: "unknown policy \(String(reflecting: name)) (from \(source)): no file \(path)")
        }
        return path
    }
}

/// The names of policies on the node: `NAME` is `POLICY_DIRECTORY/NAME.policy`.
enum PolicyName {
    /// The longest name.
    static let maximumLength = 64

    /// Why `name` is not a policy name, or nil if it is one: 1-64 bytes of
    /// `A-Z a-z 0-9 _ . -`, not starting with `.` or `-` (so never `..`, never a path).
    static func invalidReason(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { return "empty" }
        if bytes.count > maximumLength { return "\(bytes.count) bytes, at most \(maximumLength)" }
        if name.contains("/") { return "contains \"/\"" }
        if name.contains("..") { return "contains \"..\"" }
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
                continue
            default:
                return "only A-Z a-z 0-9 _ . - are allowed"
            }
        }
        if bytes[0] == UInt8(ascii: ".") || bytes[0] == UInt8(ascii: "-") { return "starts with \(String(reflecting: String(name.prefix(1))))" }
        return nil
    }
}

/// The `CNI_*` variables the runtime sets.
struct CNIEnvironment {
    /// `CNI_COMMAND`.
    var command: String
    /// `CNI_CONTAINERID`, nil when unset.
    var containerID: String?
    /// `CNI_NETNS`, nil when unset or empty.
    var netns: String?
    /// `CNI_IFNAME`, nil when unset.
    var ifname: String?
    /// `CNI_ARGS` as key-value pairs.
    var args: [String: String]

    /// Reads the process environment.
    /// - Throws: `CNIError` 4 when `CNI_COMMAND` is unset.
    static func current() throws -> CNIEnvironment {
        func variable(_ name: String) -> String? {
            guard let value = getenv(name) else { return nil }
            return String(cString: value)
        }
        guard let command = variable("CNI_COMMAND"), !command.isEmpty else {
            throw CNIError(code: CNIError.invalidEnvironment, msg: "CNI_COMMAND is not set; airlock-cni is a CNI plugin, run by a container runtime")
        }
        var args: [String: String] = [:]
        for pair in (variable("CNI_ARGS") ?? "").split(separator: ";") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { args[String(parts[0])] = String(parts[1]) }
        }
        let netns = variable("CNI_NETNS").flatMap { $0.isEmpty ? nil : $0 }
        return CNIEnvironment(command: command, containerID: variable("CNI_CONTAINERID"), netns: netns,
                              ifname: variable("CNI_IFNAME"), args: args)
    }

    /// `CNI_CONTAINERID`, checked against the spec's form (`[A-Za-z0-9][A-Za-z0-9_.-]*`).
    /// - Throws: `CNIError` 4.
    func requireContainerID() throws -> String {
        guard let id = containerID, !id.isEmpty else {
            throw CNIError(code: CNIError.invalidEnvironment, msg: "CNI_CONTAINERID is not set")
        }
        let valid = id.utf8.count <= 1024 && id.utf8.enumerated().allSatisfy { index, byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
            case UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"): return index > 0
            default: return false
            }
        }
        guard valid else {
            throw CNIError(code: CNIError.invalidEnvironment, msg: "CNI_CONTAINERID \(String(reflecting: id)) is not a container id (A-Z a-z 0-9 _ . -)")
        }
        return id
    }

    /// `CNI_NETNS`, an absolute path.
    /// - Throws: `CNIError` 4.
    func requireNetns() throws -> String {
        guard let path = netns else { throw CNIError(code: CNIError.invalidEnvironment, msg: "CNI_NETNS is not set") }
        guard path.hasPrefix("/") else {
            throw CNIError(code: CNIError.invalidEnvironment, msg: "CNI_NETNS \(String(reflecting: path)) is not an absolute path")
        }
        return path
    }

    /// `CNI_IFNAME`, a valid interface name.
    /// - Throws: `CNIError` 4.
    func requireInterface() throws -> String {
        guard let name = ifname, !name.isEmpty else { throw CNIError(code: CNIError.invalidEnvironment, msg: "CNI_IFNAME is not set") }
        do {
            return try InterfaceName(name).rawValue
        } catch {
            throw CNIError(code: CNIError.invalidEnvironment, msg: "CNI_IFNAME: \(error)")
        }
    }

    /// The pod as `NAMESPACE/NAME` from `K8S_POD_NAMESPACE` and `K8S_POD_NAME` in `CNI_ARGS`.
    var pod: String? {
        guard let namespace = args["K8S_POD_NAMESPACE"], let name = args["K8S_POD_NAME"] else { return nil }
        return namespace + "/" + name
    }
}
