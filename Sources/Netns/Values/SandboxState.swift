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
