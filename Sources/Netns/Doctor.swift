#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import SystemCalls

/// What this machine supports for each of airlock's modes, with the fix where something
/// is missing. Examining changes nothing: probes run in children or in unnamed namespaces
/// that end with them.
package enum Doctor {
    /// One fact about the machine.
    package struct Check: Codable, Equatable, Sendable {
        /// A short name (`user namespaces`).
        package var name: String
        /// Whether it holds.
        package var ok: Bool
        /// What was found.
        package var detail: String
        /// What to do when it does not hold; nil when nothing is needed.
        package var fix: String?

        /// A check with every field.
        package init(name: String, ok: Bool, detail: String, fix: String? = nil) {
            self.name = name
            self.ok = ok
            self.detail = detail
            self.fix = fix
        }

        private enum CodingKeys: String, CodingKey { case name, ok, detail, fix }

        /// Every key always present (`fix` is `null` when nothing is needed), so scripts
        /// can rely on the shape (docs/configuration.md, "airlock doctor").
        package func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(ok, forKey: .ok)
            try container.encode(detail, forKey: .detail)
            try container.encode(fix, forKey: .fix)
        }
    }

    /// Whether one mode can run here.
    package struct Verdict: Codable, Equatable, Sendable {
        /// `run (rootless)`, `run (as root)`, `persistent (netns create, gateway serve)`.
        package var mode: String
        /// Whether it can run now.
        package var ready: Bool
        /// Why not, and what to do; empty when ready.
        package var missing: [String]
    }

    /// Everything `airlock doctor` reports.
    package struct Report: Codable, Equatable, Sendable {
        /// Each fact.
        package var checks: [Check]
        /// One verdict per mode.
        package var verdicts: [Verdict]
    }

    /// The facts that `examine` gathers, kept apart from the reasoning for tests.
    package struct Facts: Equatable, Sendable {
        package var uid: uid_t
        package var effective: [Capability]
        package var userNamespaceFailure: String?
        package var maxUserNamespaces: Int?
        package var unprivilegedUsernsClone: Int?
        package var apparmorRestrictsUserns: Int?
        package var rootlessLaunch: RootlessLaunchCheck?
        package var libmnl: String?
        package var libcap: String?
        package var kernel: String
        package var veth: (ok: Bool, detail: String)
        package var runNetns: (ok: Bool, detail: String)
        /// Whether the sandbox's seccomp filter builds and the kernel loads filters.
        package var seccomp: (ok: Bool, detail: String)
        /// Whether this is the host's initial user namespace (not `unshare -U`, a rootless
        /// container, a pod with user namespaces).
        package var initialUserNamespace: Bool
        /// The errno of the failed user namespace probe (`EPERM`, `ENOSPC`…).
        package var userNamespaceErrno: Int32?
        /// Whether this process runs inside a chroot (its root is not pid 1's root); nil
        /// when that cannot be told (pid 1's root is not readable).
        package var chrooted: Bool?
        /// This process's AppArmor confinement (`unconfined`, `airlock (unconfined)`); nil
        /// without AppArmor.
        package var apparmorLabel: String?
        /// The gateway daemon's user socket (`gateway serve --all --users GROUP`) when one
        /// is there; nil when there is none.
        package var userSocket: UserSocket?

        package static func == (lhs: Facts, rhs: Facts) -> Bool {
            lhs.uid == rhs.uid && lhs.effective == rhs.effective && lhs.userNamespaceFailure == rhs.userNamespaceFailure
                && lhs.maxUserNamespaces == rhs.maxUserNamespaces && lhs.apparmorRestrictsUserns == rhs.apparmorRestrictsUserns
                && lhs.kernel == rhs.kernel && lhs.veth == rhs.veth && lhs.runNetns == rhs.runNetns
                && lhs.libmnl == rhs.libmnl && lhs.libcap == rhs.libcap && lhs.rootlessLaunch == rhs.rootlessLaunch
                && lhs.unprivilegedUsernsClone == rhs.unprivilegedUsernsClone && lhs.seccomp == rhs.seccomp
                && lhs.initialUserNamespace == rhs.initialUserNamespace && lhs.userNamespaceErrno == rhs.userNamespaceErrno
                && lhs.chrooted == rhs.chrooted && lhs.apparmorLabel == rhs.apparmorLabel && lhs.userSocket == rhs.userSocket
        }

        /// Facts with every field given (for tests and `examine`).
        package init(
            uid: uid_t, effective: [Capability], userNamespaceFailure: String?, maxUserNamespaces: Int?,
            unprivilegedUsernsClone: Int?, apparmorRestrictsUserns: Int?, rootlessLaunch: RootlessLaunchCheck?,
            libmnl: String?, libcap: String?, kernel: String, veth: (ok: Bool, detail: String),
            runNetns: (ok: Bool, detail: String), seccomp: (ok: Bool, detail: String) = (true, "filters available"),
            initialUserNamespace: Bool = true, userNamespaceErrno: Int32? = nil, chrooted: Bool? = false,
            apparmorLabel: String? = nil
        ) {
            self.initialUserNamespace = initialUserNamespace
            self.userNamespaceErrno = userNamespaceErrno
            self.chrooted = chrooted
            self.apparmorLabel = apparmorLabel
            self.uid = uid
            self.effective = effective
            self.userNamespaceFailure = userNamespaceFailure
            self.maxUserNamespaces = maxUserNamespaces
            self.unprivilegedUsernsClone = unprivilegedUsernsClone
            self.apparmorRestrictsUserns = apparmorRestrictsUserns
            self.rootlessLaunch = rootlessLaunch
            self.libmnl = libmnl
            self.libcap = libcap
            self.kernel = kernel
            self.veth = veth
            self.runNetns = runNetns
            self.seccomp = seccomp
        }
    }

    /// The gateway daemon's user socket, as this caller finds it.
    package struct UserSocket: Equatable, Sendable {
        package enum State: Equatable, Sendable {
            /// A connection was accepted.
            case usable
            /// The socket's mode keeps this caller out (not in its group).
            case notInGroup
            /// Nothing listens (a daemon that was killed left it).
            case stale
        }

        package var path: String
        /// The socket's group, by name where it has one.
        package var group: String
        package var state: State

        package init(path: String, group: String, state: State) {
            self.path = path
            self.group = group
            self.state = state
        }

        /// The socket at `path` (a connection is tried and closed at once; the daemon
        /// takes an empty connection as nothing), or nil when there is none.
        static func examine(path: String) -> UserSocket? {
            var info = stat()
            guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else { return nil }
            let group = getgrgid(info.st_gid).map { String(cString: $0.pointee.gr_name) } ?? String(info.st_gid)
            guard let address = UnixSocketAddress.make(path) else { return nil }
            let fd = socket(AF_UNIX, CInt(SOCK_SEQPACKET.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return UserSocket(path: path, group: group, state: .stale) }
            defer { close(fd) }
            let connected = UnixSocketAddress.with(address) { connect(fd, $0, $1) }
            if connected == 0 { return UserSocket(path: path, group: group, state: .usable) }
            return UserSocket(path: path, group: group, state: errno == EACCES || errno == EPERM ? .notInGroup : .stale)
        }
    }

    /// What a child started by the rootless launcher found about itself.
    package struct RootlessLaunchCheck: Equatable, Sendable {
        /// Its uid inside the new user namespace.
        package var uid: uid_t
        /// Its effective capabilities there.
        package var effective: [Capability]
        /// The launch failure, when there was no child.
        package var failure: String?
        /// Whether the child could create a veth pair in a namespace of its own, and how it went.
        package var veth: (ok: Bool, detail: String)? = nil
        /// Whether the child could mount a fresh /proc (in a PID namespace of its own), as a
        /// sandbox does: 0, or the errno. nil when not reported.
        package var freshProc: Int32? = nil

        package static func == (lhs: RootlessLaunchCheck, rhs: RootlessLaunchCheck) -> Bool {
            lhs.uid == rhs.uid && lhs.effective == rhs.effective && lhs.failure == rhs.failure
                && lhs.veth?.ok == rhs.veth?.ok && lhs.veth?.detail == rhs.veth?.detail && lhs.freshProc == rhs.freshProc
        }
    }

    /// Why a user namespace may not mount a fresh /proc, and what to do (`SandboxSetupError`
    /// gives the same when a rootless run fails at that step).
    package static let freshProcReason = "parts of this /proc are mounted over (a container's masked paths), and a user namespace may not mount a /proc that shows more"
    package static let freshProcFix = "start the container with its /proc unmasked (podman run --security-opt unmask=ALL, docker run --security-opt systempaths=unconfined), or run airlock as the host's root"

    /// The capabilities root mode and persistent sandboxes need.
    package static let rootCapabilities: [Capability] = [.setgid, .setuid, .setpcap, .netBindService, .netAdmin, .sysAdmin]

    /// The files under /proc that `examine` reads, below `root` (empty for the machine's
    /// own; tests lay out a fake tree).
    package struct SystemFiles: Sendable {
        /// Prefixed to every path; "" reads the real files.
        package var root: String

        package init(root: String = "") {
            self.root = root
        }

        /// An integer file such as `/proc/sys/user/max_user_namespaces`; nil when absent.
        package func integer(_ path: String) -> Int? {
            Doctor.readInteger(root + path)
        }

        /// Whether this process's root differs from pid 1's (systemd's `running_in_chroot`
        /// test); nil when pid 1's root cannot be examined.
        package var chrooted: Bool? {
            var mine = stat(), init1 = stat()
            guard stat(root.isEmpty ? "/" : root + "/", &mine) == 0, stat(root + "/proc/1/root/", &init1) == 0 else { return nil }
            return mine.st_dev != init1.st_dev || mine.st_ino != init1.st_ino
        }

        /// This process's AppArmor label, without the trailing newline; nil without AppArmor.
        package var apparmorLabel: String? {
            for path in ["/proc/self/attr/apparmor/current", "/proc/self/attr/current"] {
                guard let text = Doctor.readText(root + path, limit: 4096) else { continue }
                let label = text.trimmingWhitespace().replacingNUL()
                if !label.isEmpty { return label }
            }
            return nil
        }
    }

    /// Gathers the facts of this machine. `launchSelf`, when given, is the argv of this
    /// program's child report (`airlock doctor --child-report`), started through the
    /// rootless launcher to see what a rootless sandbox builder would hold. `files` are
    /// the /proc files read (a fake tree in tests).
    /// - Parameter userSocket: where the gateway daemon's user socket would be.
    package static func examine(launchSelf: [String]? = nil, files: SystemFiles = SystemFiles(), userSocket: String? = nil) -> Facts {
        let uid = geteuid()
        let effective = CapabilitySets.capabilities(in: (try? Privileges.current().effective) ?? 0)
        let probe = RootlessLauncher.probe()
        var launch: RootlessLaunchCheck?
        if let launchSelf, probe == nil {
            launch = rootlessLaunchCheck(argv: launchSelf)
        }
        let root = effective.contains(.netAdmin) && effective.contains(.sysAdmin)
        // Without root, the rootless child tries veth inside its own user namespace.
        let veth = root ? vethSupport(root: true) : (launch?.veth ?? vethSupport(root: false))
        var facts = Facts(
            uid: uid, effective: effective,
            userNamespaceFailure: probe.map { $0.description },
            maxUserNamespaces: files.integer("/proc/sys/user/max_user_namespaces"),
            unprivilegedUsernsClone: files.integer("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmorRestrictsUserns: files.integer("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            rootlessLaunch: launch,
            // A release binary carries libcap (Package.swift, `lightStartLinking`): no shared
            // library to find, and nothing to install.
            libmnl: loadedLibrary("libmnl.so"), libcap: loadedLibrary("libcap.so") ?? "linked into airlock",
            kernel: kernelRelease(),
            veth: veth,
            runNetns: runNetnsState(),
            seccomp: seccompState(),
            initialUserNamespace: UserNamespace.isInitial(),
            userNamespaceErrno: probe?.code,
            chrooted: files.chrooted,
            apparmorLabel: files.apparmorLabel)
        facts.userSocket = userSocket.flatMap(UserSocket.examine(path:))
        return facts
    }

    /// The checks and verdicts for `facts`.
    package static func report(_ facts: Facts) -> Report {
        var checks: [Check] = []
        let isRoot = facts.uid == 0 && facts.initialUserNamespace
        let nestedRoot = facts.uid == 0 && !facts.initialUserNamespace
        checks.append(Check(
            name: "root", ok: isRoot,
            detail: isRoot ? "running as root"
                : nestedRoot ? "uid 0 of a user namespace that is not the host's (unshare -U, a rootless container): run takes the rootless path"
                : "running as uid \(facts.uid)",
            fix: isRoot ? nil
                : nestedRoot ? "run airlock as the host's root for root mode and persistent sandboxes; rootless mode needs no root"
                : "run with sudo for root mode and persistent sandboxes; rootless mode needs no root"))
        // One line per capability root mode needs. Capabilities held in a nested user
        // namespace do not reach the host's namespaces.
        let missingRootCaps = nestedRoot ? rootCapabilities : Privileges.missing(rootCapabilities, effective: Set(facts.effective))
        for capability in rootCapabilities {
            let held = facts.effective.contains(capability)
            let ok = !missingRootCaps.contains(capability)
            checks.append(Check(
                name: capability.description, ok: ok,
                detail: ok ? "effective" : held ? "effective in a nested user namespace only" : "not effective",
                fix: ok ? nil : nestedRoot ? "run airlock as the host's root (root mode and persistent sandboxes need \(capability))"
                    : "run with sudo (root mode and persistent sandboxes need \(capability))"))
        }
        if facts.chrooted == true {
            checks.append(Check(
                name: "chroot", ok: false,
                detail: "this process runs inside a chroot (its root is not pid 1's root); the kernel refuses new user namespaces there",
                fix: chrootFix))
        }

        let usernsFix = userNamespaceFix(facts)
        checks.append(Check(
            name: "user namespaces", ok: facts.userNamespaceFailure == nil,
            detail: facts.userNamespaceFailure.map { "cannot create one: \($0)" } ?? "an unprivileged user namespace with the caller's ids mapped can be created",
            fix: facts.userNamespaceFailure == nil ? nil : usernsFix))
        if let max = facts.maxUserNamespaces {
            let exhausted = max > 0 && facts.userNamespaceErrno == ENOSPC && facts.chrooted != true
            checks.append(Check(
                name: "user.max_user_namespaces", ok: max > 0 && !exhausted,
                detail: exhausted ? "\(max), all in use (creating one failed with ENOSPC)" : String(max),
                fix: max == 0 ? "sysctl -w user.max_user_namespaces=15000"
                    : exhausted ? "end unused user namespaces, or raise the limit: sysctl -w user.max_user_namespaces=\(max * 2)" : nil))
        }
        if let clone = facts.unprivilegedUsernsClone {
            checks.append(Check(
                name: "kernel.unprivileged_userns_clone", ok: clone == 1, detail: String(clone),
                fix: clone == 1 ? nil : "sysctl -w kernel.unprivileged_userns_clone=1"))
        }
        if let apparmor = facts.apparmorRestrictsUserns {
            // Restricted, but this binary's profile (`userns,`) lets it create them: fine.
            let allowedByProfile = apparmor != 0 && facts.userNamespaceFailure == nil
            let label = facts.apparmorLabel.map { ", this process confined as \($0)" } ?? ""
            checks.append(Check(
                name: "kernel.apparmor_restrict_unprivileged_userns", ok: apparmor == 0 || allowedByProfile,
                detail: apparmor == 0 ? "0 (not restricted)"
                    : allowedByProfile ? "\(apparmor) (restricted; allowed for airlock by its AppArmor profile\(label))"
                    : "\(apparmor) (unprivileged user namespaces restricted by AppArmor\(label))",
                fix: apparmor == 0 || allowedByProfile ? nil : apparmorFix))
        }
        if let launch = facts.rootlessLaunch {
            let missing = Privileges.missing(RootlessLauncher.sandboxBuilderCapabilities, effective: Set(launch.effective))
            let ok = launch.failure == nil && missing.isEmpty
            let detail: String
            if let failure = launch.failure {
                detail = failure
            } else {
                detail = "child runs as uid \(launch.uid) with \(launch.effective.map(\.description).joined(separator: ", ")) in its namespace"
            }
            checks.append(Check(name: "rootless launch", ok: ok, detail: detail, fix: ok ? nil : usernsFix))
            if let proc = launch.freshProc {
                checks.append(Check(
                    name: "fresh /proc", ok: proc == 0,
                    detail: proc == 0 ? "a sandbox's own /proc can be mounted (in a user namespace)"
                        : "mounting a sandbox's own /proc fails (\(String(cString: strerror(proc)))): \(freshProcReason)",
                    fix: proc == 0 ? nil : freshProcFix))
            }
        }
        checks.append(Check(name: "libmnl", ok: facts.libmnl != nil, detail: facts.libmnl ?? "not loaded", fix: facts.libmnl == nil ? "apt-get install libmnl0" : nil))
        checks.append(Check(
            name: "libcap", ok: facts.libcap != nil,
            detail: (facts.libcap ?? "not loaded") + " (built against \(String(cString: cnl_libcap_version())))",
            fix: facts.libcap == nil ? "apt-get install libcap2" : nil))
        checks.append(Check(name: "kernel", ok: true, detail: facts.kernel))
        checks.append(Check(name: "veth", ok: facts.veth.ok, detail: facts.veth.detail, fix: facts.veth.ok ? nil : "modprobe veth (or a kernel with CONFIG_VETH)"))
        checks.append(Check(
            name: "seccomp", ok: facts.seccomp.ok, detail: facts.seccomp.detail,
            fix: facts.seccomp.ok ? nil : "a kernel with CONFIG_SECCOMP_FILTER, and apt-get install libseccomp2"))
        checks.append(Check(name: "/run/netns", ok: facts.runNetns.ok, detail: facts.runNetns.detail, fix: facts.runNetns.ok ? nil : "run as root; /run must be writable"))

        var rootless: [String] = []
        if let failure = facts.userNamespaceFailure { rootless.append("no unprivileged user namespaces (\(failure)); fix: \(usernsFix)") }
        if let launch = facts.rootlessLaunch {
            if let failure = launch.failure { rootless.append("rootless launch failed: \(failure)") }
            let missing = Privileges.missing(RootlessLauncher.sandboxBuilderCapabilities, effective: Set(launch.effective))
            if launch.failure == nil && !missing.isEmpty {
                rootless.append("the launched child lacks \(missing.map(\.description).joined(separator: ", "))")
            }
            if let proc = launch.freshProc, proc != 0 {
                rootless.append("no fresh /proc for the sandbox (\(String(cString: strerror(proc)))): \(freshProcReason); fix: \(freshProcFix)")
            }
        }
        if facts.libmnl == nil { rootless.append("libmnl is not loaded; fix: apt-get install libmnl0") }
        if !facts.veth.ok { rootless.append("veth is not available; fix: modprobe veth") }
        if !facts.seccomp.ok { rootless.append("seccomp: \(facts.seccomp.detail); fix: a kernel with CONFIG_SECCOMP_FILTER") }

        var asRoot: [String] = []
        if nestedRoot {
            asRoot.append("uid 0 here is the root of a nested user namespace, not the host's; fix: run airlock as the host's root for this mode (rootless mode works here)")
        } else if !missingRootCaps.isEmpty {
            asRoot.append("needs \(missingRootCaps.map(\.description).joined(separator: ", ")); fix: run with sudo")
        }
        if facts.libmnl == nil { asRoot.append("libmnl is not loaded; fix: apt-get install libmnl0") }
        if !facts.veth.ok { asRoot.append("veth is not available; fix: modprobe veth") }
        if !facts.seccomp.ok { asRoot.append("seccomp: \(facts.seccomp.detail); fix: a kernel with CONFIG_SECCOMP_FILTER") }

        var persistent = asRoot
        if !facts.runNetns.ok { persistent.append("/run/netns: \(facts.runNetns.detail)") }

        var verdicts = [
            Verdict(mode: "run (rootless)", ready: rootless.isEmpty, missing: rootless),
            Verdict(mode: "run (as root)", ready: asRoot.isEmpty, missing: asRoot),
            Verdict(mode: "persistent (netns create, gateway serve)", ready: persistent.isEmpty, missing: persistent),
        ]
        // Only where a daemon offers sandboxes to users: the mode `run` falls back to.
        if let socket = facts.userSocket {
            let (ok, detail, fix): (Bool, String, String?) = switch socket.state {
            case .usable: (true, "\(socket.path) (group \(socket.group)): a gateway daemon makes sandboxes for its members", nil)
            case .notInGroup: (false, "\(socket.path) (group \(socket.group)): not open to this account",
                               "ask an admin to add you to group \(socket.group), then log in again")
            case .stale: (false, "\(socket.path): nothing listens (left by a daemon that stopped)",
                          "an admin starts the daemon: airlock gateway serve --all --users \(socket.group)")
            }
            checks.append(Check(name: "user socket", ok: ok, detail: detail, fix: fix))
            var delegated: [String] = []
            if !ok { delegated.append("\(detail); fix: \(fix ?? "")") }
            if isRoot { delegated.append("as root, run builds the sandbox itself (the daemon runs commands as their caller, never root)") }
            verdicts.append(Verdict(mode: "run (through the gateway daemon)", ready: delegated.isEmpty, missing: delegated))
        }
        return Report(checks: checks, verdicts: verdicts)
    }

    /// `none`, `all 41`, or the names of the capabilities.
    static func describe(_ capabilities: [Capability]) -> String {
        if capabilities.isEmpty { return "none effective" }
        let last = cnl_cap_last_cap()
        if last >= 0 && capabilities.count == Int(last) + 1 { return "all \(capabilities.count) effective" }
        return capabilities.map(\.description).joined(separator: ", ")
    }

    /// The Ubuntu 24.04 note: AppArmor restricts unprivileged user namespaces; the package
    /// ships a profile for the installed binary that allows them.
    package static let apparmorFix =
        "AppArmor restricts unprivileged user namespaces (Ubuntu 24.04 and later): load the profile the package installs, "
        + "sudo apparmor_parser -r /etc/apparmor.d/airlock (a binary elsewhere than /usr/bin/airlock needs the profile's path changed), "
        + "or allow them for everyone: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"

    /// Inside a chroot the kernel refuses new user namespaces (EPERM), whatever the sysctls say.
    package static let chrootFix =
        "run airlock outside the chroot: on the host, or in a container with a mount namespace of its own (systemd-nspawn, podman, docker) instead of chroot; as root, root mode works here"

    /// The most specific fix for missing user namespaces: the switch that is off, else
    /// the cause the probe's error and the process's situation point to. Never advises a
    /// sysctl that already allows them.
    package static func userNamespaceFix(_ facts: Facts) -> String {
        if let apparmor = facts.apparmorRestrictsUserns, apparmor != 0 { return apparmorFix }
        if let clone = facts.unprivilegedUsernsClone, clone != 1 { return "sysctl -w kernel.unprivileged_userns_clone=1" }
        if let max = facts.maxUserNamespaces, max == 0 { return "sysctl -w user.max_user_namespaces=15000" }
        if facts.chrooted == true { return chrootFix }
        if facts.userNamespaceErrno == ENOSPC {
            let limit = facts.maxUserNamespaces.map { "sysctl -w user.max_user_namespaces=\($0 * 2)" } ?? "raise user.max_user_namespaces"
            return "the user namespace limit is reached (or nesting is 32 deep): end unused ones, or \(limit)"
        }
        if facts.userNamespaceErrno == EPERM {
            return "the kernel refused although the sysctls allow it: a seccomp filter or security module of the container this runs in blocks unshare(CLONE_NEWUSER) (Docker's default profile does); allow it for this container, or run airlock as root"
        }
        let reason = facts.userNamespaceErrno.map { String(cString: strerror($0)) } ?? "unknown"
        return "creating a user namespace failed (\(reason)) although the sysctls allow it; run airlock as root"
    }

    /// Writes the child report to `fd`: `uid=N eff=HEX` of the calling process, then
    /// `veth=ok` or `veth=no`, then `proc=ERRNO` (0: a fresh /proc can be mounted), then
    /// the veth detail on a line of its own.
    package static func writeChildReport(to fd: Int32) {
        let effective = (try? Privileges.current().effective) ?? 0
        let veth = vethSupport(root: true)
        let proc = cnl_probe_fresh_proc()
        let line = "uid=\(getuid()) eff=\(String(effective, radix: 16)) veth=\(veth.ok ? "ok" : "no") proc=\(proc)\n\(veth.detail)\n"
        _ = line.withCString { write(fd, $0, strlen($0)) }
    }

    /// Parses a child report line.
    package static func parseChildReport(_ text: String) -> RootlessLaunchCheck? {
        var uid: uid_t?
        var effective: UInt64?
        var vethOK: Bool?
        var freshProc: Int32?
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for field in (lines.first ?? "").split(separator: " ") {
            if field.hasPrefix("proc=") { freshProc = Int32(field.dropFirst(5)) }
            if field.hasPrefix("uid=") { uid = uid_t(field.dropFirst(4)) }
            if field.hasPrefix("eff=") { effective = UInt64(field.dropFirst(4), radix: 16) }
            if field.hasPrefix("veth=") { vethOK = field.dropFirst(5) == "ok" }
        }
        guard let uid, let effective else { return nil }
        var check = RootlessLaunchCheck(uid: uid, effective: CapabilitySets.capabilities(in: effective), failure: nil, freshProc: freshProc)
        if let vethOK { check.veth = (vethOK, lines.count > 1 ? String(lines[1]) + " (in a user namespace)" : "") }
        return check
    }

    /// Starts `argv` through the rootless launcher with a pipe as fd 3 and reads its report.
    static func rootlessLaunchCheck(argv: [String]) -> RootlessLaunchCheck {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return RootlessLaunchCheck(uid: 0, effective: [], failure: "pipe: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        defer { close(fds[0]) }
        let pid: pid_t
        do {
            pid = try RootlessLauncher.start(executable: argv[0], arguments: Array(argv.dropFirst()), environment: ["PATH=/usr/bin:/bin"], passing: [fds[1]])
        } catch {
            close(fds[1])
            return RootlessLaunchCheck(uid: 0, effective: [], failure: String(describing: error))
        }
        close(fds[1])
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 256)
        while text.count < 4096 {
            let n = retryingInterrupted { read(fds[0], &buffer, buffer.count) }
            if n <= 0 { break }
            text += String(decoding: buffer.prefix(n), as: UTF8.self)
        }
        var status: Int32 = 0
        _ = retryingInterrupted { waitpid(pid, &status, 0) }
        return parseChildReport(text) ?? RootlessLaunchCheck(uid: 0, effective: [], failure: "the launched child reported nothing (\(ExitStatus(waitStatus: status)))")
    }

    /// Whether the sandbox's filter builds (libseccomp) and the kernel takes filters.
    static func seccompState() -> (ok: Bool, detail: String) {
        do {
            let filter = try SeccompFilter(allowNestedNamespaces: false)
            return (true, "filters available (\(filter.count) BPF instructions, libseccomp)")
        } catch {
            return (false, String(describing: error))
        }
    }

    static func readInteger(_ path: String) -> Int? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return nil }
        return Int(String(decoding: buffer.prefix(n), as: UTF8.self).trimmingWhitespace())
    }

    /// The file name of a loaded shared library whose name starts with `prefix`
    /// (`libcap.so.2.66`), from /proc/self/maps.
    static func loadedLibrary(_ prefix: String) -> String? {
        guard let maps = readText("/proc/self/maps", limit: 1 << 20) else { return nil }
        for line in maps.split(separator: "\n") {
            guard let path = line.split(separator: " ", omittingEmptySubsequences: true).last, path.hasPrefix("/") else { continue }
            let file = path.split(separator: "/").last.map(String.init) ?? ""
            if file.hasPrefix(prefix) { return file }
        }
        return nil
    }

    static func kernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: name.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }

    /// veth as a loaded or built-in module, else (as root) by making a pair in an unnamed
    /// namespace that ends at once.
    static func vethSupport(root: Bool) -> (ok: Bool, detail: String) {
        var info = stat()
        if stat("/sys/module/veth", &info) == 0 { return (true, "veth module loaded") }
        let release = kernelRelease()
        if let builtin = readText("/lib/modules/\(release)/modules.builtin", limit: 1 << 22), builtin.contains("/veth.ko") {
            return (true, "veth built into the kernel")
        }
        if root {
            do {
                let namespace = try NetworkNamespace.createUnnamed()
                let fd = namespace.descriptor.rawValue
                try namespace.withNamespace {
                    let socket = try RouteSocket()
                    let a = try InterfaceName("airlock-probe0"), b = try InterfaceName("airlock-probe1")
                    try socket.perform { seq, port in
                        try NetlinkRequest.createVeth(name: a, namespaceFD: fd, peerName: b, peerNamespaceFD: fd, sequence: seq, portID: port)
                    }
                }
                return (true, "a veth pair can be created")
            } catch {
                return (false, "creating a veth pair failed: \(error)")
            }
        }
        if let modules = readText("/lib/modules/\(release)/modules.dep", limit: 1 << 24), modules.contains("/veth.ko") {
            return (true, "veth available as a module")
        }
        return (false, "not found as a module (run `airlock doctor` as root to try creating a pair)")
    }

    static func runNetnsState() -> (ok: Bool, detail: String) {
        var info = stat()
        if stat("/run/netns", &info) == 0 {
            let writable = access("/run/netns", W_OK) == 0
            return (writable, writable ? "exists and is writable" : "exists but is not writable by this user")
        }
        let creatable = access("/run", W_OK) == 0
        return (creatable, creatable ? "absent; airlock creates it" : "absent and /run is not writable by this user")
    }

    /// The text of `path`, at most about `limit` bytes; nil when it cannot be opened.
    static func readText(_ path: String, limit: Int) -> String? {
        (try? fileContents(path, limit: limit, truncating: true)).map { String(decoding: $0, as: UTF8.self) }
    }
}

extension String {
    fileprivate func replacingNUL() -> String {
        String(unicodeScalars.map { $0 == "\0" ? " " : Character($0) }).trimmingWhitespace()
    }

    fileprivate func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" { s.removeLast() }
        return String(s)
    }
}
