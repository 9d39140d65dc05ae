#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestSupport
import XCTest
@testable import Gateway

/// The socket loop on real loopback sockets: splicing (both ways, replayed bytes,
/// half-close, byte counts, a large transfer against a slow reader, idle timeout, close,
/// shutdown), connecting (success, refusal, timeout) and accepting.
final class SocketLoopTests: XCTestCase {
    private var loop: SocketLoop!
    private var group: MultiThreadedEventLoopGroup!

    override func setUpWithError() throws {
        loop = try SocketLoop()
        try loop.start()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDownWithError() throws {
        loop.shutdown()
        try group.syncShutdownGracefully()
    }

    // MARK: the thread

    func testTheLoopsThreadIsNamedForTopAndPerf() throws {
        // setUp started one loop; its thread, not the creator's, carries the name.
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
        let names = tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
        XCTAssertTrue(names.contains("airlock-splice\n"), "thread names: \(names.sorted())")
    }

    // MARK: splicing

    func testSplicesBothWaysReplaysEarlyBytesAndPropagatesHalfClose() throws {
        let client = try LoopbackPair()
        let upstream = try LoopbackPair()
        let ended = Ended()
        loop.splice(loop.makeHandle(), client: client.inside, upstream: upstream.inside,
                    toClient: Array("HELLO-CLIENT ".utf8), toUpstream: Array("EARLY ".utf8),
                    idleTimeout: .seconds(30)) { ended.record($0) }

        try client.outside.send("ping")
        XCTAssertEqual(try upstream.outside.receive(count: 10), "EARLY ping", "replayed bytes go first, then the client's")
        try upstream.outside.send("pong")
        XCTAssertEqual(try client.outside.receive(count: 17), "HELLO-CLIENT pong", "the gateway's answer goes first")

        // The client half-closes: the upstream sees the end, and can still answer.
        client.outside.shutdownWrite()
        XCTAssertEqual(try upstream.outside.receiveToEnd(), "", "the upstream sees the client's end of input")
        try upstream.outside.send(" late")
        upstream.outside.close()
        XCTAssertEqual(try client.outside.receiveToEnd(), " late", "bytes after a half-close still arrive, then the end")

        let totals = try XCTUnwrap(ended.wait(seconds: 5), "the tunnel reports its end")
        XCTAssertEqual(totals.up, UInt64("EARLY ping".utf8.count), "replayed bytes count as the client's")
        XCTAssertEqual(totals.down, UInt64("pong late".utf8.count), "the gateway's own answer is not counted")
        XCTAssertNil(totals.ending, "a clean end has no reason")
        XCTAssertTrue(Wait.until { self.loop.statistics.tunnels == 0 && self.loop.statistics.pipesInUse == 0 },
                      "\(loop.statistics)")
        XCTAssertEqual(loop.statistics.tunnelsTotal, 1)
    }

    func testLargeTransfersBothWaysArriveIntactPastASlowReader() throws {
        let client = try LoopbackPair()
        let upstream = try LoopbackPair()
        let ended = Ended()
        loop.splice(loop.makeHandle(), client: client.inside, upstream: upstream.inside, idleTimeout: .seconds(30)) {
            ended.record($0)
        }
        let down = 48 << 20
        let up = 8 << 20
        let senders = DispatchGroup()
        DispatchQueue.global().async(group: senders) {
            try? upstream.outside.sendPattern(count: down, seed: 7)
            upstream.outside.shutdownWrite()
        }
        DispatchQueue.global().async(group: senders) {
            try? client.outside.sendPattern(count: up, seed: 11)
            client.outside.shutdownWrite()
        }
        let upstreamReceived = NIOLockedValueBox<Result<Int, Error>?>(nil)
        DispatchQueue.global().async(group: senders) {
            upstreamReceived.withLockedValue { $0 = Result { try upstream.outside.receivePattern(seed: 11) } }
        }
        // The client does not read for a while: the socket buffers fill and the loop must
        // hold bytes back (in its pipe) until the client reads again.
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(try client.outside.receivePattern(seed: 7), down, "every byte, in order, to the client")
        XCTAssertEqual(senders.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(try upstreamReceived.withLockedValue { $0 }?.get(), up, "every byte, in order, to the upstream")
        let totals = try XCTUnwrap(ended.wait(seconds: 10))
        XCTAssertEqual(totals.down, UInt64(down))
        XCTAssertEqual(totals.up, UInt64(up))
        XCTAssertGreaterThanOrEqual(loop.statistics.bytesTotal, UInt64(down + up))
    }

    /// A tunnel's first bytes are copied, not spliced: when the client's socket is full the
    /// rest waits in the gateway until the client reads again, and arrives intact and in order.
    func testFirstBytesCopiedPastAFullClientArriveIntact() throws {
        let client = try LoopbackPair()
        let upstream = try LoopbackPair()
        // Small buffers on the client's side, so the copied bytes do not all fit in them.
        var small: CInt = 16384
        XCTAssertEqual(setsockopt(client.inside, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<CInt>.size)), 0)
        XCTAssertEqual(setsockopt(client.outside.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<CInt>.size)), 0)
        let ended = Ended()
        loop.splice(loop.makeHandle(), client: client.inside, upstream: upstream.inside, idleTimeout: .seconds(30)) {
            ended.record($0)
        }
        // Less than the copied share of a direction, so every byte takes the copying path.
        let down = Int(SocketLoop.copiedBytes) - 1000
        try upstream.outside.sendPattern(count: down, seed: 3)
        upstream.outside.shutdownWrite()
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(loop.statistics.pipesInUse, 0, "copied bytes wait in the gateway without a pipe")
        XCTAssertEqual(try client.outside.receivePattern(seed: 3), down, "every byte, in order, once the client reads")
        client.outside.shutdownWrite()
        let totals = try XCTUnwrap(ended.wait(seconds: 10))
        XCTAssertEqual(totals.down, UInt64(down))
        XCTAssertNil(totals.ending)
    }

