/// What to run inside a sandbox, as whom, and what it sees.
package struct SandboxProcessSpec: Sendable {
    /// The command and its arguments; `argv[0]` is searched in the environment's `PATH`.
    package var argv: [String]
    /// The command's environment (see `SandboxEnvironment.build`).
    package var environment: [String: String]
    /// Merged over `environment` last. This is where the git session configuration
    /// (`GIT_CONFIG_COUNT`, `GIT_CONFIG_KEY_n`, `GIT_CONFIG_VALUE_n`) goes.
    package var extraEnvironment: [String: String]
    /// The account the command runs as.
    package var user: SandboxUser
    /// An open descriptor of the sandbox network namespace (`/run/netns/NAME`), or -1 to
    /// stay in the caller's.
    package var networkNamespace: Int32
    /// The gateway's address inside the sandbox: the nameserver and `airlock.internal`.
    package var gatewayAddress: String
    /// The paths hidden, with their kinds (see `Masks.resolve`).
    package var masks: [Mask]
    /// The command's working directory; nil keeps the caller's.
    package var workingDirectory: String?
    /// Descriptors for the command's standard input, output and error; -1 keeps airlock's.
    package var standardStreams: (input: Int32, output: Int32, error: Int32) = (-1, -1, -1)
    /// A fresh `/tmp` and `/dev/shm` (the default); false shares the host's, sockets and all.
    package var privateTmp = true
    /// Leaves new user namespaces allowed in the seccomp filter (browsers' and bwrap's own
    /// sandboxes need them); every other rule stays.
    package var allowNestedNamespaces = false

    /// A spec with every field given.
    package init(
        argv: [String], environment: [String: String], extraEnvironment: [String: String] = [:],
        user: SandboxUser, networkNamespace: Int32, gatewayAddress: String, masks: [Mask],
        workingDirectory: String? = nil
    ) {
        self.argv = argv
        self.environment = environment
        self.extraEnvironment = extraEnvironment
        self.user = user
        self.networkNamespace = networkNamespace
        self.gatewayAddress = gatewayAddress
        self.masks = masks
        self.workingDirectory = workingDirectory
    }

    /// The environment the command gets: `environment` with `extraEnvironment` merged over it.
    package var finalEnvironment: [String: String] {
        environment.merging(extraEnvironment) { _, extra in extra }
    }
}
