#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import Dispatch
import Gateway
import GatewayCore
import NIOConcurrencyHelpers
import Netns
import SystemCalls

/// The gateway daemon's user socket (`airlock gateway serve --all --users GROUP`): members
/// of GROUP make, use and destroy sandboxes without root, where user namespaces are blocked
/// (AppArmor's restriction on Ubuntu 24.04, hardened hosts) and `airlock run`'s rootless
/// mode is unavailable.
///
/// A helper process forked before the daemon drops its privileges, and kept uid 0 (making
/// a sandbox needs netlink and namespaces, running a command in it needs `setns`, mounts
/// and `setresuid`), with only the capabilities that work needs (`capabilities`), no_new_privs.
/// It holds the listening socket (`UserRequest.socketPath`, root:GROUP 0660,
/// `SOCK_SEQPACKET`), the audit log and nothing else of the daemon's; it is not dumpable,
/// and dies with the daemon (`PR_SET_PDEATHSIG`). Each connection gets a thread (at most
/// `maxConnections`); the caller's uid, gid, pid and groups come from the kernel
/// (`SO_PEERCRED`, `SO_PEERGROUPS`), never from the request, and `UserAccess` decides:
///
/// - only root and members of GROUP are served at all;
/// - a sandbox made here belongs to the uid that made it (`/run/airlock/NAME/owner`); only
///   that uid, and root, may use it, ask its gateway for sessions and secrets, or destroy it;
///   sandboxes made by `netns create` are nobody's and out of reach;
/// - commands run as the caller (its uid, its primary group, its supplementary groups but
///   the socket's group and root's), never as root, in the sandbox `netns exec` builds;
/// - every request, refused ones too, is audited (`user_request`) with the caller's uid and pid.
///
/// Making a sandbox goes to the daemon itself for serving (its socket, as root); the
/// policy a caller hands in is parsed first (a clear error), then kept root-owned at
/// `/run/airlock/NAME/policy`, readable by the daemon's account only.
final class UserBroker: Sendable {
    /// Connections served at once; more are answered with a refusal and closed.
    static let maxConnections = 64
    /// Connections one account (other than root) may hold at once, so that no member of
    /// the group can take every connection from the others.
    static let maxConnectionsPerCaller = 16

    struct Configuration: Sendable {
        /// The group whose members are served.
        var group: gid_t
        var groupName: String
        /// The group of the account the daemon serves as: user policies are root:this, 0640.
        var daemonGroup: gid_t
        /// The git hosts the daemon serves (for the session's git rewrites in `exec`).
        var gitHosts: [String]
        var audit: AuditLog
    }

    /// The broker's pid and the daemon's end of the pipe whose closing tells it to exit
    /// (the daemon, no longer root, cannot signal it).
    private let state: NIOLockedValueBox<(pid: pid_t, lifeline: CInt)?>

    private init(pid: pid_t, lifeline: CInt) {
        state = NIOLockedValueBox((pid, lifeline))
    }

    /// Binds the user socket: root:`group`, mode 0660, `SOCK_SEQPACKET`. A stale socket at
    /// the path is replaced; any other file there is an error.
    /// - Throws: `ControlServerError` naming the path and the system's reason.
    static func bindSocket(group: gid_t, path: String = UserRequest.socketPath) throws -> CInt {
        try ControlSocket.listening(at: path, type: CInt(SOCK_SEQPACKET.rawValue), group: group, mode: 0o660, backlog: 64, name: "the user socket")
    }

    /// The capabilities the broker keeps: making sandboxes (`CAP_NET_ADMIN`,
    /// `CAP_SYS_ADMIN`), running commands in them as their caller (`CAP_SETUID`,
    /// `CAP_SETGID`, `CAP_SETPCAP` for the command's empty bounding set, `CAP_KILL` to
    /// forward signals to an init that runs as the caller), the records it writes
    /// (`CAP_CHOWN`, `CAP_FOWNER`) and the masks it mounts over paths in callers' homes
    /// (`CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`). Nothing else stays in its bounding set.
    static let capabilities: [CInt] = [12 /* CAP_NET_ADMIN */, 21 /* CAP_SYS_ADMIN */, 7 /* CAP_SETUID */, 6 /* CAP_SETGID */,
                                       8 /* CAP_SETPCAP */, 5 /* CAP_KILL */, 0 /* CAP_CHOWN */, 3 /* CAP_FOWNER */,
                                       1 /* CAP_DAC_OVERRIDE */, 2 /* CAP_DAC_READ_SEARCH */]