    /// Tunnels whose client stopped reading hold what the gateway read for them; past the
    /// sandbox's unread budget the one whose client took nothing for longest is closed, with
    /// the reason; a client that reads keeps its tunnel and gets every byte; closed tunnels
    /// give their bytes back to the budget.
    func testTunnelsWhoseClientStoppedReadingAreClosedPastTheUnreadBudgetLongestFirst() throws {
        // Small pipes and send buffers keep each stalled tunnel between about 100 and 400 KiB,
        // so sixteen of them go over 1 MiB and the last ones stay under it.
        let budget = UnreadBudget(limit: 1 << 20)
        let loop = try SocketLoop(pipeSize: 256 << 10, unread: budget)
        try loop.start()
        defer { loop.shutdown() }
        var stalled: [(client: LoopbackPair, upstream: LoopbackPair, ended: Ended)] = []
        for _ in 0..<16 {
            let client = try LoopbackPair()
            let upstream = try LoopbackPair()
            var size: CInt = 64 << 10
            _ = setsockopt(client.inside, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
            let ended = Ended()
            loop.splice(loop.makeHandle(), client: client.inside, upstream: upstream.inside, idleTimeout: .seconds(30)) {
                ended.record($0)
            }
            upstream.outside.sendUntilFull()
            stalled.append((client, upstream, ended))
        }
        let reading = (client: try LoopbackPair(), upstream: try LoopbackPair(), ended: Ended())
        loop.splice(loop.makeHandle(), client: reading.client.inside, upstream: reading.upstream.inside, idleTimeout: .seconds(30)) {
            reading.ended.record($0)
        }
        reading.client.outside.shutdownWrite()
        let sender = DispatchGroup()
        DispatchQueue.global().async(group: sender) {
            try? reading.upstream.outside.sendPattern(count: 16 << 20, seed: 5)
            reading.upstream.outside.shutdownWrite()
        }
        XCTAssertEqual(try reading.client.outside.receivePattern(seed: 5), 16 << 20, "a client that reads gets every byte")
        XCTAssertEqual(sender.wait(timeout: .now() + 30), .success)
        XCTAssertNil(try XCTUnwrap(reading.ended.wait(seconds: 10)).ending, "and its tunnel ends cleanly")

        // Every stalled tunnel has been counted (2 s without a read) and checked (once a second).
        Thread.sleep(forTimeInterval: 3.5)
        let first = try XCTUnwrap(stalled[0].ended.wait(seconds: 1), "the tunnel whose client took nothing for longest is closed: \(budget.bytes) bytes held, \(stalled.map { $0.ended.wait(seconds: 0)?.ending ?? "open" })")
        let reason = try XCTUnwrap(first.ending)
        XCTAssertTrue(reason.hasPrefix("the client left ") && reason.hasSuffix(" KiB unread past the sandbox's unread-tunnel budget (1 MiB)"), reason)
        XCTAssertEqual(try stalled[0].client.outside.receiveToEnd().isEmpty, false, "the client saw its bytes up to the close")
        XCTAssertLessThanOrEqual(budget.bytes, budget.limit, "the tunnels left open hold at most the budget")
        let open = stalled.filter { $0.ended.wait(seconds: 0) == nil }
        XCTAssertFalse(open.isEmpty, "only as many tunnels are closed as the budget needs")
        XCTAssertGreaterThan(budget.bytes, 0, "the open stalled tunnels are counted")
        for tunnel in stalled {
            tunnel.client.outside.close()
            tunnel.upstream.outside.close()
        }
        XCTAssertTrue(Wait.until { budget.bytes == 0 && loop.statistics.tunnels == 0 }, "closed tunnels give their bytes back: \(budget.bytes)")
    }

    /// Loops shared by several sandboxes (the gateway daemon): each tunnel counts against its
    /// own sandbox's budget, so a sandbox far over its budget loses its own stalled tunnels
    /// and never another sandbox's, even one stalled for longer.
    func testOnASharedLoopASandboxOverItsUnreadBudgetClosesOnlyItsOwnTunnels() throws {
        let flooding = UnreadBudget(limit: 1 << 20)
        let quiet = UnreadBudget(limit: 64 << 20)
        let loop = try SocketLoop(pipeSize: 256 << 10)
        try loop.start()
        defer { loop.shutdown() }
        func stall(_ budget: UnreadBudget) throws -> (client: LoopbackPair, upstream: LoopbackPair, ended: Ended) {
            let client = try LoopbackPair()
            let upstream = try LoopbackPair()
            var size: CInt = 64 << 10
            _ = setsockopt(client.inside, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
            let ended = Ended()
            loop.splice(loop.makeHandle(), client: client.inside, upstream: upstream.inside, idleTimeout: .seconds(30), unread: budget) {
                ended.record($0)
            }
            upstream.outside.sendUntilFull()
            return (client, upstream, ended)
        }
        // The quiet sandbox's tunnel stalls first: it is the longest stalled on the loop.
        let other = try stall(quiet)
        Thread.sleep(forTimeInterval: 0.2)
        let flood = try (0..<12).map { _ in try stall(flooding) }
        Thread.sleep(forTimeInterval: 3.5)
        let closed = flood.compactMap { $0.ended.wait(seconds: 0) }
        XCTAssertFalse(closed.isEmpty, "the flooding sandbox's stalled tunnels are closed: \(flooding.bytes) bytes held")
        XCTAssertTrue(closed.allSatisfy { $0.ending?.hasSuffix("unread past the sandbox's unread-tunnel budget (1 MiB)") == true }, "\(closed)")
        XCTAssertNil(other.ended.wait(seconds: 0), "the other sandbox's tunnel stays open")
        XCTAssertGreaterThan(quiet.bytes, 0, "and counts against its own budget")
        XCTAssertLessThanOrEqual(flooding.bytes, flooding.limit)
        for tunnel in flood + [other] {
            tunnel.client.outside.close()
            tunnel.upstream.outside.close()
        }
        XCTAssertTrue(Wait.until { flooding.bytes == 0 && quiet.bytes == 0 && loop.statistics.tunnels == 0 })
    }

    func testAClientResettingMidTransferEndsOnlyItsTunnel() throws {
        let client = try LoopbackPair()
        let upstream = try LoopbackPair()
        let ended = Ended()
        loop.splice(loop.makeHandle(), client: client.inside, upstream: upstream.inside, idleTimeout: .seconds(30)) {
            ended.record($0)
        }
        let sender = DispatchGroup()
        DispatchQueue.global().async(group: sender) {
            try? upstream.outside.sendPattern(count: 64 << 20, seed: 3)
        }
        _ = try client.outside.receive(count: 1000)
        // Reset, with bytes still flowing towards it: the loop's next splice into this
        // socket fails, which ends this tunnel and nothing else (and never the process).
        var linger = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(client.outside.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        client.outside.close()
        let totals = try XCTUnwrap(ended.wait(seconds: 10), "the tunnel ends")
        XCTAssertNotNil(totals.ending, "a reset is not a clean end")
        XCTAssertEqual(try upstream.outside.receiveToEnd(), "", "the upstream side is closed too")
        upstream.outside.close()
        XCTAssertEqual(sender.wait(timeout: .now() + 20), .success)
        XCTAssertTrue(Wait.until { self.loop.statistics.tunnels == 0 && self.loop.statistics.pipesInUse == 0 }, "\(loop.statistics)")
    }

    func testAnIdleTunnelIsClosedAfterItsTimeout() throws {
        let client = try LoopbackPair()
        let upstream = try LoopbackPair()
        let ended = Ended()
        loop.splice(loop.makeHandle(), client: client.inside, upstream: upstream.inside, idleTimeout: .milliseconds(200)) {
            ended.record($0)
        }
        let totals = try XCTUnwrap(ended.wait(seconds: 5), "an idle tunnel is closed")
        XCTAssertEqual(totals.ending, "idle for 200 ms")
        XCTAssertEqual(try client.outside.receiveToEnd(), "", "the client sees the connection end")
        XCTAssertEqual(try upstream.outside.receiveToEnd(), "", "so does the upstream")
    }

    func testCloseAndShutdownEndTunnelsAndLaterTunnelsAreRefused() throws {
        let first = (try LoopbackPair(), try LoopbackPair())
        let second = (try LoopbackPair(), try LoopbackPair())
        let firstEnded = Ended()
        let secondEnded = Ended()
        let handle = loop.makeHandle()
        loop.splice(handle, client: first.0.inside, upstream: first.1.inside, idleTimeout: .seconds(30)) { firstEnded.record($0) }
        loop.splice(loop.makeHandle(), client: second.0.inside, upstream: second.1.inside, idleTimeout: .seconds(30)) {
            secondEnded.record($0)
        }
        try first.0.outside.send("x")
        XCTAssertEqual(try first.1.outside.receive(count: 1), "x")
        handle.close()
        XCTAssertEqual(try XCTUnwrap(firstEnded.wait(seconds: 5)).ending, "closed by the gateway")
        XCTAssertEqual(try XCTUnwrap(firstEnded.wait(seconds: 0)).up, 1)
        XCTAssertNil(secondEnded.wait(seconds: 0.1), "closing one tunnel leaves the others")

        loop.shutdown()
        XCTAssertEqual(try XCTUnwrap(secondEnded.wait(seconds: 5)).ending, "the gateway is stopping")
        XCTAssertEqual(try second.0.outside.receiveToEnd(), "")

        let late = (try LoopbackPair(), try LoopbackPair())
        let lateEnded = Ended()
        loop.splice(loop.makeHandle(), client: late.0.inside, upstream: late.1.inside, idleTimeout: .seconds(30)) { lateEnded.record($0) }
        XCTAssertEqual(try XCTUnwrap(lateEnded.wait(seconds: 1)).ending, "the gateway is stopping",
                       "a stopped loop refuses new tunnels at once")
        XCTAssertEqual(try late.0.outside.receiveToEnd(), "", "and closes their sockets")
    }

    func testIdleTunnelsHoldNoPipes() throws {
        var pairs: [(LoopbackPair, LoopbackPair)] = []
        for _ in 0..<40 {
            let pair = (try LoopbackPair(), try LoopbackPair())
            loop.splice(loop.makeHandle(), client: pair.0.inside, upstream: pair.1.inside, idleTimeout: .seconds(30)) { _ in }
            pairs.append(pair)
        }
        for pair in pairs {
            try pair.0.outside.send("a")
            XCTAssertEqual(try pair.1.outside.receive(count: 1), "a")
            try pair.1.outside.send("b")
            XCTAssertEqual(try pair.0.outside.receive(count: 1), "b")
        }
        XCTAssertTrue(Wait.until { self.loop.statistics.tunnels == 40 }, "\(loop.statistics)")
        let statistics = loop.statistics
        XCTAssertEqual(statistics.pipesInUse, 0, "no bytes in flight, so no pipe held")
        XCTAssertLessThanOrEqual(statistics.pipesPooled, loop.pipePoolLimit)
    }

    // MARK: connecting

    func testConnectReturnsAConnectedNonBlockingSocket() throws {
        let listener = try Listener()
        let fd = try loop.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: Int(listener.port)), timeout: .seconds(5), on: group.next()).wait()
        defer { close(fd) }
        let accepted = accept(listener.fd, nil, nil)
        XCTAssertGreaterThanOrEqual(accepted, 0)
        close(accepted)
        XCTAssertNotEqual(fcntl(fd, F_GETFL) & O_NONBLOCK, 0)
        XCTAssertNotEqual(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0)
    }

    func testConnectToAClosedPortFailsWithTheSystemsReason() throws {
        let port = TCP.freePort()
        XCTAssertThrowsError(try loop.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: Int(port)), timeout: .seconds(5), on: group.next()).wait()) {
            XCTAssertEqual($0 as? SocketLoop.ConnectError, .failed(reason: "Connection refused"))
        }
    }

    func testConnectThatIsNotAnsweredTimesOut() throws {
        // A listener with a full accept queue drops new SYNs: the handshake never ends.
        let listener = try Listener(backlog: 0)
        let queued = try LoopbackPair.connect(port: listener.port)
        defer { close(queued) }
        // `.timedOut` is the loop's own timer; without it the kernel would give up much
        // later with "Connection timed out" (`.failed`), so no clock is needed here.
        XCTAssertThrowsError(try loop.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: Int(listener.port)), timeout: .milliseconds(300),
                                              on: group.next()).wait()) {
            XCTAssertEqual($0 as? SocketLoop.ConnectError, .timedOut)
        }
    }

    // MARK: accepting

    func testAcceptsEveryConnectionNonBlockingAndStopsWhenListenersClose() throws {
        let listener = try Listener()
        let accepted = NIOLockedValueBox<[CInt]>([])
        loop.listen(listener.takeDescriptor()) { fd in accepted.withLockedValue { $0.append(fd) } }
        var clients: [CInt] = []
        defer { clients.forEach { close($0) } }
        for _ in 0..<20 { clients.append(try LoopbackPair.connect(port: listener.port)) }
        XCTAssertTrue(Wait.until { accepted.withLockedValue { $0.count } == 20 }, "every connection is accepted")
        for fd in accepted.withLockedValue({ $0 }) {
            XCTAssertNotEqual(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "accepted sockets are non-blocking")
            XCTAssertNotEqual(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0, "and close-on-exec")
            close(fd)
        }
        loop.closeListeners()
        XCTAssertTrue(Wait.until { !TCP.canConnect(host: "127.0.0.1", port: listener.port) }, "closed listeners refuse connections")
    }

    /// One listening socket served by two loops (the proxy's, on every loop): each new
    /// connection is accepted once, by either; the socket accepts until every loop has
    /// closed its descriptor for it.
    func testASharedListenerIsAcceptedOnceByEitherLoopUntilBothClose() throws {
        let other = try SocketLoop()
        try other.start()
        defer { other.shutdown() }
        let listener = try Listener()
        let first = listener.takeDescriptor()
        let second = fcntl(first, F_DUPFD_CLOEXEC, 0)
        XCTAssertGreaterThanOrEqual(second, 0)
        let accepted = NIOLockedValueBox<[Int: Int]>([:])
        loop.listen(first, shared: true) { fd in close(fd); accepted.withLockedValue { $0[0, default: 0] += 1 } }
        other.listen(second, shared: true) { fd in close(fd); accepted.withLockedValue { $0[1, default: 0] += 1 } }
        var clients: [CInt] = []
        defer { clients.forEach { close($0) } }
        for _ in 0..<40 { clients.append(try LoopbackPair.connect(port: listener.port)) }
        XCTAssertTrue(Wait.until { accepted.withLockedValue { $0.values.reduce(0, +) } == 40 }, "\(accepted.withLockedValue { $0 })")
        Thread.sleep(forTimeInterval: 0.1)
        XCTAssertEqual(accepted.withLockedValue { $0.values.reduce(0, +) }, 40, "each connection accepted exactly once")

        loop.closeListeners()
        let before = accepted.withLockedValue { $0[1, default: 0] }
        // Connections made after the first loop let go reach the second.
        var accepting = false
        for _ in 0..<50 where !accepting {
            clients.append(try LoopbackPair.connect(port: listener.port))
            accepting = Wait.until(timeout: 0.2) { accepted.withLockedValue { $0[1, default: 0] } > before }
        }
        XCTAssertTrue(accepting, "the other loop still accepts on the shared socket")
        other.closeListeners()
        XCTAssertTrue(Wait.until { !TCP.canConnect(host: "127.0.0.1", port: listener.port) }, "closed on both loops, it refuses")
    }

    /// Sandboxes sharing a loop: closing one owner's listeners leaves the other's accepting.
    func testClosingOneOwnersListenersLeavesTheOthers() throws {
        let (mine, theirs) = (try Listener(), try Listener())
        let (me, them) = (SocketLoop.makeOwner(), SocketLoop.makeOwner())
        XCTAssertNotEqual(me, them)
        let accepted = NIOLockedValueBox(0)
        loop.listen(mine.takeDescriptor(), owner: me) { fd in close(fd); accepted.withLockedValue { $0 += 1 } }
        loop.listen(theirs.takeDescriptor(), owner: them) { fd in close(fd); accepted.withLockedValue { $0 += 1 } }
        loop.closeListeners(owner: me)
        XCTAssertTrue(Wait.until { !TCP.canConnect(host: "127.0.0.1", port: mine.port) }, "the closed owner's listener refuses")
        let before = accepted.withLockedValue { $0 }
        let client = try LoopbackPair.connect(port: theirs.port)
        defer { close(client) }
        XCTAssertTrue(Wait.until { accepted.withLockedValue { $0 } == before + 1 }, "the other owner's listener still accepts")
    }

    /// A loop splices the tunnels it accepted unless it holds four or more than the least
    /// busy loop; then the least busy one (the first of equals) takes the new one.
    func testATunnelIsHandedOnOnlyPastTheImbalance() {
        // `loads` lists every loop, the acceptor's own count among them.
        XCTAssertNil(TunnelPlacement.handOn(own: 0, loads: [0]), "one loop keeps everything")
        XCTAssertNil(TunnelPlacement.handOn(own: 0, loads: [0, 0]))
        XCTAssertNil(TunnelPlacement.handOn(own: 3, loads: [3, 0, 0]), "three more is not enough")
        XCTAssertEqual(TunnelPlacement.handOn(own: 4, loads: [4, 0, 0]), 1, "four more: the first least busy")
        XCTAssertEqual(TunnelPlacement.handOn(own: 10, loads: [7, 10, 5, 6]), 2, "the least busy, not the next")
        XCTAssertNil(TunnelPlacement.handOn(own: 10, loads: [10, 7, 7, 8]))
        XCTAssertNil(TunnelPlacement.handOn(own: 2, loads: [9, 2, 9]), "busier loops never take one")
    }
}

