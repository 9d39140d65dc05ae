#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import SystemCalls

/// Starts the sandbox builder of a rootless `airlock run`: a child in new user, network
/// and mount namespaces, with the caller's uid and gid mapped to themselves and the
/// capabilities it needs kept across execve as ambient capabilities.
///
/// Those capabilities exist only inside the new user namespace: they act on the
/// namespaces it owns (its network namespace, its mounts), never on the host. The child
/// gets `PR_SET_PDEATHSIG` SIGKILL, so it dies with the thread that launched it: launch
/// from a thread that lives as long as the sandbox (the main thread in the command line).
/// Nothing is pinned or written on the host; the namespaces end with their last process.
package enum RootlessLauncher {
    /// The capabilities the sandbox builder keeps, each for one reason:
    /// - `CAP_NET_ADMIN`: create the veth pair, addresses, routes and link state in S and G,
    ///   set `IP_TRANSPARENT` on the gateway's transparent listeners;
    /// - `CAP_SYS_ADMIN`: create the S and G network namespaces, `setns` into them, and mount
    ///   the sandbox's tmpfs, bind mounts and `/proc`;
    /// - `CAP_SYS_CHROOT`: `setns` into a mount namespace requires it besides CAP_SYS_ADMIN;
    /// - `CAP_NET_BIND_SERVICE`: bind the gateway's listeners on 53, 80 and 443 in G;
    /// - `CAP_SETPCAP`: drop the bounding set before CMD runs;
    /// - `CAP_SETUID`, `CAP_SETGID`: switch the sandbox init to the (mapped) user with
    ///   setresuid/setresgid while keeping the ability to drop the rest;
    /// - `CAP_DAC_OVERRIDE`: write `/proc/sys/net/...` of the new namespaces (disable IPv6 on
    ///   the veth ends, forwarding off), whose owner, root of the namespace, is not mapped.
    /// Not kept: `CAP_KILL` (the sandbox runs under the same uid, so signals need no
    /// capability) and `CAP_NET_RAW` (netlink and the listeners need none).
    package static let sandboxBuilderCapabilities: [Capability] = [
        .dacOverride, .setgid, .setuid, .setpcap, .netBindService, .netAdmin, .sysChroot, .sysAdmin,
    ]

    /// Why a launch failed.
    package enum LaunchError: Error, Equatable, CustomStringConvertible {
        /// More descriptors than the launcher passes (64).
        case tooManyDescriptors(Int)
        /// A string holds a NUL byte.
        case invalidString(String)
        /// The child reported the step that failed.
        case setup(SandboxSetupError)

        package var description: String {
            switch self {
            case .tooManyDescriptors(let count): return "cannot pass \(count) descriptors (at most 64)"
            case .invalidString(let what): return "\(what) contains a NUL byte"
            case .setup(let error):
                if error.code == EPERM || error.code == EACCES || error.code == ENOSPC,
                   error.step.hasPrefix("create user") || error.step.hasPrefix("write /proc/self") {
                    return "\(error): unprivileged user namespaces are not available (see `airlock doctor`)"
                }
                return error.description
            }
        }
    }

    /// Starts `executable` with `arguments` (argv[0] is `executable`) and `environment`
    /// (`NAME=value`) in new user, network and mount namespaces; `fds` become 3, 4, … in
    /// the child; every other descriptor is closed on exec. Returns the child's pid once
    /// it has exec'd.
    /// - Throws: `LaunchError.setup` naming the step that failed (unshare, maps, exec).
    /// - Requires: unprivileged user namespaces (or root).
    package static func start(
        executable: String, arguments: [String], environment: [String], passing fds: [CInt],
        capabilities: [Capability] = sandboxBuilderCapabilities
    ) throws -> pid_t {
        try launch(executable: executable, arguments: arguments, environment: environment, fds: fds, capabilities: capabilities)
    }

    /// `start` without execve: forks a child in new user, network and mount namespaces
    /// (the caller's ids mapped to themselves, `capabilities` its own, not dumpable, dying
    /// with the calling thread, no descriptor but 0, 1, 2 and `keeping`) that goes on
    /// running the caller's code. No second process start, no parser, no plan to encode:
    /// the builder of a rootless `airlock run`.
    /// - Returns: the child's pid in the parent; nil in the child.
    /// - Throws: `LaunchError.setup` naming the step that failed.
    /// - Requires: the process has one thread (the child runs Swift code after the fork).
    package static func fork(keeping: CInt, capabilities: [Capability] = sandboxBuilderCapabilities) throws -> pid_t? {
        let pid = try launch(executable: nil, arguments: [], environment: [], fds: [], capabilities: capabilities, forkKeeping: keeping)
        return pid == 0 ? nil : pid
    }

    /// Whether the calling user can create a user namespace with its ids mapped, the way
    /// `start` does (tried in a child that exits at once). Returns nil, or the failure.
    package static func probe() -> SandboxSetupError? {
        do {
            let pid = try launch(executable: nil, arguments: [], environment: [], fds: [], capabilities: [])
            var status: Int32 = 0
            _ = retryingInterrupted { waitpid(pid, &status, 0) }
            return status == 0 ? nil : SandboxSetupError(step: "probe child exited with \(ExitStatus(waitStatus: status))", code: EIO)
        } catch LaunchError.setup(let error) {
            return error
        } catch {
            return SandboxSetupError(step: "probe", code: EIO)
        }
    }

    /// Whether this process is in a user namespace whose `setgroups` is denied.
    package static func setgroupsDenied() -> Bool {
        let fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = read(fd, &buffer, buffer.count)
        return n >= 4 && String(decoding: buffer.prefix(4), as: UTF8.self) == "deny"
    }

    /// `cnl_launch`, or with `forkKeeping` `cnl_launch_fork` (then 0 in the child).
    private static func launch(
        executable: String?, arguments: [String], environment: [String], fds: [CInt], capabilities: [Capability],
        forkKeeping: CInt? = nil
    ) throws -> pid_t {
        guard fds.count <= 64 else { throw LaunchError.tooManyDescriptors(fds.count) }
        for value in [executable ?? ""] + arguments + environment where value.utf8.contains(0) {
            throw LaunchError.invalidString("argument or environment entry '\(value.prefix(40))'")
        }
        let strings = CStringArena()
        let argv = strings.array(executable.map { [$0] + arguments } ?? [])
        let envp = strings.array(environment)
        let uidMap = strings.string("\(getuid()) \(getuid()) 1\n")
        let gidMap = strings.string("\(getgid()) \(getgid()) 1\n")
        let values = capabilities.map(\.rawValue)
        let caps = values.withUnsafeBufferPointer { cnl_cap_new_with($0.baseAddress, $0.count) }
        guard let caps else { throw LaunchError.setup(SandboxSetupError(step: "prepare capabilities", code: errno)) }
        defer { cnl_cap_free(caps) }
        var failure = cnl_spawn_failure(step: 0, error: 0, index: -1)
        var pid: pid_t = 0
        let result = fds.withUnsafeBufferPointer { fdBuffer in
            values.withUnsafeBufferPointer { ambient in
                var spec = cnl_launch_spec(
                    path: executable.map { strings.string($0) }, argv: argv, envp: envp,
                    uid_map: uidMap, gid_map: gidMap,
                    fds: fdBuffer.baseAddress, fd_count: fdBuffer.count,
                    caps: caps, ambient: ambient.baseAddress, ambient_count: ambient.count,
                    unshare_flags: Int32(CNL_CLONE_NEWUSER | CNL_CLONE_NEWNET | CNL_CLONE_NEWNS),
                    parent_death_signal: SIGKILL)
                if let forkKeeping { return cnl_launch_fork(&spec, forkKeeping, &pid, &failure) }
                return cnl_launch(&spec, &pid, &failure)
            }
        }
        withExtendedLifetime(strings) {}
        if result == 2 { return 0 }
        if result < 0 { throw LaunchError.setup(SandboxSetupError(step: "clone", code: -result)) }
        if result > 0 {
            let step = SandboxSetupError.describe(failure)
            throw LaunchError.setup(SandboxSetupError(step: step, code: failure.error))
        }
        return pid
    }
}