    /// Forks the broker serving `listening` (which it takes; the daemon closes its copy);
    /// returns once it has given up every capability but `capabilities`.
    /// - Throws: `SystemCallError` naming the step that failed.
    /// - Requires: root, and one thread (fork copies only the caller).
    static func start(listening: CInt, configuration: Configuration) throws -> UserBroker {
        var lifeline: [CInt] = [-1, -1]
        var status: [CInt] = [-1, -1]
        // One thread here: no other could fork between pipe and FD_CLOEXEC.
        guard pipe(&lifeline) == 0 else { throw SystemCallError.last("pipe for the user-socket broker") }
        guard pipe(&status) == 0 else {
            let error = SystemCallError.last("pipe for the user-socket broker")
            lifeline.forEach { close($0) }
            throw error
        }
        for fd in lifeline + status { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let parent = getpid()
        let child = fork()
        if child < 0 {
            let error = SystemCallError.last("fork the user-socket broker")
            (lifeline + status).forEach { close($0) }
            throw error
        }
        if child == 0 {
            ShutdownSignals.clearInChild()
            close(lifeline[1])
            close(status[0])
            var result: CInt = 0
            if cnl_set_parent_death_signal(SIGKILL) < 0 { result = errno } else if getppid() != parent { result = ESRCH }
            if result == 0 {
                // Not dumpable and no_new_privs too; on this, the only thread, before any other starts.
                let kept = capabilities.withUnsafeBufferPointer { cnl_keep_only_caps($0.baseAddress, $0.count) }
                if kept < 0 { result = -kept }
            }
            let sent = withUnsafeBytes(of: &result) { write(status[1], $0.baseAddress, $0.count) }
            close(status[1])
            if result != 0 || sent != MemoryLayout<CInt>.size { _exit(125) }
            // The daemon's handlers (SIGTERM, SIGINT for its service group) are not ours.
            signal(SIGTERM, SIG_DFL)
            signal(SIGINT, SIG_DFL)
            signal(SIGPIPE, SIG_IGN)
            removeLeftRuns()
            serve(listening: listening, lifeline: lifeline[0], configuration: configuration)
        }
        close(listening)
        close(lifeline[0])
        close(status[1])
        var result: CInt = 0
        let received = withUnsafeMutableBytes(of: &result) { buffer in retryingInterrupted { read(status[0], buffer.baseAddress, buffer.count) } }
        close(status[0])
        guard received == MemoryLayout<CInt>.size, result == 0 else {
            close(lifeline[1])
            var ignored: Int32 = 0
            while waitpid(child, &ignored, 0) < 0 && errno == EINTR {}
            throw SystemCallError("start the user-socket broker", code: received == MemoryLayout<CInt>.size ? result : ECHILD)
        }
        return UserBroker(pid: child, lifeline: lifeline[1])
    }

    /// Ends the broker (and with it every command it runs) and reaps it. Idempotent.
    func stop() {
        guard let stopped = state.withLockedValue({ state -> (pid: pid_t, lifeline: CInt)? in
            defer { state = nil }
            return state
        }) else { return }
        close(stopped.lifeline)
        var status: Int32 = 0
        while waitpid(stopped.pid, &status, 0) < 0 && errno == EINTR {}
    }

    /// Removes the sandboxes of runs through the daemon (`exec` with `ephemeral`) that a
    /// daemon which died left behind: their commands died with it, and nothing else would
    /// remove them (they would count against their owner's sandboxes). The daemon does not
    /// serve them at start (`isLeftRun`).
    private static func removeLeftRuns() {
        let store = PersistentSandbox()
        for summary in store.list() where UserBrokerConnection.isLeftRun(summary.name) {
            do {
                try store.destroy(summary.name)
                printNotice("airlock: removed \(summary.name.rawValue), left by a run through the daemon that ended with it")
            } catch {
                printNotice("airlock: cannot remove \(summary.name.rawValue), left by a run through the daemon: \(error)")
            }
        }
    }

    private static func serve(listening: CInt, lifeline: CInt, configuration: Configuration) -> Never {
        // Connections open: all, and per caller uid.
        let active = NIOLockedValueBox((all: 0, byCaller: [UInt32: Int]()))
        while true {
            var watched = [pollfd(fd: listening, events: Int16(POLLIN), revents: 0), pollfd(fd: lifeline, events: Int16(POLLIN), revents: 0)]
            if poll(&watched, 2, -1) < 0 { continue }
            // The daemon closed its end or died: every command this broker runs ends with it
            // (their inits die with their threads).
            if watched[1].revents != 0 {
                unlink(UserRequest.socketPath)
                _exit(0)
            }
            guard watched[0].revents != 0 else { continue }
            let fd = accept(listening, nil, nil)
            if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                // Out of descriptors: let connections end before taking more.
                usleep(100_000)
                continue
            }
            let peer = UserPeer.of(fd)
            let caller = peer?.uid ?? UInt32.max
            let refusal = active.withLockedValue { active -> String? in
                guard active.all < maxConnections else {
                    return "the gateway daemon is serving \(maxConnections) user connections; try again shortly"
                }
                let mine = active.byCaller[caller, default: 0]
                guard caller == 0 || mine < maxConnectionsPerCaller else {
                    return "you have \(mine) connections open to the gateway daemon's user socket, the most one account may hold; end some first"
                }
                active.all += 1
                active.byCaller[caller] = mine + 1
                return nil
            }
            let connection = UserBrokerConnection(fd: fd, peer: peer, configuration: configuration)
            if let refusal {
                connection.refuse(refusal)
                continue
            }
            let done = {
                active.withLockedValue { active in
                    active.all -= 1
                    let left = active.byCaller[caller, default: 1] - 1
                    active.byCaller[caller] = left > 0 ? left : nil
                }
            }
            let started = DetachedThread.start {
                connection.run()
                done()
            }
            if !started {
                done()
                connection.refuse("the gateway daemon cannot start a thread for this connection; try again shortly")
            }
        }
    }
}

