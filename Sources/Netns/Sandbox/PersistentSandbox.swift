#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import SystemCalls

/// The steps of `PersistentSandbox.create`, in order; tests name one to inject a failure
/// after it and check that everything made so far is removed.
package enum CreationStep: String, CaseIterable, Sendable {
    /// `/run/airlock/NAME/state.json` written with `complete: false`.
    case stateRecorded
    /// S made and pinned at `/run/netns/NAME`.
    case sandboxPinned
    /// G made and pinned at `/run/netns/NAME.gw`.
    case gatewayPinned
    /// IPv6 off by default in S and G.
    case namespacesPrepared
    /// The veth pair made.
    case vethCreated
    /// G configured.
    case gatewayConfigured
    /// S configured.
    case sandboxConfigured
    /// `state.json` rewritten with `complete: true`.
    case stateCompleted

    var topologyStep: TopologyStep? {
        switch self {
        case .namespacesPrepared: return .namespacesPrepared
        case .vethCreated: return .vethCreated
        case .gatewayConfigured: return .gatewayConfigured
        case .sandboxConfigured: return .sandboxConfigured
        default: return nil
        }
    }
}

/// Named sandboxes that outlive the command: S pinned at `/run/netns/NAME`, G at
/// `/run/netns/NAME.gw`, state in `/run/airlock/NAME/state.json`.
///
/// Create is idempotent (same parameters: unchanged; different: refused) and all or
/// nothing (a failed step removes everything made so far). Destroy removes exactly what
/// create made. Everything lives under /run (tmpfs): a reboot removes it too. Operations
/// on sandboxes are serialised by an flock on `/run/airlock/.airlock.lock`.
package struct PersistentSandbox: Sendable {
    /// Where pins live (`/run/netns`).
    package var pinDirectory: String
    /// Where state lives (`/run/airlock`).
    package var stateDirectory: String

    /// The store at the standard places, or others (tests).
    package init(pinDirectory: String = Pinning.runDirectory, stateDirectory: String = "/run/airlock") {
        self.pinDirectory = pinDirectory
        self.stateDirectory = stateDirectory
    }

    /// The pin of S for `name`.
    package func sandboxPin(_ name: NamespaceName) -> String { "\(pinDirectory)/\(name.rawValue)" }
    /// The pin of G for `name`.
    package func gatewayPin(_ name: NamespaceName) -> String { "\(pinDirectory)/\(name.gatewayPinName)" }
    /// The state directory of `name`.
    package func stateDirectory(_ name: NamespaceName) -> String { "\(stateDirectory)/\(name.rawValue)" }
    func stateFile(_ name: NamespaceName) -> String { stateDirectory(name) + "/state.json" }

    // MARK: create

    /// Creates the sandbox `name` with `topology`, or confirms it exists unchanged.
    ///
    /// Leaves behind: two pins, the veth pair and its addresses and routes inside S and
    /// G, and the state directory. On any failure, removes everything it made.
    /// - Parameter failAfter: tests only: fail after this step.
    /// - Throws: `Privileges.PrivilegeError`; `SandboxError.differentParameters`, `.foreignPin`,
    ///   `.halfMade`, `.pinsMissing`; `NetlinkError`, `SystemCallError` (after rollback).
    /// - Requires: CAP_SYS_ADMIN and CAP_NET_ADMIN.
    package func create(_ name: NamespaceName, topology: SandboxTopology, failAfter: CreationStep? = nil) throws -> CreateOutcome {
        try CapabilityCheck.requireNamespaceAdmin(for: "airlock netns create")
        return try withLock {
            if Pinning.exists(stateDirectory(name)) {
                let state = try existingState(name)
                let differences = topology.differences(from: state.topology)
                guard differences.isEmpty else { throw SandboxError.differentParameters(name, differences) }
                let missing = [state.sandboxPin, state.gatewayPin].filter { !Pinning.isPinned($0) }
                guard missing.isEmpty else { throw SandboxError.pinsMissing(name, missing) }
                return .unchanged(state)
            }
            for pin in [sandboxPin(name), gatewayPin(name)] where Pinning.exists(pin) {
                throw SandboxError.foreignPin(pin)
            }
            return .created(try createNew(name, topology: topology, failAfter: failAfter))
        }
    }

    private func createNew(_ name: NamespaceName, topology: SandboxTopology, failAfter: CreationStep?) throws -> SandboxState {
        func done(_ step: CreationStep) throws {
            if step == failAfter { throw InjectedFailure(after: step.rawValue) }
        }
        var state = SandboxState(
            name: name, topology: topology, createdAt: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)), airlockVersion: AirlockVersion.current,
            sandboxPin: sandboxPin(name), gatewayPin: gatewayPin(name), complete: false)
        var madeDirectory = false
        var madePins: [String] = []
        do {
            try Pinning.makeDirectories(stateDirectory)
            guard mkdir(stateDirectory(name), 0o755) == 0 else { throw SystemCallError.last("mkdir \(stateDirectory(name))") }
            madeDirectory = true
            try write(state)
            try done(.stateRecorded)

            // S and G at once, each with a netlink socket of its own for `build` (as in
            // `EphemeralSandbox.build`); one not yet pinned is freed with its descriptor.
            let made = try NetworkNamespace.createUnnamedPair(
                prepareFirst: { try SandboxTopology.prepareNamespace(); return try RouteSocket() },
                prepareSecond: { try SandboxTopology.prepareGatewayNamespace(); return try RouteSocket() })
            try made.first.pin(at: state.sandboxPin)
            madePins.append(state.sandboxPin)
            try done(.sandboxPinned)

            try made.second.pin(at: state.gatewayPin)
            madePins.append(state.gatewayPin)
            try done(.gatewayPinned)

            try topology.build(sandbox: made.first.descriptor, gateway: made.second.descriptor, failAfter: failAfter?.topologyStep,
                               namespacesPrepared: true, routeSockets: (sandbox: made.firstPrepared, gateway: made.secondPrepared))

            state.complete = true
            try write(state)
            try done(.stateCompleted)
            return state
        } catch {
            // Unpinning frees S and G (no process is in them), and with them the veth
            // pair, addresses and routes.
            var undo: [() throws -> Void] = madePins.reversed().map { pin in { try Pinning.unpin(pin) } }
            if madeDirectory { undo.append { try removeDirectory(stateDirectory(name)) } }
            try SandboxError.rethrow(error, undoing: undo)
        }
    }

    // MARK: destroy

    /// Removes the sandbox `name`: its pins (detached, then deleted) and its state
    /// directory; also a half-made one. Processes still inside S keep S alive until they exit.
    /// - Returns: what was removed.
    /// - Throws: `SandboxError.notFound` if there is no state for `name`;
    ///   `Privileges.PrivilegeError`; `SystemCallError`.
    /// - Requires: CAP_SYS_ADMIN.
    @discardableResult
    package func destroy(_ name: NamespaceName) throws -> SandboxRemoval {
        try CapabilityCheck.requireNamespaceAdmin(for: "airlock netns destroy")
        return try withLock {
            guard Pinning.exists(stateDirectory(name)) else { throw SandboxError.notFound(name) }
            // Read once: the status reported and what is removed come from the same state.
            let state = try? readState(name)
            let status = summary(name, state: state).status
            return SandboxRemoval(name: name, status: status, removed: try remove(name, state: state))
        }
    }

    /// Removes both pins and the state directory of `name`; returns the paths that existed.
    ///
    /// A sandbox whose S belongs to a container runtime (`SandboxState.external`) keeps S:
    /// only the airlock end of the veth is deleted inside it, and G unpinned.
    /// - Parameter known: the state when the caller has read it (else it is read here).
    func remove(_ name: NamespaceName, state known: SandboxState? = nil) throws -> [String] {
        var removed: [String] = []
        let state = known ?? (try? readState(name))
        var pins = [sandboxPin(name), gatewayPin(name)]
        if let state, state.external != nil {
            pins = [gatewayPin(name)]
            if try ExternalSandbox.deleteInterface(state.topology.sandboxInterface, in: state.sandboxPin) {
                removed.append("\(state.topology.sandboxInterface) in \(state.sandboxPin)")
            }
        }
        for pin in pins where try Pinning.unpin(pin) {
            removed.append(pin)
        }
        if Pinning.exists(stateDirectory(name)) {
            try removeDirectory(stateDirectory(name))
            removed.append(stateDirectory(name))
        }
        return removed
    }

    // MARK: load, list, gc

    /// The recorded state of the complete sandbox `name`.
    /// - Throws: `SandboxError.notFound`, `.halfMade`, `.pinsMissing`.
    package func load(name: NamespaceName) throws -> SandboxState {
        guard Pinning.exists(stateDirectory(name)) else { throw SandboxError.notFound(name) }
        let state = try existingState(name)
        let missing = [state.sandboxPin, state.gatewayPin].filter { !Pinning.isPinned($0) }
        guard missing.isEmpty else { throw SandboxError.pinsMissing(name, missing) }
        return state
    }

    /// Every sandbox with state, and airlock-named pins (`NAME.gw`) without state, by name.
    /// Needs no privileges to read.
    package func list() -> [SandboxSummary] {
        var summaries: [NamespaceName: SandboxSummary] = [:]
        for entry in directoryEntries(stateDirectory) {
            guard let name = try? NamespaceName(entry), isDirectory(stateDirectory(name)) else { continue }
            summaries[name] = summary(name)
        }
        for entry in directoryEntries(pinDirectory) where entry.hasSuffix(".gw") {
            guard let name = try? NamespaceName(String(entry.dropLast(3))), summaries[name] == nil else { continue }
            summaries[name] = SandboxSummary(name: name, gatewayAddress: nil, sandboxAddress: nil, status: .orphanedPins)
        }
        return summaries.values.sorted { $0.name < $1.name }
    }

    /// Removes orphans: half-made sandboxes, state whose pins are gone, and airlock-named
    /// pin pairs (`NAME.gw`, and `NAME` beside it) without state. A lone `/run/netns/NAME`
    /// without `NAME.gw` may be someone else's (`ip netns add`) and is left alone.
    /// - Returns: what was removed, per sandbox.
    /// - Throws: `Privileges.PrivilegeError`, `SystemCallError`.
    /// - Requires: CAP_SYS_ADMIN.
    package func gc() throws -> [SandboxRemoval] {
        try CapabilityCheck.requireNamespaceAdmin(for: "airlock netns gc")
        return try withLock {
            try list().filter { $0.status != .complete }.map { summary in
                SandboxRemoval(name: summary.name, status: summary.status, removed: try remove(summary.name))
            }
        }
    }

    private func summary(_ name: NamespaceName) -> SandboxSummary {
        summary(name, state: try? readState(name))
    }

    /// The summary of `name` from its `state` as read (nil: unreadable).
    private func summary(_ name: NamespaceName, state: SandboxState?) -> SandboxSummary {
        guard let state, state.complete else {
            return SandboxSummary(name: name, gatewayAddress: nil, sandboxAddress: nil, status: .halfMade)
        }
        let pinned = Pinning.isPinned(state.sandboxPin) && Pinning.isPinned(state.gatewayPin)
        return SandboxSummary(name: name, gatewayAddress: state.topology.gatewayAddress,
                              sandboxAddress: state.topology.sandboxAddress, status: pinned ? .complete : .pinsMissing)
    }

    // MARK: files

    func existingState(_ name: NamespaceName) throws -> SandboxState {
        guard let state = try? readState(name), state.complete else { throw SandboxError.halfMade(name) }
        return state
    }

    func readState(_ name: NamespaceName) throws -> SandboxState {
        try SandboxState(fileText: try fileContents(stateFile(name), limit: 1 << 20))
    }

    /// Writes the state atomically (temporary file, then rename).
    func write(_ state: SandboxState) throws {
        let data = Array(state.fileText.utf8)
        let path = stateFile(state.name)
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemCallError.last("create \(temporary)") }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let writeError = errno
        close(fd)
        guard written == data.count else { throw SystemCallError("write \(temporary)", code: writeError) }
        guard rename(temporary, path) == 0 else { throw SystemCallError.last("rename \(temporary)") }
    }

    func removeDirectory(_ path: String) throws {
        for entry in directoryEntries(path) {
            guard unlink(path + "/" + entry) == 0 || errno == ENOENT else { throw SystemCallError.last("unlink \(path)/\(entry)") }
        }
        guard rmdir(path) == 0 || errno == ENOENT else { throw SystemCallError.last("rmdir \(path)") }
    }

    private func directoryEntries(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        // Bounded: a state or pin directory holds a few entries per sandbox.
        for _ in 0..<100_000 {
            guard let entry = readdir(directory) else { break }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    private func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Runs `body` holding the exclusive lock on the state directory.
    func withLock<R>(_ body: () throws -> R) throws -> R {
        try Pinning.makeDirectories(stateDirectory)
        // `.airlock.lock` is 13 bytes: never a valid sandbox name.
        let path = stateDirectory + "/.airlock.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemCallError.last("open \(path)") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw SystemCallError.last("flock \(path)") }
        return try body()
    }
}
