#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import Gateway
import GatewayCore
import Netns
import NIOConcurrencyHelpers
import SystemCalls
import SystemPackage

/// Opens what the gateway daemon (`gateway serve --all`) needs of a sandbox once it has
/// dropped its privileges: a helper process forked before the drop, the `PortBinder`'s
/// sibling for many sandboxes.
///
/// The helper stays uid 0 (the files it makes under `/run/airlock/NAME` must be root's)
/// but keeps exactly two capabilities, `CAP_SYS_ADMIN` (to enter a gateway namespace) and
/// `CAP_NET_BIND_SERVICE` (ports below 1024); every other one leaves its bounding set, and
/// it is `no_new_privs` and not dumpable. It keeps no descriptor of the daemon's but its
/// end of a `SOCK_SEQPACKET` pair (and standard error, for warnings). It can do two things,
/// one request at a time, and nothing else:
///
/// - `open NAME`: for a sandbox `NAME` (a valid `NamespaceName`) made by `airlock netns
///   create` (its state complete, its pins in place, G pinned at `/run/netns/NAME.gw` and
///   nowhere else), bind the standard listeners on the gateway address recorded in its
///   state inside G, bind its control socket `/run/airlock/NAME/control.sock` (0600), and
///   open its session file `/run/airlock/NAME/sessions` (0600, vetted as `SessionJournal`
///   does); the descriptors go back with the gateway address.
/// - `port NAME PORT`: one TCP listener on that sandbox's gateway address inside its G.
///
/// It exits when the daemon closes its end or dies (`PR_SET_PDEATHSIG`). When the daemon
/// closes its end (it is stopping), the helper first removes the daemon's socket, which the
/// daemon, no longer root, cannot: only if the path is still the socket it was at the
/// start (same device and inode), never a successor's.
final class SandboxOpener: Sendable {
    /// What `open` hands back; the caller owns every descriptor.
    struct Opened {
        /// The gateway address inside G, as recorded by `netns create`.
        var gatewayAddress: String
        /// The standard listeners, in `GatewaySockets.all` order.
        var listeners: [CInt]
        /// The control socket, bound and listening.
        var control: CInt
        /// The session file, open for reading and appending.
        var journal: CInt
    }

    private let state: NIOLockedValueBox<(socket: CInt, pid: pid_t)?>

    private init(socket: CInt, pid: pid_t) {
        state = NIOLockedValueBox((socket, pid))
    }

    /// The capabilities the helper keeps.
    static let capabilities: [CInt] = [21 /* CAP_SYS_ADMIN */, 10 /* CAP_NET_BIND_SERVICE */]

    /// Forks the helper; returns once it has given up everything but its two capabilities.
    /// `daemonSocket`, already bound, is removed by the helper when the daemon stops.
    /// - Throws: `SystemCallError` naming the step that failed.
    /// - Requires: root; call it while the process has one thread (fork copies only the caller).
    static func start(daemonSocket: String) throws -> SandboxOpener {
        var bound = stat()
        guard lstat(daemonSocket, &bound) == 0 else { throw SystemCallError.last("stat \(daemonSocket)") }
        var ends: [CInt] = [0, 0]
        guard socketpair(AF_UNIX, CInt(SOCK_SEQPACKET.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw SystemCallError.last("socketpair for the sandbox opener")
        }
        let parent = getpid()
        let child = fork()
        if child < 0 {
            let error = SystemCallError.last("fork the sandbox opener")
            close(ends[0])
            close(ends[1])
            throw error
        }
        if child == 0 {
            ShutdownSignals.clearInChild()
            close(ends[0])
            var status = Int32(setUp(socket: ends[1], parent: parent))
            let sent = send(ends[1], &status, 4, CInt(MSG_NOSIGNAL))
            if status != 0 || sent != 4 { _exit(125) }
            serve(socket: ends[1], daemonSocket: (daemonSocket, bound.st_dev, bound.st_ino))
        }
        close(ends[1])
        var status: Int32 = 0
        let received = retryingInterrupted { recv(ends[0], &status, 4, 0) }
        guard received == 4, status == 0 else {
            close(ends[0])
            var ignored: Int32 = 0
            while waitpid(child, &ignored, 0) < 0 && errno == EINTR {}
            throw SystemCallError("start the sandbox opener", code: received == 4 ? status : ECHILD)
        }
        return SandboxOpener(socket: ends[0], pid: child)
    }

    /// The helper's set-up: 0, or the errno of the step that failed.
    private static func setUp(socket: CInt, parent: pid_t) -> CInt {
        if cnl_set_parent_death_signal(SIGKILL) < 0 { return errno }
        if getppid() != parent { return ESRCH }
        // The daemon's descriptors (its own socket, listeners, the audit log) stay with it.
        var open: [CInt] = []
        if let directory = opendir("/proc/self/fd") {
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if let fd = CInt(name), fd > 2, fd != socket { open.append(fd) }
            }
            closedir(directory)
        }
        for fd in open { close(fd) }
        let result = capabilities.withUnsafeBufferPointer { cnl_keep_only_caps($0.baseAddress, $0.count) }
        return result < 0 ? -result : 0
    }