/// The caller of one connection, as the kernel reports it.
struct UserPeer: Equatable {
    var uid: UInt32
    var gid: UInt32
    var pid: Int32
    /// Supplementary groups at connect time.
    var groups: [UInt32]

    /// `SO_PEERCRED` and `SO_PEERGROUPS` of a connected Unix socket; nil when unreadable.
    static func of(_ fd: CInt) -> UserPeer? {
        var credentials = PeerCredentials()
        var length = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else { return nil }
        var groups = [gid_t](repeating: 0, count: 256)
        var size = socklen_t(groups.count * MemoryLayout<gid_t>.size)
        // SO_PEERGROUPS (59): the peer's supplementary groups; ERANGE means more than fit.
        guard groups.withUnsafeMutableBytes({ getsockopt(fd, SOL_SOCKET, 59, $0.baseAddress, &size) }) == 0 else { return nil }
        let count = Int(size) / MemoryLayout<gid_t>.size
        return UserPeer(uid: credentials.uid, gid: credentials.gid, pid: credentials.pid, groups: Array(groups.prefix(count)))
    }
}

/// One connection to the user socket: one request, or one `exec` and its signals.
final class UserBrokerConnection: @unchecked Sendable {
    private let channel: DescriptorChannel
    private let configuration: UserBroker.Configuration
    /// The caller, as the kernel reported it at accept; nil when it could not be read.
    private let peer: UserPeer?
    private let store = PersistentSandbox()
    /// Creations one at a time: the per-account count and the name check hold.
    private static let creating = NIOLock()

    init(fd: CInt, peer: UserPeer?, configuration: UserBroker.Configuration) {
        channel = DescriptorChannel(adopting: fd)
        self.peer = peer
        self.configuration = configuration
    }

    /// Seconds a caller has to send its request once connected.
    static let requestTimeoutSeconds = 10

