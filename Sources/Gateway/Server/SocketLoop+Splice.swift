#if canImport(Glibc)
import Glibc
#endif
import CSplice
import NIOConcurrencyHelpers
import NIOCore
import SystemCalls

extension SocketLoop {
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
    ///   - unread: the budget of the sandbox the tunnel belongs to; nil for the loop's own
    ///     (`unread`). Loops that serve several sandboxes are given each tunnel's.
    ///   - onLoopThread: the caller runs on this loop's thread (an accept's completion):
    ///     the tunnel starts at once, not through the command queue and the loop's wake-up.
    ///   - nonBlocking: both sockets are known to be non-blocking already (accepted and
    ///     dialed by a socket loop), so their flags need no look.
    ///   - completion: runs once on the loop thread when the tunnel is gone, with what it moved.
    package func splice(
        _ handle: Handle, client: CInt, upstream: CInt, toClient: [UInt8] = [], toUpstream: [UInt8] = [],
        idleTimeout: TimeAmount, unread: UnreadBudget? = nil, onLoopThread: Bool = false, nonBlocking: Bool = false,
        completion: @escaping @Sendable (Totals) -> Void
    ) {
        // A blocking socket would stall every tunnel of the loop.
        if !nonBlocking {
            for fd in [client, upstream] {
                let flags = fcntl(fd, F_GETFL)
                if flags >= 0 && flags & O_NONBLOCK == 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
            }
        }
        // The first bytes go out from the caller's thread when the sockets take them (they
        // nearly always do: both connections are new), so the client has its answer without
        // waiting for the loop's thread to wake.
        let up = Direction(pending: toUpstream, counted: true)
        let down = Direction(pending: toClient, counted: false)
        up.writePending(to: upstream)
        down.writePending(to: client)
        let tunnel = Tunnel(
            handle: handle, client: client, upstream: upstream, up: up, down: down,
            idleNanos: UInt64(max(1, idleTimeout.nanoseconds)), now: Self.now(), unread: unread ?? self.unread,
            completion: completion)
        if onLoopThread {
            startTunnel(tunnel)
        } else {
            submit(.splice(tunnel))
        }
    }