    // Requests: one byte ("O" open, "P" port), for "P" the port (two bytes, host order),
    // then the sandbox name. Answers: an int32 (0, or 1 for a refusal), then the gateway
    // address or the refusal's text, with the descriptors attached.

    private static func serve(socket: CInt, daemonSocket: (path: String, device: dev_t, inode: ino_t)) -> Never {
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            let count = buffer.withUnsafeMutableBytes { raw in retryingInterrupted { recv(socket, raw.baseAddress, raw.count, 0) } }
            if count <= 0 {
                var now = stat()
                if lstat(daemonSocket.path, &now) == 0, now.st_mode & S_IFMT == S_IFSOCK,
                   now.st_dev == daemonSocket.device, now.st_ino == daemonSocket.inode {
                    unlink(daemonSocket.path)
                }
                _exit(0)
            }
            let request = Array(buffer[0..<count])
            var descriptors: [CInt] = []
            var answer: [UInt8]
            do {
                let text: String
                (text, descriptors) = try handle(request)
                answer = [0, 0, 0, 0] + Array(text.utf8)
            } catch {
                for fd in descriptors { close(fd) }
                descriptors = []
                answer = [1, 0, 0, 0] + Array(String(describing: error).utf8.prefix(1000))
            }
            let sent = answer.withUnsafeBytes { data in
                descriptors.withUnsafeBufferPointer { fds in
                    cnl_send_fds(socket, data.baseAddress, data.count, fds.baseAddress, CInt(fds.count))
                }
            }
            for fd in descriptors { close(fd) }
            if sent < 0 { _exit(0) }
        }
    }

    /// One request: the text and descriptors of its answer.
    private static func handle(_ request: [UInt8]) throws -> (String, [CInt]) {
        guard let op = request.first else { throw CLIError("empty request") }
        var rest = request.dropFirst()
        var port: UInt16 = 0
        if op == UInt8(ascii: "P") {
            guard rest.count > 2 else { throw CLIError("malformed request") }
            port = UInt16(rest[rest.startIndex]) | UInt16(rest[rest.startIndex + 1]) << 8
            rest = rest.dropFirst(2)
            guard port != 0 else { throw CLIError("port 0 is not a port") }
        } else if op != UInt8(ascii: "O") {
            throw CLIError("unknown request")
        }
        let name = try NamespaceName(String(decoding: rest, as: UTF8.self))
        let store = PersistentSandbox()
        let state = try store.load(name: name)
        // G is entered from its pin under /run/netns only, whatever the state file says.
        let pin = store.gatewayPin(name)
        guard state.gatewayPin == pin else {
            throw CLIError("sandbox \(name.rawValue): its gateway namespace is recorded at \(state.gatewayPin), not \(pin)")
        }
        let address = state.topology.gatewayAddress.address
        let namespace = try NetworkNamespace.open(path: pin)
        let bound: Result<[BoundSocket], any Error> = Result {
            op == UInt8(ascii: "P")
                ? try ListenerSockets.bind(in: namespace.descriptor, address: address, tcpPorts: [port], udpPorts: [])
                : try GatewaySockets.bind(in: namespace.descriptor, address: address).all
        }
        try? namespace.close()
        let sockets = try bound.get()
        if op == UInt8(ascii: "P") { return (address.description, sockets.map(\.descriptor.rawValue)) }
        var descriptors = sockets.map(\.descriptor.rawValue)
        do {
            let control = try ControlSocket(path: ControlSocket.path(sandbox: name.rawValue))
            descriptors.append(control.descriptor)
            let journal = try SessionJournal(path: SessionJournal.path(sandbox: name.rawValue), warn: { printNotice($0) })
            let copy = fcntl(journal.fileDescriptor, F_DUPFD_CLOEXEC, 0)
            guard copy >= 0 else { throw SystemCallError.last("duplicate the session file") }
            descriptors.append(copy)
        } catch {
            for fd in descriptors { close(fd) }
            throw error
        }
        return (address.description, descriptors)
    }

    /// Opens sandbox `name`: see the type's description.
    /// - Throws: `CLIError` with the helper's one-line reason (`no sandbox named …`).
    func open(_ name: NamespaceName) throws -> Opened {
        let (text, fds) = try exchange([UInt8(ascii: "O")] + Array(name.rawValue.utf8), expecting: GatewayListeners.standardCount + 2)
        return Opened(gatewayAddress: text, listeners: Array(fds[0..<GatewayListeners.standardCount]),
                      control: fds[GatewayListeners.standardCount], journal: fds[GatewayListeners.standardCount + 1])
    }

    /// A TCP listener on `port` on sandbox `name`'s gateway address inside its G.
    func bind(_ name: NamespaceName, port: UInt16) throws -> CInt {
        let request = [UInt8(ascii: "P"), UInt8(port & 0xff), UInt8(port >> 8)] + Array(name.rawValue.utf8)
        return try exchange(request, expecting: 1).fds[0]
    }

    private func exchange(_ request: [UInt8], expecting count: Int) throws -> (text: String, fds: [CInt]) {
        try state.withLockedValue { state in
            guard let state else { throw CLIError("the sandbox opener has stopped") }
            let sent = request.withUnsafeBytes { raw in retryingInterrupted { send(state.socket, raw.baseAddress, raw.count, CInt(MSG_NOSIGNAL)) } }
            guard sent == request.count else { throw CLIError("the sandbox opener has stopped") }
            var answer = [UInt8](repeating: 0, count: 2048)
            var fds = [CInt](repeating: -1, count: 16)
            var received: CInt = 0
            let length = answer.withUnsafeMutableBytes { data in
                fds.withUnsafeMutableBufferPointer { cnl_recv_fds(state.socket, data.baseAddress, data.count, $0.baseAddress, 16, &received) }
            }
            let got = Array(fds[0..<Int(max(0, received))])
            guard length >= 4 else {
                got.forEach { close($0) }
                throw CLIError("the sandbox opener has stopped")
            }
            let text = String(decoding: answer[4..<length], as: UTF8.self)
            guard answer[0] == 0 else {
                got.forEach { close($0) }
                throw CLIError(text)
            }
            guard got.count == count else {
                got.forEach { close($0) }
                throw CLIError("the sandbox opener sent \(got.count) descriptors, not \(count)")
            }
            return (text, got)
        }
    }

    /// Closes the pair, so the helper exits, and reaps it. Idempotent.
    func stop() {
        guard let stopped = state.withLockedValue({ state -> (socket: CInt, pid: pid_t)? in
            defer { state = nil }
            return state
        }) else { return }
        close(stopped.socket)
        var status: Int32 = 0
        while waitpid(stopped.pid, &status, 0) < 0 && errno == EINTR {}
    }
}
