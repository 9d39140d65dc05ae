import FoundationEssentials

/// What `airlock netns create` records in `/run/airlock/NAME/state.json`.
///
/// Written twice: first with `complete == false` before anything is made (so a crash
/// leaves a half-made sandbox that destroy and gc recognise as airlock's), then with
/// `complete == true` as the last step of create.
package struct SandboxState: Codable, Equatable, Sendable {
    /// The sandbox name.
    package var name: NamespaceName
    /// The topology built.
    package var topology: SandboxTopology
    /// When create started.
    package var createdAt: Date
    /// The airlock version that made it.
    package var airlockVersion: String
    /// The pin of the sandbox namespace S, `/run/netns/NAME`.
    package var sandboxPin: String
    /// The pin of the gateway namespace G, `/run/netns/NAME.gw`.
    package var gatewayPin: String
    /// True once create finished; written last.
    package var complete: Bool
    /// Set when S belongs to a container runtime (the CNI plugin attached to it): airlock
    /// never unpins or deletes S, only its own veth end inside it. Absent for `netns create`.
    package var external: ExternalSandbox? = nil
}

/// How a sandbox looks in `airlock netns list`.
package enum SandboxStatus: String, Codable, Sendable {
    /// Complete: state recorded, both pins live.
    case complete
    /// A create that did not finish (or an unreadable state file).
    case halfMade = "half-made"
    /// State says complete but a pin is gone.
    case pinsMissing = "pins-missing"
    /// Pins named like airlock's (`NAME.gw`) without any state.
    case orphanedPins = "orphaned-pins"
}

/// One line of `airlock netns list`.
package struct SandboxSummary: Codable, Equatable, Sendable {
    /// The sandbox name.
    package var name: NamespaceName
    /// The gateway address, if known.
    package var gatewayAddress: IPv4CIDR?
    /// The sandbox address, if known.
    package var sandboxAddress: IPv4CIDR?
    /// Whether it is complete.
    package var status: SandboxStatus

    /// A summary line.
    package init(name: NamespaceName, gatewayAddress: IPv4CIDR?, sandboxAddress: IPv4CIDR?, status: SandboxStatus) {
        self.name = name
        self.gatewayAddress = gatewayAddress
        self.sandboxAddress = sandboxAddress
        self.status = status
    }
}

/// What `airlock netns gc` (or destroy) removed for one sandbox.
package struct SandboxRemoval: Codable, Equatable, Sendable {
    /// The sandbox name.
    package var name: NamespaceName
    /// Why it was an orphan (its status before removal).
    package var status: SandboxStatus
    /// The paths removed (pins and the state directory).
    package var removed: [String]
}

/// The result of `PersistentSandbox.create`.
package enum CreateOutcome: Equatable, Sendable {
    /// Made now.
    case created(SandboxState)
    /// Already there with the same parameters; nothing was changed.
    case unchanged(SandboxState)

    /// The sandbox's state either way.
    package var state: SandboxState {
        switch self {
        case .created(let state), .unchanged(let state): return state
        }
    }
}

// MARK: the state file

extension SandboxState {
    /// The state file's text: the members `Codable` names, in `StateJSON`'s form (which is
    /// `JSONEncoder`'s with sorted keys, pretty-printed, slashes unescaped); `external` and
    /// its optional members are left out when nil, as `Codable` leaves them.
    package var fileText: String {
        var members: [String: StateJSON] = [
            "name": .string(name.rawValue),
            "topology": .object([
                "gatewayAddress": .string(topology.gatewayAddress.description),
                "sandboxAddress": .string(topology.sandboxAddress.description),
                "sandboxInterface": .string(topology.sandboxInterface.rawValue),
                "gatewayInterface": .string(topology.gatewayInterface.rawValue),
            ]),
            "createdAt": .string(StateDate.format(createdAt)),
            "airlockVersion": .string(airlockVersion),
            "sandboxPin": .string(sandboxPin),
            "gatewayPin": .string(gatewayPin),
            "complete": .bool(complete),
        ]
        if let external {
            var fields: [String: StateJSON] = [
                "owner": .string(external.owner), "containerID": .string(external.containerID), "network": .string(external.network),
            ]
            fields["pod"] = external.pod.map(StateJSON.string)
            fields["policy"] = external.policy.map(StateJSON.string)
            members["external"] = .object(fields)
        }
        return StateJSON.object(members).text
    }

    /// Reads a state file's text, as `JSONDecoder` read it: every member required but
    /// `external` (and its `pod` and `policy`), null as absent for those, other members
    /// ignored, each value checked as its type's initialiser checks it.
    /// - Throws: `StateJSON.Malformed` naming the member and the reason.
    package init(fileText bytes: [UInt8]) throws {
        guard case .object(let members) = try StateJSON.parse(bytes) else { throw StateJSON.Malformed("the state is not an object") }
        func string(_ key: String, in members: [String: StateJSON], optional: Bool = false) throws -> String? {
            switch members[key] {
            case .string(let text)?: return text
            case nil, .null?: if optional { return nil }
                throw StateJSON.Malformed("\(key): missing")
            default: throw StateJSON.Malformed("\(key): not a string")
            }
        }
        func text(_ key: String, in members: [String: StateJSON] = members) throws -> String {
            try string(key, in: members)!
        }
        func required<T>(_ key: String, in members: [String: StateJSON] = members, _ make: (String) throws -> T) throws -> T {
            let value = try text(key, in: members)
            do {
                return try make(value)
            } catch {
                throw StateJSON.Malformed("\(key): \(error)")
            }
        }
        guard case .object(let topology)? = members["topology"] else { throw StateJSON.Malformed("topology: missing or not an object") }
        guard case .bool(let complete)? = members["complete"] else { throw StateJSON.Malformed("complete: missing or not true or false") }
        let external: ExternalSandbox?
        switch members["external"] {
        case nil, .null?: external = nil
        case .object(let fields)?:
            do {
                external = ExternalSandbox(
                    owner: try text("owner", in: fields), containerID: try text("containerID", in: fields), network: try text("network", in: fields),
                    pod: try string("pod", in: fields, optional: true), policy: try string("policy", in: fields, optional: true))
            } catch {
                throw StateJSON.Malformed("external.\(error)")
            }
        default: throw StateJSON.Malformed("external: not an object")
        }
        let builtTopology: SandboxTopology
        do {
            builtTopology = try SandboxTopology(
                gatewayAddress: try required("gatewayAddress", in: topology, IPv4CIDR.init),
                sandboxAddress: try required("sandboxAddress", in: topology, IPv4CIDR.init),
                sandboxInterface: try required("sandboxInterface", in: topology, InterfaceName.init),
                gatewayInterface: try required("gatewayInterface", in: topology, InterfaceName.init))
        } catch let error as StateJSON.Malformed {
            throw StateJSON.Malformed("topology.\(error)")
        } catch {
            throw StateJSON.Malformed("topology: \(error)")
        }
        self.init(
            name: try required("name", NamespaceName.init),
            topology: builtTopology,
            createdAt: try required("createdAt") { text in
                guard let date = StateDate.parse(text) else { throw StateJSON.Malformed("not an ISO 8601 date") }
                return date
            },
            airlockVersion: try text("airlockVersion"),
            sandboxPin: try text("sandboxPin"),
            gatewayPin: try text("gatewayPin"),
            complete: complete,
            external: external)
    }
}