// MARK: - Helpers

/// Waits for a tunnel's completion.
private final class Ended: @unchecked Sendable {
    private let condition = NSCondition()
    private var totals: SocketLoop.Totals?

    func record(_ totals: SocketLoop.Totals) {
        condition.lock()
        self.totals = totals
        condition.broadcast()
        condition.unlock()
    }

    func wait(seconds: Double) -> SocketLoop.Totals? {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while totals == nil, condition.wait(until: deadline) {}
        return totals
    }
}

/// A listening socket on 127.0.0.1.
private final class Listener {
    private(set) var fd: CInt
    let port: UInt16

    init(backlog: CInt = 64) throws {
        let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, bound == 0, Glibc.listen(fd, backlog) == 0 else { throw SocketTestError("cannot listen") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        port = UInt16(bigEndian: address.sin_port)
    }

    /// Hands the descriptor to someone else, who closes it.
    func takeDescriptor() -> CInt {
        defer { fd = -1 }
        return fd
    }

    deinit {
        if fd >= 0 { close(fd) }
    }
}

/// A connected loopback TCP pair: `outside` is the test's end (blocking, with a receive
/// timeout), `inside` the end given to the loop.
private struct LoopbackPair {
    let outside: TestSocket
    let inside: CInt

    init() throws {
        let listener = try Listener()
        let outside = try Self.connect(port: listener.port)
        let inside = accept(listener.fd, nil, nil)
        guard inside >= 0 else { throw SocketTestError("accept failed") }
        self.outside = TestSocket(outside)
        self.inside = inside
    }

