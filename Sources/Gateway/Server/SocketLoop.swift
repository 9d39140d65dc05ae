#if canImport(Glibc)
import Glibc
#endif
import CSplice
import NIOConcurrencyHelpers
import NIOCore

/// The gateway's raw socket work, on one thread of its own beside NIO's event loops:
///
/// - accepting on the TCP listeners, so the gateway knows every connection's descriptor
///   (NIO then serves the connection: `listen(_:onAccept:)`);
/// - connecting to tunnel upstreams (a non-blocking connect bounded by a timeout);
/// - moving the bytes of established tunnels with `splice(2)`, socket → pipe → socket,
///   never through user space, with half-close, byte counts and an idle timeout.
///
/// Pipes come from a small pool and are held only while bytes are in flight (a direction
/// whose output is full keeps its pipe until the bytes leave), so an idle tunnel costs its
/// two sockets and nothing else.
///
/// What the loop owns is touched on its thread only; other threads talk to it through a
/// locked command queue and an eventfd. Completions (`onAccept`, connect promises, tunnel
/// ends) run on the loop thread and must be quick.
package final class SocketLoop: @unchecked Sendable {
    /// Why a connect failed.
    package enum ConnectError: Error, Equatable, Sendable {
        /// The system refused or failed the connection; the system's reason.
        case failed(reason: String)
        /// No answer within the timeout.
        case timedOut
        /// The loop is stopping.
        case stopped
    }

    /// What a tunnel moved, when it ends.
    package struct Totals: Sendable, Equatable {
        /// Bytes from the client to the upstream (replayed bytes included).
        package var up: UInt64
        /// Bytes from the upstream to the client (the gateway's own answer excluded).
        package var down: UInt64
        /// Why it ended early: idle, reset, gateway stopping; nil for a clean end.
        package var ending: String?
    }

    /// A snapshot of the loop's state, for health answers and tests.
    package struct Statistics: Sendable, Equatable {
        /// Tunnels being spliced now.
        package var tunnels = 0
        /// Pipes holding bytes in flight now.
        package var pipesInUse = 0
        /// Empty pipes kept for reuse.
        package var pipesPooled = 0
        /// Tunnels spliced since start.
        package var tunnelsTotal = 0
        /// Bytes moved by splice since start, both directions.
        package var bytesTotal: UInt64 = 0
    }

    /// The capacity asked for each pipe (the kernel may give less).
    package let pipeSize: Int
    /// Empty pipes kept beyond this many are closed.
    package let pipePoolLimit: Int

    private let epoll: CInt
    private let wakeFD: CInt
    /// The loop's life and its command queue under one lock, so nothing is queued after
    /// the loop has taken its last commands.
    private let inbox = NIOLockedValueBox(Inbox())
    private let stats = NIOLockedValueBox(Statistics())
    private let nextID = NIOLockedValueBox<UInt64>(1)
    private var thread: pthread_t?

    // Loop-thread state.
    private var entries: [UInt64: Entry] = [:]
    private var tunnels: [UInt64: Tunnel] = [:]
    private var connects: [UInt64: PendingConnect] = [:]
    private var listeners: [UInt64: Listener] = [:]
    private var ready: [(Tunnel, Bool)] = []
    private var pool: [Pipe] = []
    private var pipesInUse = 0
    private var tunnelsTotal = 0
    private var bytesTotal: UInt64 = 0
    private var lastIdleScan: UInt64 = 0
    private var pipeCapacity = 65536

    /// Bytes one direction may move before other tunnels get their turn.
    private static let fairnessRounds = 16
    private static let wakeToken: UInt64 = 0

    private enum LifeState { case idle, running, stopping, stopped }

    private struct Inbox {
        var state = LifeState.idle
        var queue: [Command] = []
    }

    private enum Command {
        case listen(UInt64, CInt, @Sendable (CInt) -> Void)
        case closeListeners
        case connect(PendingConnect)
        case splice(Tunnel)
        case close(UInt64)
        case stop
    }

    private enum Entry {
        case listener(Listener)
        case connecting(PendingConnect)
        case tunnel(Tunnel, client: Bool)
    }

    private struct Pipe {
        var read: CInt
        var write: CInt
    }

    private final class Listener {
        let fd: CInt
        let onAccept: @Sendable (CInt) -> Void
        var pausedUntil: UInt64 = 0
        init(fd: CInt, onAccept: @escaping @Sendable (CInt) -> Void) {
            self.fd = fd
            self.onAccept = onAccept
        }
    }

    private final class PendingConnect {
        let id: UInt64
        let fd: CInt
        let deadline: UInt64
        let promise: EventLoopPromise<CInt>
        init(id: UInt64, fd: CInt, deadline: UInt64, promise: EventLoopPromise<CInt>) {
            self.id = id
            self.fd = fd
            self.deadline = deadline
            self.promise = promise
        }
    }

    private final class Direction {
        var pending: [UInt8]
        var pendingOffset = 0
        var pipe: Pipe?
        var inPipe = 0
        var inputEnded = false
        var outputShut = false
        var blocked = false
        var bytes: UInt64
        init(pending: [UInt8], counted: Bool) {
            self.pending = pending
            self.bytes = counted ? UInt64(pending.count) : 0
        }
        var finished: Bool { outputShut }

        /// Writes what the socket takes of the pending bytes now, without waiting (from
        /// any thread: the hand-off writes the first bytes itself, the loop the rest).
        /// - Returns: 0 once all are written, EAGAIN while the socket is full, or the errno
        ///   of a failure.
        @discardableResult
        func writePending(to fd: CInt) -> CInt {
            while pendingOffset < pending.count {
                let offset = pendingOffset
                let written = pending.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, CInt(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if written < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                pendingOffset += written
            }
            pending = []
            pendingOffset = 0
            return 0
        }
    }

    private final class Tunnel {
        let id: UInt64
        let handle: Handle
        let client: CInt
        let upstream: CInt
        let up: Direction
        let down: Direction
        let idleNanos: UInt64
        let completion: @Sendable (Totals) -> Void
        var lastActivity: UInt64
        var open = true
        init(handle: Handle, client: CInt, upstream: CInt, up: Direction, down: Direction, idleNanos: UInt64,
             now: UInt64, completion: @escaping @Sendable (Totals) -> Void) {
            self.id = handle.id
            self.handle = handle
            self.client = client
            self.upstream = upstream
            self.up = up
            self.down = down
            self.idleNanos = idleNanos
            self.lastActivity = now
            self.completion = completion
        }
    }

    /// - Parameters:
    ///   - pipeSize: the capacity asked for each pipe; 1 MiB lets one splice move a whole
    ///     receive window.
    ///   - pipePoolLimit: how many empty pipes to keep for reuse.
    /// - Throws: `SocketLoopError` when the epoll or eventfd cannot be made.
    package init(pipeSize: Int = 1 << 20, pipePoolLimit: Int = 16) throws {
        self.pipeSize = pipeSize
        self.pipePoolLimit = pipePoolLimit
        let epoll = epoll_create1(CInt(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw SocketLoopError(call: "epoll_create1", errno: errno) }
        let wake = eventfd(0, CInt(EFD_NONBLOCK) | CInt(EFD_CLOEXEC))
        guard wake >= 0 else {
            let code = errno
            close(epoll)
            throw SocketLoopError(call: "eventfd", errno: code)
        }
        var event = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(u64: Self.wakeToken))
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &event) == 0 else {
            let code = errno
            close(wake)
            close(epoll)
            throw SocketLoopError(call: "epoll_ctl", errno: code)
        }
        self.epoll = epoll
        self.wakeFD = wake
    }

    deinit {
        close(wakeFD)
        close(epoll)
    }

    // MARK: - Public interface (any thread)

    /// Starts the loop's thread.
    /// - Throws: `SocketLoopError` when the thread cannot be created.
    package func start() throws {
        let started = inbox.withLockedValue { inbox -> Bool in
            guard inbox.state == .idle else { return false }
            inbox.state = .running
            return true
        }
        guard started else { return }
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            let loop = Unmanaged<SocketLoop>.fromOpaque(argument!).takeRetainedValue()
            loop.run()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            inbox.withLockedValue { $0.state = .stopped }
            throw SocketLoopError(call: "pthread_create", errno: result)
        }
        self.thread = thread
    }

    /// Stops the loop: listeners closed, connects failed, tunnels closed (their
    /// completions run), pipes freed. Waits for the thread to finish.
    package func shutdown() {
        let wasRunning = inbox.withLockedValue { inbox -> Bool in
            guard inbox.state == .running else {
                if inbox.state == .idle { inbox.state = .stopped }
                return false
            }
            inbox.state = .stopping
            inbox.queue.append(.stop)
            return true
        }
        guard wasRunning, let thread else { return }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
        pthread_join(thread, nil)
        self.thread = nil
    }

    /// Accepts connections on `listener` (a bound, listening TCP socket, owned from here
    /// on) and hands each new descriptor, non-blocking and close-on-exec, to `onAccept`.
    package func listen(_ listener: CInt, onAccept: @escaping @Sendable (CInt) -> Void) {
        submit(.listen(makeID(), listener, onAccept))
    }

    /// Closes every listener (new connections are refused by the kernel); open
    /// connections and tunnels carry on.
    package func closeListeners() {
        submit(.closeListeners)
    }

    /// Connects a new TCP socket to `address:port`.
    ///
    /// - Returns: a future for the connected descriptor (non-blocking, close-on-exec,
    ///   `TCP_NODELAY`), owned by the caller; it fails with `ConnectError`.
    package func connect(to address: SocketAddress, timeout: TimeAmount, on eventLoop: any EventLoop) -> EventLoopFuture<CInt> {
        let promise = eventLoop.makePromise(of: CInt.self)
        let fd = socket(address.protocol.rawValue, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            promise.fail(ConnectError.failed(reason: String(cString: strerror(errno))))
            return promise.futureResult
        }
        var one: CInt = 1
        _ = setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
        let result = address.withSockAddr { Glibc.connect(fd, $0, socklen_t($1)) }
        if result == 0 {
            promise.succeed(fd)
            return promise.futureResult
        }
        let code = errno
        guard code == EINPROGRESS else {
            close(fd)
            promise.fail(ConnectError.failed(reason: String(cString: strerror(code))))
            return promise.futureResult
        }
        // Nearby upstreams (loopback, a veth) often finish the handshake before connect
        // returns: look once, without waiting, before involving the loop's thread.
        var poll = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if Glibc.poll(&poll, 1, 0) == 1 {
            let error = Self.socketError(fd)
            if error == 0 {
                promise.succeed(fd)
            } else {
                close(fd)
                promise.fail(ConnectError.failed(reason: String(cString: strerror(error))))
            }
            return promise.futureResult
        }
        let deadline = Self.now() + UInt64(max(0, timeout.nanoseconds))
        submit(.connect(PendingConnect(id: makeID(), fd: fd, deadline: deadline, promise: promise)))
        return promise.futureResult
    }

    /// A handle for a tunnel about to be spliced, so it can be tracked (and closed) before
    /// the loop has it.
    package func makeHandle() -> Handle {
        Handle(id: makeID(), loop: self)
    }

    /// Splices `client` and `upstream` (connected, non-blocking TCP sockets, both owned
    /// from here on) until both directions have ended, either side fails, or no byte
    /// moved for `idleTimeout`.
    ///
    /// - Parameters:
    ///   - handle: from `makeHandle()`; closing it closes the tunnel.
    ///   - toClient: bytes written to the client before anything from the upstream (the
    ///     proxy's `200`); not counted.
    ///   - toUpstream: bytes written to the upstream before anything from the client (bytes
    ///     the client sent early, a replayed ClientHello); counted as the client's.
    ///   - completion: runs once on the loop thread when the tunnel is gone, with what it moved.
    package func splice(
        _ handle: Handle, client: CInt, upstream: CInt, toClient: [UInt8] = [], toUpstream: [UInt8] = [],
        idleTimeout: TimeAmount, completion: @escaping @Sendable (Totals) -> Void
    ) {
        // The first bytes go out from the caller's thread when the sockets take them (they
        // nearly always do: both connections are new), so the client has its answer without
        // waiting for the loop's thread to wake.
        let up = Direction(pending: toUpstream, counted: true)
        let down = Direction(pending: toClient, counted: false)
        up.writePending(to: upstream)
        down.writePending(to: client)
        let tunnel = Tunnel(
            handle: handle, client: client, upstream: upstream, up: up, down: down,
            idleNanos: UInt64(max(1, idleTimeout.nanoseconds)), now: Self.now(), completion: completion)
        submit(.splice(tunnel))
    }

    /// Names one tunnel; closes it from any thread.
    package final class Handle: Sendable {
        fileprivate let id: UInt64
        private let loop: SocketLoop
        private let closeRequested = NIOLockedValueBox(false)

        fileprivate init(id: UInt64, loop: SocketLoop) {
            self.id = id
            self.loop = loop
        }

        /// Closes the tunnel (both sockets); its completion reports the bytes moved. A
        /// tunnel closed before the loop has started it ends as soon as it starts.
        package func close() {
            closeRequested.withLockedValue { $0 = true }
            loop.submit(.close(id))
        }

        fileprivate var isClosed: Bool { closeRequested.withLockedValue { $0 } }
    }

    /// The loop's state as of its last turn.
    package var statistics: Statistics {
        stats.withLockedValue { $0 }
    }

    // MARK: - Commands

    private func makeID() -> UInt64 {
        nextID.withLockedValue { id in
            defer { id += 1 }
            return id
        }
    }

    private func submit(_ command: Command) {
        let accepted = inbox.withLockedValue { inbox -> Bool in
            guard inbox.state == .running else { return false }
            inbox.queue.append(command)
            return true
        }
        guard accepted else {
            refuse(command)
            return
        }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// What a command gets when the loop is not running.
    private func refuse(_ command: Command) {
        switch command {
        case .listen(_, let fd, _):
            close(fd)
        case .connect(let pending):
            close(pending.fd)
            pending.promise.fail(ConnectError.stopped)
        case .splice(let tunnel):
            close(tunnel.client)
            close(tunnel.upstream)
            tunnel.completion(Totals(up: tunnel.up.bytes, down: 0, ending: "the gateway is stopping"))
        case .closeListeners, .close, .stop:
            break
        }
    }

    // MARK: - The loop (its own thread)

    private func run() {
        // splice(2) into a socket whose peer is gone raises SIGPIPE on the calling thread
        // (there is no MSG_NOSIGNAL for it): block it here, so a sandbox that resets a
        // tunnel gets EPIPE on that tunnel instead of taking the gateway down. Only this
        // thread's mask changes; commands the gateway starts are unaffected.
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)
        var pipeProbe: [CInt] = [0, 0]
        if airlock_pipe(&pipeProbe) == 0 {
            pipeCapacity = Int(airlock_set_pipe_size(pipeProbe[1], CInt(pipeSize)))
            if pipeCapacity <= 0 { pipeCapacity = 65536 }
            pool.append(Pipe(read: pipeProbe[0], write: pipeProbe[1]))
        }
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        lastIdleScan = Self.now()
        while true {
            let count = epoll_wait(epoll, events, CInt(capacity), waitTimeout())
            if count < 0 && errno != EINTR { break }
            var stop = false
            for index in 0..<max(0, Int(count)) {
                let event = events[index]
                if event.data.u64 == Self.wakeToken {
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                    if runCommands() { stop = true }
                    continue
                }
                handle(token: event.data.u64, events: event.events)
            }
            if stop { break }
            runReady()
            housekeeping()
            publish()
        }
        stopEverything()
        publish()
    }

    /// Runs queued commands; true when told to stop.
    private func runCommands() -> Bool {
        let queued = inbox.withLockedValue { inbox -> [Command] in
            defer { inbox.queue.removeAll(keepingCapacity: true) }
            return inbox.queue
        }
        var stop = false
        for command in queued {
            switch command {
            case .listen(let id, let fd, let onAccept):
                let listener = Listener(fd: fd, onAccept: onAccept)
                // Accepting must never block the loop, whatever mode the socket came in.
                let flags = fcntl(fd, F_GETFL)
                if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
                if register(fd, token: id, events: EPOLLIN.rawValue) {
                    listeners[id] = listener
                    entries[id] = .listener(listener)
                } else {
                    close(fd)
                }
            case .closeListeners:
                closeListenersNow()
            case .connect(let pending):
                if register(pending.fd, token: pending.id, events: EPOLLOUT.rawValue | EPOLLONESHOT.rawValue) {
                    connects[pending.id] = pending
                    entries[pending.id] = .connecting(pending)
                } else {
                    let code = errno
                    close(pending.fd)
                    pending.promise.fail(ConnectError.failed(reason: String(cString: strerror(code))))
                }
            case .splice(let tunnel):
                startTunnel(tunnel)
            case .close(let id):
                if let tunnel = tunnels[id] { closeTunnel(tunnel, ending: "closed by the gateway") }
            case .stop:
                stop = true
            }
        }
        return stop
    }

    private func handle(token: UInt64, events: UInt32) {
        guard let entry = entries[token] else { return }
        switch entry {
        case .listener(let listener):
            accept(on: listener, token: token)
        case .connecting(let pending):
            finishConnect(pending)
        case .tunnel(let tunnel, let isClient):
            guard tunnel.open else { return }
            let readable = events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0
            let writable = events & (EPOLLOUT.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0
            // The client's socket is the input of `up` and the output of `down`.
            let outputDirection = isClient ? tunnel.down : tunnel.up
            if readable { drive(tunnel, up: isClient) }
            if writable && tunnel.open && outputDirection.blocked { drive(tunnel, up: !isClient) }
        }
    }

    private func accept(on listener: Listener, token: UInt64) {
        for _ in 0..<64 {
            let fd = airlock_accept(listener.fd)
            if fd >= 0 {
                listener.onAccept(fd)
                continue
            }
            switch errno {
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors or memory: stop accepting for a moment instead of
                // spinning on a listener that stays readable.
                listener.pausedUntil = Self.now() + 100_000_000
                var event = epoll_event(events: 0, data: epoll_data_t(u64: token))
                _ = epoll_ctl(epoll, EPOLL_CTL_MOD, listener.fd, &event)
                return
            default:
                return
            }
        }
    }

    private func finishConnect(_ pending: PendingConnect) {
        connects[pending.id] = nil
        entries[pending.id] = nil
        _ = epoll_ctl(epoll, EPOLL_CTL_DEL, pending.fd, nil)
        let error = Self.socketError(pending.fd)
        if error == 0 {
            pending.promise.succeed(pending.fd)
        } else {
            close(pending.fd)
            pending.promise.fail(ConnectError.failed(reason: String(cString: strerror(error))))
        }
    }

    private func startTunnel(_ tunnel: Tunnel) {
        // A blocking socket would stall every tunnel of the loop.
        for fd in [tunnel.client, tunnel.upstream] {
            let flags = fcntl(fd, F_GETFL)
            if flags >= 0 && flags & O_NONBLOCK == 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        }
        let clientToken = tunnel.id << 1
        let upstreamToken = tunnel.id << 1 | 1
        let events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
        // Tunnel tokens live in their own range (ids shifted), so they cannot collide with
        // listener and connect ids; bit 63 marks them.
        let mark: UInt64 = 1 << 63
        guard register(tunnel.client, token: clientToken | mark, events: events),
              register(tunnel.upstream, token: upstreamToken | mark, events: events) else {
            _ = epoll_ctl(epoll, EPOLL_CTL_DEL, tunnel.client, nil)
            close(tunnel.client)
            close(tunnel.upstream)
            tunnel.open = false
            tunnel.completion(Totals(up: tunnel.up.bytes, down: 0, ending: "cannot watch the sockets"))
            return
        }
        tunnels[tunnel.id] = tunnel
        entries[clientToken | mark] = .tunnel(tunnel, client: true)
        entries[upstreamToken | mark] = .tunnel(tunnel, client: false)
        tunnelsTotal += 1
        if tunnel.handle.isClosed {
            closeTunnel(tunnel, ending: "closed by the gateway")
            return
        }
        // Bytes may be waiting already (and the gateway's own bytes must go out).
        drive(tunnel, up: true)
        if tunnel.open { drive(tunnel, up: false) }
    }

    private enum PumpResult { case idle, blocked, done, yield, failed(CInt) }

    /// Moves one direction's bytes until its input is empty, its output is full, or it
    /// has had its turn.
    private func drive(_ tunnel: Tunnel, up: Bool) {
        switch pump(tunnel, up: up) {
        case .idle, .blocked:
            break
        case .yield:
            ready.append((tunnel, up))
        case .done:
            if tunnel.up.finished && tunnel.down.finished { closeTunnel(tunnel, ending: nil) }
        case .failed(let code):
            closeTunnel(tunnel, ending: String(cString: strerror(code)))
        }
    }

    private func pump(_ tunnel: Tunnel, up: Bool) -> PumpResult {
        let direction = up ? tunnel.up : tunnel.down
        let input = up ? tunnel.client : tunnel.upstream
        let output = up ? tunnel.upstream : tunnel.client
        var turns = 0
        while true {
            if direction.pendingOffset < direction.pending.count {
                let left = direction.pending.count - direction.pendingOffset
                let code = direction.writePending(to: output)
                if direction.pending.count - direction.pendingOffset < left { tunnel.lastActivity = Self.now() }
                if code == EAGAIN {
                    direction.blocked = true
                    return .blocked
                }
                if code != 0 { return .failed(code) }
                continue
            }
            if direction.inPipe > 0, let pipe = direction.pipe {
                let moved = airlock_splice(pipe.read, output, direction.inPipe)
                if moved < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN {
                        direction.blocked = true
                        return .blocked
                    }
                    return .failed(errno)
                }
                direction.inPipe -= moved
                // Bytes leaving count as activity too: a slow reader draining a full pipe
                // is not idle.
                tunnel.lastActivity = Self.now()
                continue
            }
            direction.blocked = false
            if let pipe = direction.pipe {
                direction.pipe = nil
                release(pipe)
            }
            if direction.inputEnded {
                if !direction.outputShut {
                    _ = Glibc.shutdown(output, CInt(SHUT_WR))
                    direction.outputShut = true
                }
                return .done
            }
            if turns == Self.fairnessRounds { return .yield }
            turns += 1
            guard let pipe = acquirePipe() else { return .failed(EMFILE) }
            let moved = airlock_splice(input, pipe.write, pipeCapacity)
            if moved > 0 {
                direction.pipe = pipe
                direction.inPipe = moved
                direction.bytes += UInt64(moved)
                bytesTotal += UInt64(moved)
                tunnel.lastActivity = Self.now()
                continue
            }
            let code = errno
            release(pipe)
            if moved == 0 {
                direction.inputEnded = true
                continue
            }
            if code == EINTR { continue }
            if code == EAGAIN { return .idle }
            return .failed(code)
        }
    }

    private func runReady() {
        guard !ready.isEmpty else { return }
        let turn = ready
        ready.removeAll(keepingCapacity: true)
        for (tunnel, up) in turn where tunnel.open {
            drive(tunnel, up: up)
        }
    }

    private func closeTunnel(_ tunnel: Tunnel, ending: String?) {
        guard tunnel.open else { return }
        tunnel.open = false
        tunnels[tunnel.id] = nil
        let mark: UInt64 = 1 << 63
        entries[tunnel.id << 1 | mark] = nil
        entries[tunnel.id << 1 | 1 | mark] = nil
        // Closing removes both sockets from the epoll set (the loop holds the only
        // descriptors for them).
        close(tunnel.client)
        close(tunnel.upstream)
        for direction in [tunnel.up, tunnel.down] {
            if let pipe = direction.pipe {
                // Bytes still in it are lost with the connection; the pipe is not reused.
                direction.pipe = nil
                pipesInUse -= 1
                close(pipe.read)
                close(pipe.write)
            }
        }
        tunnel.completion(Totals(up: tunnel.up.bytes, down: tunnel.down.bytes, ending: ending))
    }

    private func acquirePipe() -> Pipe? {
        if let pipe = pool.popLast() {
            pipesInUse += 1
            return pipe
        }
        var fds: [CInt] = [0, 0]
        guard airlock_pipe(&fds) == 0 else { return nil }
        if pipeCapacity > 65536 { _ = airlock_set_pipe_size(fds[1], CInt(pipeCapacity)) }
        pipesInUse += 1
        return Pipe(read: fds[0], write: fds[1])
    }

    /// Returns an empty pipe to the pool.
    private func release(_ pipe: Pipe) {
        pipesInUse -= 1
        if pool.count < pipePoolLimit {
            pool.append(pipe)
        } else {
            close(pipe.read)
            close(pipe.write)
        }
    }

    private func waitTimeout() -> CInt {
        if !ready.isEmpty { return 0 }
        var timeout: UInt64 = 1_000_000_000
        let now = Self.now()
        for pending in connects.values {
            timeout = min(timeout, pending.deadline > now ? pending.deadline - now : 0)
        }
        for listener in listeners.values where listener.pausedUntil > 0 {
            timeout = min(timeout, listener.pausedUntil > now ? listener.pausedUntil - now : 0)
        }
        return CInt((timeout + 999_999) / 1_000_000)
    }

    /// Expires connects, resumes paused listeners, and (once a second) closes idle tunnels.
    private func housekeeping() {
        let now = Self.now()
        for pending in connects.values where pending.deadline <= now {
            connects[pending.id] = nil
            entries[pending.id] = nil
            _ = epoll_ctl(epoll, EPOLL_CTL_DEL, pending.fd, nil)
            close(pending.fd)
            pending.promise.fail(ConnectError.timedOut)
        }
        for (id, listener) in listeners where listener.pausedUntil > 0 && listener.pausedUntil <= now {
            listener.pausedUntil = 0
            var event = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(u64: id))
            _ = epoll_ctl(epoll, EPOLL_CTL_MOD, listener.fd, &event)
        }
        guard now - lastIdleScan >= 1_000_000_000 || now < lastIdleScan else { return }
        lastIdleScan = now
        for tunnel in tunnels.values where now > tunnel.lastActivity && now - tunnel.lastActivity >= tunnel.idleNanos {
            closeTunnel(tunnel, ending: "idle for \(Self.describe(nanoseconds: tunnel.idleNanos))")
        }
    }

    private func publish() {
        let snapshot = Statistics(tunnels: tunnels.count, pipesInUse: pipesInUse, pipesPooled: pool.count,
                                  tunnelsTotal: tunnelsTotal, bytesTotal: bytesTotal)
        stats.withLockedValue { $0 = snapshot }
    }

    private func closeListenersNow() {
        for (id, listener) in listeners {
            entries[id] = nil
            close(listener.fd)
        }
        listeners.removeAll()
    }

    private func stopEverything() {
        // Commands that raced with the stop get the answer a stopped loop gives.
        let late = inbox.withLockedValue { inbox -> [Command] in
            defer {
                inbox.queue.removeAll()
                inbox.state = .stopped
            }
            return inbox.queue
        }
        for command in late { refuse(command) }
        closeListenersNow()
        for pending in connects.values {
            close(pending.fd)
            pending.promise.fail(ConnectError.stopped)
        }
        connects.removeAll()
        for tunnel in Array(tunnels.values) {
            closeTunnel(tunnel, ending: "the gateway is stopping")
        }
        for pipe in pool {
            close(pipe.read)
            close(pipe.write)
        }
        pool.removeAll()
        entries.removeAll()
    }

    private func register(_ fd: CInt, token: UInt64, events: UInt32) -> Bool {
        var event = epoll_event(events: events, data: epoll_data_t(u64: token))
        return epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) == 0
    }

    /// The outcome of a non-blocking connect: 0, or the errno it failed with.
    private static func socketError(_ fd: CInt) -> CInt {
        var error: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { return errno }
        return error
    }

    /// "30 s", or "200 ms" below a whole second.
    private static func describe(nanoseconds: UInt64) -> String {
        nanoseconds % 1_000_000_000 == 0 ? "\(nanoseconds / 1_000_000_000) s" : "\(nanoseconds / 1_000_000) ms"
    }

    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}

/// A system call the socket loop needs failed while it was being set up.
package struct SocketLoopError: Error, CustomStringConvertible {
    package var call: String
    package var errno: CInt

    package var description: String {
        "\(call): \(String(cString: strerror(errno)))"
    }
}