    /// One direction of a tunnel: bytes the gateway still has to write, then the pipe.
    final class Direction {
        var pending: [UInt8]
        var pendingOffset = 0
        var pipe: PipePool.Pipe?
        var inPipe = 0
        var inputEnded = false
        var outputShut = false
        var blocked = false
        var bytes: UInt64
        /// Bytes this direction counts against the loop's `UnreadBudget` while blocked.
        var held = 0
        /// When its reader last took a byte (or the tunnel started).
        var lastDrained: UInt64 = 0
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
                let written = retryingInterrupted {
                    pending.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, CInt(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                }
                if written < 0 { return errno }
                pendingOffset += written
            }
            pending = []
            pendingOffset = 0
            return 0
        }
    }

    /// Two sockets spliced both ways.
    final class Tunnel {
        let id: UInt64
        let handle: Handle
        let client: CInt
        let upstream: CInt
        let up: Direction
        let down: Direction
        let idleNanos: UInt64
        /// The budget of the sandbox the tunnel belongs to.
        let unread: UnreadBudget
        let completion: @Sendable (Totals) -> Void
        var lastActivity: UInt64
        var open = true
        init(handle: Handle, client: CInt, upstream: CInt, up: Direction, down: Direction, idleNanos: UInt64,
             now: UInt64, unread: UnreadBudget, completion: @escaping @Sendable (Totals) -> Void) {
            self.id = handle.id
            self.unread = unread
            self.handle = handle
            self.client = client
            self.upstream = upstream
            self.up = up
            self.down = down
            self.idleNanos = idleNanos
            self.lastActivity = now
            self.completion = completion
            up.lastDrained = now
            down.lastDrained = now
        }
    }

    func startTunnel(_ tunnel: Tunnel) {
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

    enum PumpResult { case idle, blocked, done, yield, failed(CInt) }

    /// Moves one direction's bytes until its input is empty, its output is full, or it
    /// has had its turn.
    func drive(_ tunnel: Tunnel, up: Bool) {
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

    func pump(_ tunnel: Tunnel, up: Bool) -> PumpResult {
        let direction = up ? tunnel.up : tunnel.down
        let input = up ? tunnel.client : tunnel.upstream
        let output = up ? tunnel.upstream : tunnel.client
        var turns = 0
        while true {
            if direction.pendingOffset < direction.pending.count {
                let left = direction.pending.count - direction.pendingOffset
                let code = direction.writePending(to: output)
                if direction.pending.count - direction.pendingOffset < left {
                    tunnel.lastActivity = Self.now()
                    direction.lastDrained = tunnel.lastActivity
                    release(direction, of: tunnel)
                }
                if code == EAGAIN {
                    direction.blocked = true
                    return .blocked
                }
                if code != 0 { return .failed(code) }
                continue
            }
            if direction.inPipe > 0, let pipe = direction.pipe {
                let moved = retryingInterrupted { airlock_splice(pipe.read, output, direction.inPipe) }
                if moved < 0 {
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
                direction.lastDrained = tunnel.lastActivity
                release(direction, of: tunnel)
                continue
            }
            direction.blocked = false
            release(direction, of: tunnel)
            if let pipe = direction.pipe {
                direction.pipe = nil
                pipes.release(pipe)
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
            if direction.bytes < Self.copiedBytes {
                if let failure = copy(direction, of: tunnel, from: input, to: output) { return failure }
                continue
            }
            guard let pipe = pipes.acquire() else { return .failed(EMFILE) }
            let moved = retryingInterrupted { airlock_splice(input, pipe.write, pipes.capacity) }
            if moved > 0 {
                direction.pipe = pipe
                direction.inPipe = moved
                direction.bytes += UInt64(moved)
                bytesTotal += UInt64(moved)
                tunnel.lastActivity = Self.now()
                continue
            }
            let code = errno
            pipes.release(pipe)
            if moved == 0 {
                direction.inputEnded = true
                continue
            }
            if code == EAGAIN { return .idle }
            return .failed(code)
        }
    }

    /// Copies what `input` holds (up to the scratch buffer) to `output`; what `output` does
    /// not take now becomes the direction's pending bytes. Returns nil to go on pumping,
    /// or how the pump ends: the input is empty, or a socket failed.
    private func copy(_ direction: Direction, of tunnel: Tunnel, from input: CInt, to output: CInt) -> PumpResult? {
        let received = retryingInterrupted { recv(input, scratch.baseAddress, scratch.count, CInt(MSG_DONTWAIT)) }
        if received == 0 {
            direction.inputEnded = true
            return nil
        }
        if received < 0 {
            let code = errno
            return code == EAGAIN ? .idle : .failed(code)
        }
        direction.bytes += UInt64(received)
        bytesTotal += UInt64(received)
        tunnel.lastActivity = Self.now()
        let sent = retryingInterrupted { send(output, scratch.baseAddress, received, CInt(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        if sent < 0 && errno != EAGAIN { return .failed(errno) }
        let taken = max(0, sent)
        if taken > 0 { direction.lastDrained = tunnel.lastActivity }
        if taken < received {
            // The output is full: the rest waits as pending bytes, written first when the
            // output can take more (and counted against the unread budget while it waits).
            direction.pending = Array(UnsafeRawBufferPointer(rebasing: scratch[taken..<received]))
            direction.pendingOffset = 0
        }
        return nil
    }

    func runReady() {
        guard !ready.isEmpty else { return }
        let turn = ready
        ready.removeAll(keepingCapacity: true)
        for (tunnel, up) in turn where tunnel.open {
            drive(tunnel, up: up)
        }
    }

    func closeTunnel(_ tunnel: Tunnel, ending: String?) {
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
        release(tunnel.up, of: tunnel)
        release(tunnel.down, of: tunnel)
        for direction in [tunnel.up, tunnel.down] {
            if let pipe = direction.pipe {
                // Bytes still in it are lost with the connection; the pipe is not reused.
                direction.pipe = nil
                pipes.discard(pipe)
            }
        }
        tunnel.completion(Totals(up: tunnel.up.bytes, down: tunnel.down.bytes, ending: ending))
    }

    /// A blocked direction whose reader has taken nothing for this long counts against the
    /// unread budget; a reader that keeps taking bytes never does, however much is in flight.
    static let stalledNanos: UInt64 = 2_000_000_000

    /// Counts the directions whose reader stopped (blocked, nothing taken for
    /// `stalledNanos`) against their sandbox's unread budget with what they hold now, and
    /// closes the longest stalled of each sandbox over its budget. Runs from the
    /// once-a-second scan. Each tunnel counts against its own sandbox's budget, so on loops
    /// shared by several sandboxes one sandbox's stalled readers close only its own tunnels.
    func countUnread(now: UInt64) {
        var over: [ObjectIdentifier: UnreadBudget] = [:]
        for tunnel in tunnels.values {
            for (direction, output) in [(tunnel.up, tunnel.upstream), (tunnel.down, tunnel.client)]
            where direction.blocked && now > direction.lastDrained && now - direction.lastDrained >= Self.stalledNanos {
                hold(direction, of: tunnel, output: output)
            }
            if tunnel.unread.bytes > tunnel.unread.limit { over[ObjectIdentifier(tunnel.unread)] = tunnel.unread }
        }
        for budget in over.values { closeLongestUnread(of: budget) }
    }

    /// Counts what a blocked direction holds (its pipe, its pending bytes, its output
    /// socket's unsent queue) against its tunnel's unread budget.
    func hold(_ direction: Direction, of tunnel: Tunnel, output: CInt) {
        var queued: CInt = 0
        if ioctl(output, UInt(TIOCOUTQ), &queued) < 0 { queued = 0 }
        let held = direction.inPipe + (direction.pending.count - direction.pendingOffset) + Int(max(0, queued))
        tunnel.unread.add(held - direction.held)
        direction.held = held
    }

    /// Takes a direction's bytes off its tunnel's unread budget (it drained, or its tunnel closed).
    func release(_ direction: Direction, of tunnel: Tunnel) {
        guard direction.held != 0 else { return }
        tunnel.unread.add(-direction.held)
        direction.held = 0
    }

    /// Closes this loop's tunnels of `budget`'s sandbox whose reader has taken nothing for
    /// longest until the sandbox is within its unread budget again (or this loop holds
    /// nothing more of it).
    func closeLongestUnread(of budget: UnreadBudget) {
        while budget.bytes > budget.limit {
            var oldest: (tunnel: Tunnel, direction: Direction)?
            for tunnel in tunnels.values where tunnel.unread === budget {
                for direction in [tunnel.up, tunnel.down] where direction.held > 0 {
                    if oldest == nil || direction.lastDrained < oldest!.direction.lastDrained { oldest = (tunnel, direction) }
                }
            }
            guard let (tunnel, direction) = oldest else { return }
            let reader = direction === tunnel.down ? "the client" : "the upstream"
            closeTunnel(tunnel, ending: "\(reader) left \(direction.held >> 10) KiB unread past the sandbox's unread-tunnel budget (\(budget.limit >> 20) MiB)")
        }
    }
}