    static func connect(port: UInt16) throws -> CInt {
        let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        address.sin_port = port.bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw SocketTestError("connect failed: \(String(cString: strerror(errno)))") }
        return fd
    }
}

/// The test's end of a connection: blocking calls, each bounded by a 10 s receive timeout.
private final class TestSocket: @unchecked Sendable {
    let fd: CInt
    private var closed = false

    init(_ fd: CInt) {
        self.fd = fd
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(fd)
    }

    func shutdownWrite() {
        _ = Glibc.shutdown(fd, CInt(SHUT_WR))
    }

    func send(_ text: String) throws {
        try sendBytes(Array(text.utf8))
    }

    func sendBytes(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, CInt(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SocketTestError("send failed: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    /// Exactly `count` bytes, as text.
    func receive(count: Int) throws -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        while bytes.count < count {
            let n = recv(fd, &buffer, count - bytes.count, 0)
            guard n > 0 else { throw SocketTestError("receive ended after \(bytes.count) of \(count) bytes") }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Everything up to the end of the stream, as text (a reset counts as the end).
    func receiveToEnd() throws -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 || (n < 0 && errno == ECONNRESET) { break }
            guard n > 0 else { throw SocketTestError("no end of stream: \(String(cString: strerror(errno)))") }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Sends without waiting until the peer's buffers take nothing for 200 ms (or 256 MiB,
    /// or 10 s, or the connection ends): the connection is then full.
    func sendUntilFull() {
        let chunk = [UInt8](repeating: 0x61, count: 65536)
        var sent = 0
        var lastProgress = Date()
        let deadline = Date().addingTimeInterval(10)
        while sent < 256 << 20, Date() < deadline, Date().timeIntervalSince(lastProgress) < 0.2 {
            let n = chunk.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, CInt(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
                lastProgress = Date()
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                usleep(5000)
            } else {
                return
            }
        }
    }

    /// Sends `count` bytes of a pattern that depends on `seed` and the offset.
    func sendPattern(count: Int, seed: UInt8) throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        var sent = 0
        while sent < count {
            let size = min(chunk.count, count - sent)
            for i in 0..<size { chunk[i] = Self.patternByte(sent + i, seed: seed) }
            try sendBytes(Array(chunk[0..<size]))
            sent += size
        }
    }

    /// Reads to the end, checking every byte against the pattern; returns the count.
    func receivePattern(seed: UInt8) throws -> Int {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var received = 0
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 { return received }
            guard n > 0 else { throw SocketTestError("receive failed after \(received) bytes: \(String(cString: strerror(errno)))") }
            for i in 0..<n where buffer[i] != Self.patternByte(received + i, seed: seed) {
                throw SocketTestError("byte \(received + i) differs")
            }
            received += n
        }
    }

    private static func patternByte(_ offset: Int, seed: UInt8) -> UInt8 {
        UInt8(truncatingIfNeeded: offset &* 31 &+ offset >> 16) ^ seed
    }
}

private struct SocketTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
