#if canImport(Glibc)
import Glibc
#endif
import Gateway
import Netns
import SystemCalls

/// The caller's side of the gateway daemon's user socket (`UserBroker`): one connection per
/// request, blocking.
enum UserBrokerClient {
    /// Whether a gateway daemon offers sandboxes to users on this host (its socket exists).
    static func isOffered(path: String = UserRequest.socketPath) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK
    }

    /// A connection to the user socket.
    /// - Throws: `CLIError` saying what to do: no daemon offers it, or the caller is not in its group.
    static func connect(path: String = UserRequest.socketPath) throws -> DescriptorChannel {
        let fd = socket(AF_UNIX, CInt(SOCK_SEQPACKET.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CLIError("cannot create a socket: \(String(cString: strerror(errno)))") }
        let channel = DescriptorChannel(adopting: fd)
        var size = CInt(DescriptorChannel.maxMessageBytes + 4096)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        guard let address = UnixSocketAddress.make(path) else { throw CLIError("user socket path too long: \(path)") }
        let connected = UnixSocketAddress.with(address) { Glibc.connect(fd, $0, $1) }
        guard connected == 0 else {
            switch errno {
            case ENOENT, ECONNREFUSED:
                throw CLIError("no gateway daemon offers sandboxes to users here (nothing listens at \(path)); an admin starts one with `airlock gateway serve --all --users GROUP`", exitCode: ExitCodes.notFound)
            case EACCES, EPERM:
                throw CLIError("permission denied on \(path): you are not in the group the gateway daemon serves; ask an admin to add you (then log in again)", exitCode: ExitCodes.permission)
            default:
                throw CLIError("cannot connect to \(path): \(String(cString: strerror(errno)))")
            }
        }
        return channel
    }

    /// Sends `request` (with `descriptors` attached) on `channel` and reads one answer.
    /// - Throws: `CLIError` with the daemon's refusal, or when it went away.
    static func exchange(_ request: UserRequest, on channel: DescriptorChannel, descriptors: [CInt] = []) throws -> UserResponse {
        do {
            try channel.send(try request.json(), descriptors: descriptors)
        } catch let error as DescriptorChannelError {
            // A caller the daemon turns away is answered before it reads: the answer waits.
            guard case let .system(_, code) = error, code == EPIPE || code == ECONNRESET else { throw error }
            _ = try next(on: channel)
            throw error
        }
        return try next(on: channel)
    }

    /// The next answer on `channel`; a refusal is thrown.
    static func next(on channel: DescriptorChannel) throws -> UserResponse {
        let received: (message: String, descriptors: [CInt])?
        do {
            received = try channel.receive()
        } catch DescriptorChannelError.system(_, ECONNRESET) {
            // The daemon answered a caller it turned away and closed without reading the
            // request: the kernel reports the reset first (once), the answer is still queued.
            received = try channel.receive()
        }
        guard let (message, fds) = received else {
            throw CLIError("the gateway daemon closed the user socket without an answer")
        }
        fds.forEach { close($0) }
        let response = try UserResponse(json: Array(message.utf8))
        if case let .failure(reason) = response {
            throw CLIError(reason, exitCode: reason.hasPrefix("permission denied") ? ExitCodes.permission : ExitCodes.failure)
        }
        return response
    }

    /// One request on its own connection.
    static func send(_ request: UserRequest) throws -> UserResponse {
        let channel = try connect()
        defer { channel.close() }
        return try exchange(request, on: channel)
    }

    /// A control-socket request for the caller's sandbox `sandbox`, relayed by the daemon.
    static func control(_ request: ControlRequest, sandbox: String) throws -> ControlResponse {
        guard case let .control(line) = try send(.control(sandbox: sandbox, request: try request.jsonLine())) else {
            throw CLIError("unexpected answer from the gateway daemon")
        }
        return try ControlResponse(jsonLine: Array(line.utf8))
    }

    /// Whether sandbox `name` was made through the user socket (it has an owner record),
    /// so its gateway is asked through the daemon rather than its root-only control socket.
    static func isUserSandbox(_ name: String) -> Bool {
        guard let name = try? NamespaceName(name) else { return false }
        var info = stat()
        return lstat(UserBrokerConnection.Record.owner.path(of: name), &info) == 0
    }

    /// Runs `argv` in the caller's sandbox with this process's standard streams; forwards
    /// INT, TERM and HUP; returns the command's shell-style status.
    static func exec(sandbox: String, argv: [String], environment: [String: String], options: [String], session: String?,
                     ephemeral: Bool) throws -> Int32 {
        let channel = try connect()
        defer { channel.close() }
        // Blocked here before any thread exists, so only the forwarding thread takes them.
        var signals = sigset_t()
        sigemptyset(&signals)
        for number in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&signals, number) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        let request = UserRequest.exec(sandbox: sandbox, argv: argv, environment: environment, options: options, session: session,
                                       ephemeral: ephemeral)
        guard case let .started(notices) = try exchange(request, on: channel, descriptors: [0, 1, 2]) else {
            throw CLIError("unexpected answer from the gateway daemon")
        }
        notices.forEach(printNotice)
        let fd = channel.fd
        _ = DetachedThread.start {
            var number: CInt = 0
            while sigwait(&signals, &number) == 0 {
                guard let text = try? UserRequest.signal(number).json() else { continue }
                _ = text.withCString { Glibc.send(fd, $0, strlen($0), CInt(MSG_NOSIGNAL)) }
            }
        }
        while true {
            let response: UserResponse
            do {
                response = try next(on: channel)
            } catch let error as CLIError where error.message.hasPrefix("the gateway daemon closed") {
                throw CLIError("the gateway daemon went away while the command ran; it was stopped with it")
            }
            if case let .exited(status) = response { return status }
        }
    }
}

/// A control-socket request for sandbox `sandbox`, by the way its caller may ask: root,
/// and sandboxes not made through the user socket, at its control socket; an account's own
/// sandbox through the gateway daemon, which checks that it is the caller's.
func sendControl(_ request: ControlRequest, sandbox: NamespaceName) throws -> ControlResponse {
    if getuid() != 0 && UserBrokerClient.isUserSandbox(sandbox.rawValue) {
        return try UserBrokerClient.control(request, sandbox: sandbox.rawValue)
    }
    return try ControlClient.send(request, path: ControlServer.socketPath(sandbox: sandbox.rawValue), sandbox: sandbox.rawValue)
}