    private func setReceiveTimeout(seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        _ = setsockopt(channel.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Answers a connection the broker will not serve, and closes it.
    func refuse(_ reason: String) {
        try? channel.send((try? UserResponse.failure(reason).json()) ?? "")
        channel.close()
    }

    func run() {
        defer { channel.close() }
        guard let peer else {
            answer(.failure("permission denied: cannot read the caller's credentials"), op: nil, sandbox: nil)
            return
        }
        guard UserAccess.admits(uid: peer.uid, gid: peer.gid, groups: peer.groups, group: configuration.group) else {
            answer(.failure(UserAccess.refusal(uid: peer.uid, groupName: configuration.groupName)), op: nil, sandbox: nil)
            return
        }
        let message: (message: String, descriptors: [CInt])
        // A caller that connects and says nothing does not keep one of the connections.
        setReceiveTimeout(seconds: Self.requestTimeoutSeconds)
        do {
            guard let received = try channel.receive() else { return }
            message = received
        } catch {
            answer(.failure("no request within \(Self.requestTimeoutSeconds) s, or it could not be read (\(error))"), op: nil, sandbox: nil)
            return
        }
        // An exec's signals may come at any time.
        setReceiveTimeout(seconds: 0)
        var descriptors = message.descriptors
        defer { descriptors.forEach { close($0) } }
        let request: UserRequest
        do {
            request = try UserRequest(json: Array(message.message.utf8))
        } catch {
            answer(.failure(String(describing: error)), op: nil, sandbox: nil)
            return
        }
        let op = request.op, sandbox = request.sandbox
        do {
            switch request {
            case let .create(name, policy):
                try create(name, policy: policy)
                answer(.done, op: op, sandbox: sandbox)
            case let .control(name, line):
                answer(.control(try control(name, line: line)), op: op, sandbox: sandbox)
            case let .exec(name, argv, environment, options, session, ephemeral):
                guard descriptors.count == 3 else { throw CLIError("exec needs the caller's standard input, output and error") }
                let streams = descriptors
                descriptors = []
                try exec(name, argv: argv, environment: environment, options: options, session: session, ephemeral: ephemeral,
                         streams: streams)
            case .signal:
                throw CLIError("no command of yours runs on this connection")
            case let .destroy(name):
                try destroy(try owned(name))
                answer(.done, op: op, sandbox: sandbox)
            case .list:
                answer(.sandboxes(list()), op: op, sandbox: nil)
            }
        } catch {
            answer(.failure(String(describing: error)), op: op, sandbox: sandbox)
        }
    }

    /// Audits the request with the caller and answers it.
    private func answer(_ response: UserResponse, op: String?, sandbox: String?, audit: Bool = true) {
        if audit {
            var reason: String?
            if case let .failure(text) = response { reason = text }
            // A name that is not a sandbox name is not repeated into the log.
            let named = sandbox.flatMap { try? NamespaceName($0) }?.rawValue
            configuration.audit.record(AuditEvent(.userRequest, sandbox: named ?? "-", via: .control, reason: reason, ok: reason == nil,
                                                  op: op, uid: peer?.uid, pid: peer?.pid))
        }
        let text = (try? response.json()) ?? "{\"ok\":false,\"error\":\"cannot encode the answer\"}"
        try? channel.send(text)
    }

    // MARK: ownership

    /// The broker's records of a sandbox, root-owned files in its state directory (removed
    /// with it): `owner`, the uid that made it through this socket; `policy`, the policy its
    /// owner handed in; `ephemeral`, the mark of a sandbox that lives as long as one command
    /// (`airlock run` through the daemon).
    enum Record: String {
        case owner, policy, ephemeral

        func path(of name: NamespaceName) -> String { "\(PersistentSandbox().stateDirectory(name))/\(rawValue)" }
    }


    /// Whether `name` is a run's sandbox (marked by root) whose command is no longer
    /// running: at the daemon's start, every such one.
    static func isLeftRun(_ name: NamespaceName) -> Bool {
        var info = stat()
        return lstat(Record.ephemeral.path(of: name), &info) == 0 && info.st_uid == 0
    }

    /// The uid recorded as `name`'s owner; nil when it has none (or an unreadable one).
    static func owner(of name: NamespaceName) -> UInt32? {
        let fd = open(Record.owner.path(of: name), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        // Only a record root wrote counts.
        guard fstat(fd, &info) == 0, info.st_uid == 0, (info.st_mode & 0o022) == 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 16)
        let count = read(fd, &bytes, bytes.count)
        guard count > 0 else { return nil }
        return UInt32(String(decoding: bytes[0..<count], as: UTF8.self).trimmingWhitespaceAndNewlines())
    }

    /// `name` when the caller may use it (`UserAccess.mayUse`).
    /// - Throws: `CLIError` with `UserAccess.notYours`, for a name that is not a sandbox too.
    private func owned(_ rawName: String) throws -> NamespaceName {
        let name = try NamespaceName(rawName)
        guard let peer, UserAccess.mayUse(owner: Self.owner(of: name), caller: peer.uid) else {
            throw CLIError(UserAccess.notYours(name.rawValue))
        }
        return name
    }

    // MARK: requests

    private func create(_ rawName: String, policy: String?) throws {
        try Self.creating.withLock { try createLocked(rawName, policy: policy) }
    }

    private func createLocked(_ rawName: String, policy: String?) throws {
        guard let peer else { return }
        let name = try NamespaceName(rawName)
        if let policy {
            // Refused here with the parser's line, before anything is made.
            _ = try Policy.parse(policy, source: "the policy")
        }
        if peer.uid != 0 {
            let mine = list().count
            guard mine < UserAccess.maxSandboxesPerUser else {
                throw CLIError("you have \(mine) sandboxes, the most one account may hold; destroy one first (`airlock sandbox destroy NAME`)")
            }
        }
        let outcome = try store.create(name, topology: SandboxTopology())
        guard case .created = outcome else {
            throw CLIError("sandbox \(name.rawValue) exists already; choose another name")
        }
        do {
            try Self.writeRecord(Array("\(peer.uid)\n".utf8), to: Self.Record.owner.path(of: name), group: 0, mode: 0o644)
            var policyPath: String?
            if let policy {
                policyPath = Self.Record.policy.path(of: name)
                try Self.writeRecord(Array(policy.utf8), to: policyPath!, group: configuration.daemonGroup, mode: 0o640)
            }
            let response = try ControlClient.send(DaemonRequest.serve(sandbox: name.rawValue, policy: policyPath))
            if case let .failure(reason) = response { throw CLIError(reason) }
        } catch {
            _ = try? ControlClient.send(DaemonRequest.stop(sandbox: name.rawValue))
            _ = try? store.destroy(name)
            throw error
        }
    }

    /// Writes a small root-owned file whole (a new file: `O_EXCL`).
    private static func writeRecord(_ bytes: [UInt8], to path: String, group: gid_t, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw SystemCallError.last("create \(path)") }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw SystemCallError.last("write \(path)") }
        guard fchown(fd, 0, group) == 0, fchmod(fd, mode) == 0 else { throw SystemCallError.last("set the owner of \(path)") }
    }

