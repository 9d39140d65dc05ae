#if canImport(Glibc)
import Glibc
#endif
import CSplice
import NIOConcurrencyHelpers
import NIOCore
import SystemCalls

/// The gateway's raw socket work, on one thread of its own beside NIO's event loops:
///
/// - accepting on the TCP listeners, so the gateway knows every connection's descriptor
///   (NIO then serves the connection: `listen(_:onAccept:)`);
/// - connecting to tunnel upstreams (a non-blocking connect bounded by a timeout);
/// - moving the bytes of established tunnels, with half-close, byte counts and an idle
///   timeout: the first bytes of each direction copied (`copiedBytes`), the rest with
///   `splice(2)`, socket → pipe → socket, never through user space.
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
    /// What blocked tunnels may hold when their splice names no budget of its own (shared
    /// by the sandbox's loops when the loops are the sandbox's own).
    package let unread: UnreadBudget

    let epoll: CInt
    let wakeFD: CInt
    /// The loop's life and its command queue under one lock, so nothing is queued after
    /// the loop has taken its last commands.
    let inbox = NIOLockedValueBox(Inbox())
    let stats = NIOLockedValueBox(Statistics())
    let nextID = NIOLockedValueBox<UInt64>(1)
    var thread: pthread_t?

    // Loop-thread state.
    var entries: [UInt64: Entry] = [:]
    var tunnels: [UInt64: Tunnel] = [:]
    var connects: [UInt64: PendingConnect] = [:]
    var listeners: [UInt64: Listener] = [:]
    var firstBytes: [UInt64: FirstBytesWait] = [:]
    var ready: [(Tunnel, Bool)] = []
    var pipes: PipePool
    var tunnelsTotal = 0
    var bytesTotal: UInt64 = 0
    var lastIdleScan: UInt64 = 0

    /// Bytes one direction may move before other tunnels get their turn.
    static let fairnessRounds = 16

    /// The first bytes of each direction of a tunnel are copied through `scratch` with
    /// `recv`/`send`, the rest spliced. Handshakes and small exchanges come in packets
    /// whose data sits in the socket buffer's head, which `splice` must first copy into a
    /// page of its own and then move through a pipe: for them one copy out and one in is
    /// less work. A bulk transfer is past this after a few reads and is spliced.
    static let copiedBytes: UInt64 = 128 << 10
    /// The loop thread's buffer for copied bytes.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
    static let wakeToken: UInt64 = 0

    enum LifeState { case idle, running, stopping, stopped }

    struct Inbox {
        var state = LifeState.idle
        var queue: [Command] = []
    }

    enum Command {
        case listen(UInt64, CInt, UInt64, Bool, @Sendable (CInt) -> Void)
        case closeListeners(owner: UInt64?)
        case closeListener(CInt)
        case connect(PendingConnect)
        case splice(Tunnel)
        case close(UInt64)
        case stop
    }

    enum Entry {
        case listener(Listener)
        case connecting(PendingConnect)
        case awaitingBytes(FirstBytesWait)
        case tunnel(Tunnel, client: Bool)
    }

    /// - Parameters:
    ///   - pipeSize: the capacity asked for each pipe; 1 MiB lets one splice move a whole
    ///     receive window.
    ///   - pipePoolLimit: how many empty pipes to keep for reuse.
    ///   - unread: the sandbox's budget for bytes its blocked tunnels hold (shared by its loops).
    /// - Throws: `SystemCallError` when the epoll or eventfd cannot be made.
    package init(pipeSize: Int = 1 << 20, pipePoolLimit: Int = 16, unread: UnreadBudget = UnreadBudget(limit: .max)) throws {
        self.pipeSize = pipeSize
        self.pipePoolLimit = pipePoolLimit
        self.unread = unread
        self.pipes = PipePool(limit: pipePoolLimit)
        let epoll = epoll_create1(CInt(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw SystemCallError.last("epoll_create1") }
        let wake = eventfd(0, CInt(EFD_NONBLOCK) | CInt(EFD_CLOEXEC))
        guard wake >= 0 else {
            let code = errno
            close(epoll)
            throw SystemCallError("eventfd", code: code)
        }
        var event = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(u64: Self.wakeToken))
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &event) == 0 else {
            let code = errno
            close(wake)
            close(epoll)
            throw SystemCallError("epoll_ctl", code: code)
        }
        self.epoll = epoll
        self.wakeFD = wake
    }

    deinit {
        close(wakeFD)
        close(epoll)
        scratch.deallocate()
    }

    // MARK: - Public interface (any thread)

    /// Starts the loop's thread.
    /// - Throws: `SystemCallError` when the thread cannot be created.
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
            throw SystemCallError("pthread_create", code: result)
        }
        // Named for `top -H` and perf (a new thread otherwise keeps its creator's name, a
        // Swift concurrency worker's "…user-initiated-qos"), by the creator: named once
        // `start` returns, not whenever the thread gets to run.
        airlock_name_thread(thread, "airlock-splice")
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
    /// - Parameters:
    ///   - owner: names the listeners `closeListeners(owner:)` closes together (one
    ///     sandbox's, when sandboxes share the loop).
    ///   - shared: other loops accept on the same socket too (each given its own
    ///     descriptor for it): the loop waits on it exclusively (`EPOLLEXCLUSIVE`), so the
    ///     kernel wakes one of them per new connection, not all.
    package func listen(_ listener: CInt, owner: UInt64 = 0, shared: Bool = false,
                        onAccept: @escaping @Sendable (CInt) -> Void) {
        submit(.listen(makeID(), listener, owner, shared, onAccept))
    }

    /// Closes every listener (new connections are refused by the kernel); open
    /// connections and tunnels carry on.
    package func closeListeners() {
        submit(.closeListeners(owner: nil))
    }

    /// Closes the listeners `listen` was given with `owner`; other owners' listeners, and
    /// open connections and tunnels, carry on.
    package func closeListeners(owner: UInt64) {
        submit(.closeListeners(owner: owner))
    }

    /// A number no other `listen` owner of this process has (a sandbox's listeners on
    /// shared loops).
    package static func makeOwner() -> UInt64 {
        ownerCounter.withLockedValue { value in
            value += 1
            return value
        }
    }

    private static let ownerCounter = NIOLockedValueBox<UInt64>(0)

    /// Closes the listener on `fd` (one `listen` gave it); open connections carry on.
    package func closeListener(_ fd: CInt) {
        submit(.closeListener(fd))
    }

    /// A handle for a tunnel about to be spliced, so it can be tracked (and closed) before
    /// the loop has it.
    package func makeHandle() -> Handle {
        Handle(id: makeID(), loop: self)
    }

    /// Names one tunnel; closes it from any thread.
    package final class Handle: Sendable {
        let id: UInt64
        let loop: SocketLoop
        let closeRequested = NIOLockedValueBox(false)

        init(id: UInt64, loop: SocketLoop) {
            self.id = id
            self.loop = loop
        }

        /// Closes the tunnel (both sockets); its completion reports the bytes moved. A
        /// tunnel closed before the loop has started it ends as soon as it starts.
        package func close() {
            closeRequested.withLockedValue { $0 = true }
            loop.submit(.close(id))
        }

        var isClosed: Bool { closeRequested.withLockedValue { $0 } }
    }

    /// The loop's state as of its last turn.
    package var statistics: Statistics {
        stats.withLockedValue { $0 }
    }

    // MARK: - Commands

    func makeID() -> UInt64 {
        nextID.withLockedValue { id in
            defer { id += 1 }
            return id
        }
    }

    func submit(_ command: Command) {
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
    func refuse(_ command: Command) {
        switch command {
        case .listen(_, let fd, _, _, _):
            close(fd)
        case .connect(let pending):
            close(pending.fd)
            pending.finish(.failure(.stopped))
        case .splice(let tunnel):
            close(tunnel.client)
            close(tunnel.upstream)
            tunnel.completion(Totals(up: tunnel.up.bytes, down: 0, ending: "the gateway is stopping"))
        case .closeListeners, .closeListener, .close, .stop:
            break
        }
    }

    // MARK: - The loop (its own thread)

    func run() {
        // splice(2) into a socket whose peer is gone raises SIGPIPE on the calling thread
        // (there is no MSG_NOSIGNAL for it): block it here, so a sandbox that resets a
        // tunnel gets EPIPE on that tunnel instead of taking the gateway down. Only this
        // thread's mask changes; commands the gateway starts are unaffected.
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)
        pipes.prepare(size: pipeSize)
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        lastIdleScan = Self.now()
        while true {
            let count = retryingInterrupted { epoll_wait(epoll, events, CInt(capacity), waitTimeout()) }
            if count < 0 { break }
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
    func runCommands() -> Bool {
        let queued = inbox.withLockedValue { inbox -> [Command] in
            defer { inbox.queue.removeAll(keepingCapacity: true) }
            return inbox.queue
        }
        var stop = false
        for command in queued {
            switch command {
            case .listen(let id, let fd, let owner, let shared, let onAccept):
                let listener = Listener(fd: fd, owner: owner, shared: shared, onAccept: onAccept)
                // Accepting must never block the loop, whatever mode the socket came in.
                let flags = fcntl(fd, F_GETFL)
                if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
                if register(fd, token: id, events: listener.events) {
                    listeners[id] = listener
                    entries[id] = .listener(listener)
                } else {
                    close(fd)
                }
            case .closeListeners(let owner):
                closeListenersNow(owner: owner)
            case .closeListener(let fd):
                // Only a listener the loop still holds: one closed already may share its
                // number with a newer descriptor.
                for (id, listener) in listeners where listener.fd == fd {
                    entries[id] = nil
                    listeners[id] = nil
                    close(fd)
                }
            case .connect(let pending):
                waitForConnect(pending)
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

    func handle(token: UInt64, events: UInt32) {
        guard let entry = entries[token] else { return }
        switch entry {
        case .listener(let listener):
            accept(on: listener, token: token)
        case .connecting(let pending):
            finishConnect(pending)
        case .awaitingBytes(let wait):
            endFirstBytesWait(wait, readable: true)
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

    func waitTimeout() -> CInt {
        if !ready.isEmpty { return 0 }
        var timeout: UInt64 = 1_000_000_000
        let now = Self.now()
        for pending in connects.values {
            timeout = min(timeout, pending.deadline > now ? pending.deadline - now : 0)
        }
        for wait in firstBytes.values {
            timeout = min(timeout, wait.deadline > now ? wait.deadline - now : 0)
        }
        for listener in listeners.values where listener.pausedUntil > 0 {
            timeout = min(timeout, listener.pausedUntil > now ? listener.pausedUntil - now : 0)
        }
        return CInt((timeout + 999_999) / 1_000_000)
    }

    /// Expires connects and waits for first bytes, resumes paused listeners, and (once a second) closes idle tunnels.
    func housekeeping() {
        let now = Self.now()
        for pending in connects.values where pending.deadline <= now {
            connects[pending.id] = nil
            entries[pending.id] = nil
            _ = epoll_ctl(epoll, EPOLL_CTL_DEL, pending.fd, nil)
            close(pending.fd)
            pending.finish(.failure(.timedOut))
        }
        for wait in firstBytes.values where wait.deadline <= now {
            endFirstBytesWait(wait, readable: false)
        }
        for (id, listener) in listeners where listener.pausedUntil > 0 && listener.pausedUntil <= now {
            listener.pausedUntil = 0
            resume(listener, token: id)
        }
        guard now - lastIdleScan >= 1_000_000_000 || now < lastIdleScan else { return }
        lastIdleScan = now
        for tunnel in tunnels.values where now > tunnel.lastActivity && now - tunnel.lastActivity >= tunnel.idleNanos {
            closeTunnel(tunnel, ending: "idle for \(Self.describe(nanoseconds: tunnel.idleNanos))")
        }
        countUnread(now: now)
    }

    func publish() {
        let snapshot = Statistics(tunnels: tunnels.count, pipesInUse: pipes.inUse, pipesPooled: pipes.pooled,
                                  tunnelsTotal: tunnelsTotal, bytesTotal: bytesTotal)
        stats.withLockedValue { $0 = snapshot }
    }

    /// Closes the listeners of `owner`, or every listener when nil.
    func closeListenersNow(owner: UInt64? = nil) {
        for (id, listener) in listeners where owner == nil || listener.owner == owner {
            entries[id] = nil
            listeners[id] = nil
            close(listener.fd)
        }
    }

    func stopEverything() {
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
            pending.finish(.failure(.stopped))
        }
        connects.removeAll()
        for wait in Array(firstBytes.values) {
            endFirstBytesWait(wait, readable: false)
        }
        for tunnel in Array(tunnels.values) {
            closeTunnel(tunnel, ending: "the gateway is stopping")
        }
        pipes.closeAll()
        entries.removeAll()
    }

    func register(_ fd: CInt, token: UInt64, events: UInt32) -> Bool {
        var event = epoll_event(events: events, data: epoll_data_t(u64: token))
        return epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) == 0
    }

    /// The outcome of a non-blocking connect: 0, or the errno it failed with.
    static func socketError(_ fd: CInt) -> CInt {
        var error: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { return errno }
        return error
    }

    /// "30 s", or "200 ms" below a whole second.
    static func describe(nanoseconds: UInt64) -> String {
        nanoseconds % 1_000_000_000 == 0 ? "\(nanoseconds / 1_000_000_000) s" : "\(nanoseconds / 1_000_000) ms"
    }

    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
