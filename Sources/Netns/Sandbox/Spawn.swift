#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import SystemCalls

/// A command running inside a sandbox, behind its own init (PID 1 of a new PID namespace).
///
/// The init joins the sandbox network namespace, makes private mount and IPC namespaces
/// with a fresh `/run`, the sandbox's `/etc/resolv.conf` and `/etc/hosts`, a private `/tmp`
/// and `/dev/shm`, the masks (see `SandboxView`) and a fresh `/proc` with `/proc/sys`
/// read-only, drops to the user with no capabilities and `no_new_privs`, and starts the
/// command under the seccomp filter (`SeccompFilter`). It forwards signals to the command and exits with its status. Nothing is
/// left behind: the mount and PID namespaces end with the init, and the init is killed
/// (`PR_SET_PDEATHSIG`) if the thread that spawned it ends, so spawn from a thread that
/// outlives the sandbox (the main thread in the command line).
package final class SandboxProcess {
    /// Why a command could not be started.
    package enum SpawnError: Error, Equatable, CustomStringConvertible {
        /// The command line is empty.
        case emptyCommand
        /// An argument or environment entry holds a NUL byte.
        case invalidString(String)
        /// A step of the sandbox set-up failed.
        case setup(SandboxSetupError)

        package var description: String {
            switch self {
            case .emptyCommand: return "no command to run"
            case .invalidString(let what): return "\(what) contains a NUL byte"
            case .setup(let error): return error.description
            }
        }
    }

    /// The pid of the sandbox init, in the caller's PID namespace.
    package let pid: pid_t
    private var statusDescriptor: Int32
    private var finished: ExitStatus?
    /// The command's status, reported by the init that has not been reaped yet.
    private var reported: ExitStatus?

    private init(pid: pid_t, statusDescriptor: Int32) {
        self.pid = pid
        self.statusDescriptor = statusDescriptor
    }

    deinit {
        if statusDescriptor >= 0 { close(statusDescriptor) }
    }

    /// Starts `spec.argv` in the sandbox; returns once the command has been exec'd (or its
    /// exec failed, which it reports by exiting 127 or 126 like a shell).
    /// - Throws: `SpawnError.setup` naming the step that failed.
    /// - Requires: CAP_SYS_ADMIN (namespaces, mounts, setns), CAP_SETUID, CAP_SETGID, CAP_SETPCAP.
    package static func spawn(_ spec: SandboxProcessSpec) throws -> SandboxProcess {
        try prepare(spec).start()
    }

    /// Sets the sandbox up without starting the command: the init builds everything and
    /// waits at a gate, while the caller does what must come first (its gateway starts
    /// serving). `Pending.start()` starts the command; `Pending.cancel()`, or dropping it,
    /// ends the init with nothing started.
    /// - Throws: `SpawnError` for a spec that cannot be started (the set-up's own failures
    ///   are reported by `start()`).
    /// - Requires: as `spawn`.
    package static func prepare(_ spec: SandboxProcessSpec) throws -> Pending {
        guard let command = spec.argv.first, !command.isEmpty else { throw SpawnError.emptyCommand }
        let environment = spec.finalEnvironment
        let entries = SandboxEnvironment.entries(environment)
        // By bytes, as the kernel reads them: a character-wise search missed an `=` followed by
        // a combining mark (one character), and walked every character of every variable.
        if let bad = spec.argv.first(where: { $0.utf8.contains(0) }) { throw SpawnError.invalidString("argument '\(bad.prefix(40))'") }
        if let bad = environment.first(where: { $0.key.utf8.contains(0) || $0.value.utf8.contains(0) || $0.key.utf8.contains(UInt8(ascii: "=")) }) {
            throw SpawnError.invalidString("environment variable '\(bad.key.prefix(40))'")
        }
        let candidates = ExecutableSearch.candidates(for: command, path: environment["PATH"])
        let files = SandboxEtcFiles(gateway: spec.gatewayAddress)
        let lastCap = cnl_cap_last_cap()
        guard lastCap >= 0 else { throw SpawnError.setup(SandboxSetupError(step: "read /proc/sys/kernel/cap_last_cap", code: -lastCap)) }
        guard let emptyCaps = cnl_cap_new_empty() else { throw SpawnError.setup(SandboxSetupError(step: "prepare capabilities", code: errno)) }
        defer { cnl_cap_free(emptyCaps) }
        let filter: SeccompFilter
        do {
            filter = try SeccompFilter(allowNestedNamespaces: spec.allowNestedNamespaces)
        } catch let error as SeccompFilter.BuildError {
            throw SpawnError.setup(SandboxSetupError(step: "build the seccomp filter", code: error.code))
        }
        let keptDirectory = spec.privateTmp ? spec.workingDirectory.flatMap(SandboxView.underPrivateTmp) : nil

        let strings = CStringArena()
        let argv = strings.array(spec.argv)
        let envp = strings.array(entries)
        let paths = strings.array(candidates)
        let maskPaths = spec.masks.map { strings.string($0.path) }
        var masks = zip(spec.masks, maskPaths).map { mask, path in
            cnl_spawn_mask(path: path, is_directory: mask.kind == .directory ? 1 : 0)
        }
        var groups = spec.user.groups
        var varRunInfo = stat()
        let varRunSeparate = lstat("/var/run", &varRunInfo) == 0 && (varRunInfo.st_mode & S_IFMT) == S_IFDIR

        // In a user namespace with setgroups denied (the rootless run) the groups stay as they are.
        let keepGroups = RootlessLauncher.setgroupsDenied()
        var failure = cnl_spawn_failure(step: 0, error: 0, index: -1)
        var pid: pid_t = 0
        var setupFD: Int32 = -1
        var statusFD: Int32 = -1
        var gateFD: Int32 = -1
        let result = masks.withUnsafeMutableBufferPointer { maskBuffer in
            groups.withUnsafeMutableBufferPointer { groupBuffer in
                var c = cnl_spawn_spec(
                    argv: argv, envp: envp, candidates: paths,
                    command_name: strings.string(command),
                    uid: spec.user.uid, gid: spec.user.gid,
                    groups: groupBuffer.baseAddress, group_count: groupBuffer.count,
                    netns_fd: spec.networkNamespace,
                    resolv_conf: strings.string(files.resolvConf),
                    resolv_conf_path: files.resolvConfTarget.map { strings.string($0) },
                    hosts: strings.string(files.hosts),
                    hosts_path: files.hostsTarget.map { strings.string($0) },
                    mount_var_run: varRunSeparate ? 1 : 0,
                    masks: maskBuffer.baseAddress.map { UnsafePointer($0) }, mask_count: maskBuffer.count,
                    cwd: spec.workingDirectory.map { strings.string($0) },
                    empty_caps: emptyCaps, cap_last_cap: lastCap,
                    stdio: (spec.standardStreams.input, spec.standardStreams.output, spec.standardStreams.error),
                    keep_groups: keepGroups ? 1 : 0,
                    private_tmp: spec.privateTmp ? 1 : 0,
                    keep_directory: keptDirectory.map { strings.string($0) },
                    seccomp_instructions: filter.instructions, seccomp_count: filter.count)
                return cnl_spawn_gated(&c, &pid, &setupFD, &statusFD, &gateFD, &failure)
            }
        }
        withExtendedLifetime(strings) {}
        withExtendedLifetime(filter) {}
        if result != 0 { throw setupError(failure, spec) }
        let process = SandboxProcess(pid: pid, statusDescriptor: statusFD)
        return Pending(process: process, setup: setupFD, gate: gateFD, spec: spec)
    }

    private static func setupError(_ failure: cnl_spawn_failure, _ spec: SandboxProcessSpec) -> SpawnError {
        let step = SandboxSetupError.describe(failure, masks: spec.masks, user: spec.user, cwd: spec.workingDirectory)
        let hint = SandboxSetupError.hint(failure, user: spec.user, cwd: spec.workingDirectory)
        return SpawnError.setup(SandboxSetupError(step: step, code: failure.error, hint: hint))
    }

    /// A sandbox whose init waits at the gate (`prepare`).
    package final class Pending {
        private let process: SandboxProcess
        private let setup: Int32
        /// The gate; -1 once opened (`start`) or closed (`cancel`).
        private var gate: Int32
        private let spec: SandboxProcessSpec

        fileprivate init(process: SandboxProcess, setup: Int32, gate: Int32, spec: SandboxProcessSpec) {
            self.process = process
            self.setup = setup
            self.gate = gate
            self.spec = spec
        }

        /// The init's pid.
        package var pid: pid_t { process.pid }

        /// Starts the command; returns once it has been exec'd. Call once.
        /// - Throws: `SpawnError.setup` naming the set-up step that failed (the init is reaped).
        package func start() throws -> SandboxProcess {
            guard gate >= 0 else { return process }
            let gate = self.gate
            self.gate = -1
            var failure = cnl_spawn_failure(step: 0, error: 0, index: -1)
            if cnl_spawn_open_gate(process.pid, setup, gate, &failure) != 0 {
                process.reaped()
                throw SandboxProcess.setupError(failure, spec)
            }
            return process
        }

        /// Ends the init without starting the command, and reaps it.
        package func cancel() {
            guard gate >= 0 else { return }
            close(gate)
            close(setup)
            gate = -1
            _ = process.wait()
        }

        deinit {
            cancel()
        }
    }

    /// The init was reaped without starting the command.
    fileprivate func reaped() {
        finished = .exited(125)
    }

    /// Waits until the command has ended and returns how; repeated calls return the same.
    /// The init, which reports the command's status just before it exits, is not waited
    /// for: its teardown of the sandbox (the command's leftovers killed, the namespaces and
    /// mounts freed) overlaps what the caller does next, and `wait()` reaps it. Without a
    /// report (the init itself was killed) this is `wait()`.
    package func commandStatus() -> ExitStatus {
        if let finished { return finished }
        if let reported { return reported }
        reported = readReport()
        return reported ?? wait()
    }

    /// Waits until the command and the sandbox init have ended, reaps the init and returns
    /// how the command ended; repeated calls return the same.
    package func wait() -> ExitStatus {
        if let finished { return finished }
        var status: Int32 = 0
        if retryingInterrupted({ waitpid(pid, &status, 0) }) < 0 { status = 0 }
        // The init reports the command's own wait status; without it (the init itself was
        // killed) the init's status stands.
        let result = reported ?? readReport() ?? ExitStatus(waitStatus: status)
        finished = result
        return result
    }

    /// The command's wait status as the init reports it; nil once the init has ended
    /// without a report, and after the first call.
    private func readReport() -> ExitStatus? {
        guard statusDescriptor >= 0 else { return nil }
        var raw: Int32 = 0
        let count = withUnsafeMutableBytes(of: &raw) { buffer in
            retryingInterrupted { read(statusDescriptor, buffer.baseAddress, buffer.count) }
        }
        close(statusDescriptor)
        statusDescriptor = -1
        return count == MemoryLayout<Int32>.size ? ExitStatus(waitStatus: raw) : nil
    }

    /// Sends `signal` to the sandbox init, which forwards INT, TERM, HUP, QUIT, USR1 and
    /// USR2 to the command (KILL ends the whole sandbox).
    /// - Throws: `SandboxSetupError` when the init is gone.
    package func signal(_ signal: Int32) throws {
        guard finished == nil, reported == nil else { return }
        if kill(pid, signal) < 0 { throw SandboxSetupError(step: "signal the sandbox", code: errno) }
    }
}

/// C strings that live as long as this object (for the C spawn spec).
final class CStringArena {
    private var owned: [UnsafeMutablePointer<CChar>] = []
    private var arrays: [UnsafeMutablePointer<UnsafePointer<CChar>?>] = []

    func string(_ value: String) -> UnsafePointer<CChar> {
        let copy = strdup(value)!
        owned.append(copy)
        return UnsafePointer(copy)
    }

    /// A NULL-terminated array of C strings.
    func array(_ values: [String]) -> UnsafePointer<UnsafePointer<CChar>?> {
        let array = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: values.count + 1)
        for (i, value) in values.enumerated() { array[i] = string(value) }
        array[values.count] = nil
        arrays.append(array)
        return UnsafePointer(array)
    }

    deinit {
        owned.forEach { free($0) }
        arrays.forEach { $0.deallocate() }
    }
}