    private func control(_ rawName: String, line: String) throws -> String {
        let name = try owned(rawName)
        let request = try ControlRequest(jsonLine: Array(line.utf8))
        let response = try ControlClient.send(request, path: ControlSocket.path(sandbox: name.rawValue), sandbox: name.rawValue)
        return try response.jsonLine()
    }

    private func destroy(_ name: NamespaceName) throws {
        if case let .failure(reason) = try ControlClient.send(DaemonRequest.stop(sandbox: name.rawValue)) {
            throw CLIError(reason)
        }
        try store.destroy(name)
    }

    /// The caller's sandboxes (root: every sandbox with an owner).
    private func list() -> [UserSandbox] {
        guard let peer else { return [] }
        return store.list().compactMap { summary -> UserSandbox? in
            guard let owner = Self.owner(of: summary.name), peer.uid == 0 || owner == peer.uid else { return nil }
            return UserSandbox(sandbox: summary.name.rawValue, owner: owner, address: summary.gatewayAddress.map { $0.address.description } ?? "-")
        }
    }

    /// Runs the command in the caller's sandbox, as the caller; answers `started`, forwards
    /// the caller's signals while it runs, answers `exited`. When the caller goes away the
    /// command is killed. With `ephemeral`, the sandbox is destroyed afterwards.
    private func exec(_ rawName: String, argv: [String], environment: [String: String], options: [String], session: String?,
                      ephemeral: Bool, streams: [CInt]) throws {
        defer { streams.forEach { close($0) } }
        guard let peer else { return }
        let name = try owned(rawName)
        defer { if ephemeral { try? destroy(name) } }
        // Marked first: if the daemon dies while the command runs, its next start removes it.
        if ephemeral { try? Self.writeRecord([], to: Self.Record.ephemeral.path(of: name), group: 0, mode: 0o644) }
        guard peer.uid != 0 else {
            throw CLIError("root runs commands in sandboxes with `airlock netns exec NAME --user USER -- CMD`")
        }
        var user = try Users.lookup(uid: peer.uid)
        user.gid = peer.gid
        // The caller's groups as the kernel saw them, less the socket's group and root's.
        user.groups = [peer.gid] + peer.groups.filter { $0 != configuration.group && $0 != 0 && $0 != peer.gid }
        try user.refuseHostRoot()
        let sandboxOptions: SandboxOptions
        do {
            sandboxOptions = try SandboxOptions.parse(options)
        } catch {
            throw CLIError(SandboxOptions.message(for: error))
        }
        guard let workingDirectory = sandboxOptions.cwd, workingDirectory.hasPrefix("/") else {
            throw CLIError("exec needs --cwd with an absolute path (the caller's directory)")
        }
        let state = try store.load(name: name)
        var notices: [String] = []
        var spec = try NetnsExec.spec(
            argv: argv, inherited: environment, user: user, options: sandboxOptions, workingDirectory: workingDirectory,
            sandbox: name.rawValue, gateway: state.topology.gatewayAddress.address.description, session: session,
            gitHosts: configuration.gitHosts, notice: { notices.append($0) })
        spec.standardStreams = (streams[0], streams[1], streams[2])
        // Spawned from this thread, which waits for it: the init dies with the thread.
        let namespace = try NetworkNamespace.open(path: state.sandboxPin)
        // Still the caller's once open: NAME was not destroyed and made again by another
        // account since the check above.
        guard UserAccess.mayUse(owner: Self.owner(of: name), caller: peer.uid) else {
            try? namespace.close()
            throw CLIError(UserAccess.notYours(name.rawValue))
        }
        spec.networkNamespace = namespace.descriptor.rawValue
        let spawned = Result { try SandboxProcess.spawn(spec) }
        // The init has joined the namespace by now.
        try? namespace.close()
        let process = try spawned.get()
        answer(.started(notices: notices), op: "exec", sandbox: name.rawValue)
        let ended = NIOLockedValueBox(false)
        let pid = process.pid
        let channel = self.channel
        // The caller's signals, and its going away (which kills the command).
        let watcherDone = DispatchSemaphore(value: 0)
        let watcher = DetachedThread.start {
            defer { watcherDone.signal() }
            while true {
                let message = try? channel.receive()
                guard let message else {
                    ended.withLockedValue { if !$0 { kill(pid, SIGKILL) } }
                    return
                }
                message.descriptors.forEach { close($0) }
                guard case let .signal(number)? = try? UserRequest(json: Array(message.message.utf8)) else { continue }
                ended.withLockedValue { if !$0 { kill(pid, number) } }
            }
        }
        if !watcher {
            kill(pid, SIGKILL)
            watcherDone.signal()
        }
        // Not reaped yet (WNOWAIT): until `ended` is set, the pid cannot be another process's.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        ended.withLockedValue { $0 = true }
        let status = process.wait()
        answer(.exited(status.shellCode), op: "exec", sandbox: name.rawValue, audit: false)
        // Wakes the watcher's receive, which returns nil and ends; the descriptor is closed
        // only after, so the watcher never reads another connection's.
        shutdown(channel.fd, CInt(SHUT_RDWR))
        watcherDone.wait()
    }
}
