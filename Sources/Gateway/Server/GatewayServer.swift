#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import GatewayCore
import SystemCalls

/// Serves every listener of one sandbox from descriptors bound inside its gateway namespace.
///
/// A `Service`: `run()` serves until graceful shutdown (SIGTERM through the
/// `ServiceGroup`), then stops accepting, lets open connections finish for at most
/// `limits.drainTimeout`, and closes the rest. Cancellation closes everything at once.
/// The connection limit counts all TCP listeners of the sandbox together.
///
/// The socket loops are the server's own (one per core, at most four, started by `run` and
/// stopped when it ends), or `SharedSocketLoops` given by a process that serves several
/// sandboxes (`gateway serve --all`): then the server's listeners are its own on those
/// loops (closed alone when it stops), its tunnels count against its own unread budget,
/// and the loops outlive it.
package final class GatewayServer: Service {
    private let configuration: GatewayConfiguration
    private let listeners: GatewayListeners
    private let group: any EventLoopGroup
    private let lookups: LookupThreads
    private let tracker: ConnectionTracker
    private let sharedLoops: SharedSocketLoops?
    /// Names this server's listeners on the socket loops.
    private let owner = SocketLoop.makeOwner()
    /// What this sandbox's blocked tunnels may hold, whichever loop splices them.
    private let unread: UnreadBudget
    private let ready: (@Sendable () -> Void)?
    private let serving = NIOLockedValueBox<[SocketLoop]>([])
    private let loopConnect = NIOLockedValueBox<LoopConnect?>(nil)
    /// The listeners on the policy's other ports, and how to serve a new one, once serving.
    private let portListeners = NIOLockedValueBox<PortListeners>(PortListeners())

    private struct PortListeners {
        var fds: [Int: CInt] = [:]
        /// Serves one more port; nil until `run` started the loops (or after it stopped).
        var serve: ((Int, CInt) throws -> Void)?
        var acceptor: SocketLoop?
    }

    /// - Parameters:
    ///   - configuration: the sandbox's gateway configuration.
    ///   - listeners: bound sockets; the server owns them from here on.
    ///   - group: the event loops to serve on.
    ///   - lookups: the threads name lookups run on (started by the first).
    ///   - socketLoops: loops shared with other sandboxes' servers; nil starts the server's own.
    ///   - ready: called once every listener is serving.
    package init(
        configuration: GatewayConfiguration, listeners: GatewayListeners, group: any EventLoopGroup,
        lookups: LookupThreads, socketLoops: SharedSocketLoops? = nil, ready: (@Sendable () -> Void)? = nil
    ) {
        self.sharedLoops = socketLoops
        self.unread = UnreadBudget(limit: configuration.limits.maxUnreadBytes)
        self.configuration = configuration
        self.listeners = listeners
        self.group = group
        self.lookups = lookups
        self.tracker = ConnectionTracker(limit: configuration.limits.maxConnections)
        self.ready = ready
    }

    /// How many proxy connections the socket loop served itself and passed on to NIO
    /// (`LoopConnect`); zero without a proxy listener.
    package var loopConnectCounters: LoopConnect.Counters {
        loopConnect.withLockedValue { $0?.counters ?? LoopConnect.Counters() }
    }

    /// The ports served besides the standard ones, ascending.
    package var servedPorts: [Int] {
        portListeners.withLockedValue { $0.fds.keys.sorted() }
    }

    /// Serves transparent listeners on exactly `ports` (besides the standard ones), as a
    /// reload of the policy asks: a listener whose port is gone is closed (its open
    /// connections carry on) and audited `port_close`; a new port is bound through
    /// `configuration.bindPort` and served, audited `port_listen` (with `ok: false` and the
    /// reason when it cannot be). Ports served already keep their listener. Does nothing
    /// unless serving. Calls must not overlap (the policy store serialises reloads).
    package func servePorts(_ ports: [Int]) {
        let wanted = Set(ports)
        let (closed, added): ([Int], [Int]) = portListeners.withLockedValue { state in
            guard state.serve != nil else { return ([], []) }
            var closed: [Int] = []
            for (port, fd) in state.fds.sorted(by: { $0.key < $1.key }) where !wanted.contains(port) {
                state.acceptor?.closeListener(fd)
                state.fds[port] = nil
                closed.append(port)
            }
            return (closed, wanted.subtracting(state.fds.keys).sorted())
        }
        let audit = configuration.audit
        let sandbox = configuration.sandbox
        for port in closed {
            audit.record(AuditEvent(.portClose, sandbox: sandbox, via: .port, port: port))
            configuration.logger.info("port \(port): listener closed")
        }
        for port in added {
            do {
                let fd = try bindListener(port)
                try portListeners.withLockedValue { state in
                    guard let serve = state.serve else {
                        close(fd)
                        throw GatewayServerError.stopped
                    }
                    do {
                        try serve(port, fd)
                    } catch {
                        close(fd)
                        throw error
                    }
                    state.fds[port] = fd
                }
                audit.record(AuditEvent(.portListen, sandbox: sandbox, via: .port, port: port, ok: true))
                configuration.logger.info("port \(port): listening")
            } catch GatewayServerError.stopped {
                return
            } catch {
                audit.record(AuditEvent(.portListen, sandbox: sandbox, via: .port, port: port,
                                        reason: "\(error); port \(port) is reachable through the proxy only", ok: false))
                configuration.logger.error("port \(port): \(error)")
            }
        }
    }

    /// A new listening socket for `port`; a listener just closed on the same port may
    /// take the socket loop a moment to let go of, so "address in use" is tried again.
    private func bindListener(_ port: Int) throws -> CInt {
        guard let bindPort = configuration.bindPort else { throw GatewayServerError.cannotBind }
        var attempt = 0
        while true {
            do {
                return try bindPort(port)
            } catch let error as SystemCallError where error.code == EADDRINUSE && attempt < 10 {
                attempt += 1
                usleep(50_000)
            }
        }
    }

    /// Connections open now, across the sandbox's TCP listeners.
    package var openConnections: Int { tracker.count }

    /// Connections open now, and how many of them are tunnels the socket loops move.
    package var openConnectionsAndTunnels: (connections: Int, tunnels: Int) { tracker.counts }

    /// What the socket loops have spliced, summed over the loops (over every sandbox that
    /// shares them); zero when not serving.
    package var spliceStatistics: SocketLoop.Statistics {
        let loops = serving.withLockedValue { $0 }
        var total = SocketLoop.Statistics()
        for loop in loops {
            let one = loop.statistics
            total.tunnels += one.tunnels
            total.pipesInUse += one.pipesInUse
            total.pipesPooled += one.pipesPooled
            total.tunnelsTotal += one.tunnelsTotal
            total.bytesTotal += one.bytesTotal
        }
        return total
    }

    /// Serves until graceful shutdown or cancellation.
    /// - Throws: if a descriptor cannot be served (not a socket, wrong type), or the
    ///   socket loop cannot start.
    package func run() async throws {
        // One socket loop per core, at most four: the first also accepts; connections are
        // given to the loops in turn, so spliced tunnels spread over the cores. Shared
        // loops are stopped by whoever made them.
        var ownLoops: [SocketLoop] = []
        defer { for loop in ownLoops { loop.shutdown() } }
        let unread = self.unread
        let loops: [SocketLoop]
        if let sharedLoops {
            loops = sharedLoops.loops
        } else {
            for _ in 0..<max(1, min(4, System.coreCount)) {
                let loop = try SocketLoop(unread: unread)
                try loop.start()
                ownLoops.append(loop)
            }
            loops = ownLoops
        }
        let ring = SocketLoopRing(loops)
        let owner = self.owner
        serving.withLockedValue { $0 = loops }
        let policyDialer = PolicyDialer(
            policy: configuration.policy, limits: configuration.limits,
            forbidden: [configuration.gatewayAddress], lookups: lookups, metrics: configuration.audit.metrics)
        let dialer = configuration.dialer ?? policyDialer
        // Tunnels need bare sockets for the socket loop: a configured dialer that cannot
        // make them leaves tunnels to the policy's own dialer.
        let tunnelDialer = configuration.dialer as? any TunnelSocketDialer ?? policyDialer
        let pipelines = GatewayPipelines(configuration: configuration, dialer: dialer)
        var datagramChannels: [any Channel] = []
        // DNS over UDP registers on its event loop while the TCP listeners are set up here.
        let dnsUDP = listeners.dnsUDP.map {
            DNSUDPListener.start(
                $0, group: group, policy: configuration.policy, gatewayAddress: configuration.gatewayAddress,
                audit: configuration.audit, gatewayNames: configuration.gatewayNames)
        }
        do {
            // TCP listeners are accepted by the socket loop, so that every connection's
            // descriptor is known and established tunnels can be spliced.
            if let fd = listeners.http {
                try serve(fd, name: "http", via: .http, loop: ring, dialer: tunnelDialer) { channel, _ in
                    try pipelines.configureHTTP(channel)
                }
            }
            if let fd = listeners.tls {
                try serve(fd, name: "tls", via: .sni, loop: ring, dialer: tunnelDialer) { channel, tunnels in
                    try pipelines.configureTLS(channel, tunnels: tunnels)
                }
            }
            if let fd = listeners.proxy {
                let early = pipelines.loopConnect(dialer: tunnelDialer, tracker: tracker, contextLoop: group.next(), unread: unread)
                loopConnect.withLockedValue { $0 = early }
                try serve(fd, name: "proxy", via: .proxy, loop: ring, dialer: tunnelDialer, early: early) { channel, tunnels in
                    try pipelines.configureProxy(channel, tunnels: tunnels)
                }
            }
            let servePort: (Int, CInt) throws -> Void = { [self] port, fd in
                try serve(fd, name: "port \(port)", via: .port, loop: ring, dialer: tunnelDialer) { channel, tunnels in
                    try pipelines.configurePort(channel, port: port, tunnels: tunnels)
                }
            }
            try portListeners.withLockedValue { state in
                var initial = listeners.ports
                for (port, fd) in state.fds {
                    if let given = initial[port] { close(given) }
                    initial[port] = fd
                }
                state.fds = [:]
                for (port, fd) in initial.sorted(by: { $0.key < $1.key }) {
                    try servePort(port, fd)
                    state.fds[port] = fd
                }
                state.serve = servePort
                state.acceptor = ring.acceptor
            }
            configuration.policy.onReload { [weak self] policy in
                self?.servePorts(policy.listenerPorts)
            }
            if let fd = listeners.ssh {
                try serve(fd, name: "ssh", via: .ssh, loop: ring, dialer: tunnelDialer) { channel, _ in
                    try pipelines.configureSSH(channel)
                }
            }
            if let fd = listeners.dnsTCP {
                let policy = configuration.policy
                let address = configuration.gatewayAddress
                let audit = configuration.audit
                let names = configuration.gatewayNames
                try serve(fd, name: "dns-tcp", via: .dns, loop: ring, dialer: tunnelDialer) { channel, _ in
                    try channel.pipeline.syncOperations.addHandlers(
                        DNSTCPHandler.handlers(policy: policy, gatewayAddress: address, audit: audit, gatewayNames: names))
                }
            }
            if let dnsUDP {
                datagramChannels.append(contentsOf: try await dnsUDP.get())
            }
        } catch {
            portListeners.withLockedValue { $0 = PortListeners() }
            ring.closeListeners(owner: owner)
            for channel in (try? await dnsUDP?.get()) ?? [] { try? await channel.close() }
            throw error
        }
        ready?()
        defer { portListeners.withLockedValue { $0 = PortListeners() } }

        do {
            try await gracefulShutdown()
        } catch {
            // Cancelled: no draining.
            ring.closeListeners(owner: owner)
            for channel in datagramChannels { try? await channel.close() }
            tracker.closeAll()
            pipelines.upstreamPool.closeAll()
            return
        }
        configuration.logger.info("gateway for \(configuration.sandbox): draining \(tracker.count) connection(s)")
        ring.closeListeners(owner: owner)
        for channel in datagramChannels { try? await channel.close() }
        await drain()
        // Kept upstream connections go at once (see UpstreamPool.discard).
        pipelines.upstreamPool.closeAll()
    }

    /// Serves a listening TCP socket: the loop accepts, NIO serves each connection with
    /// the pipeline `configure` builds, given the connection's `TunnelHandoff`.
    /// - Throws: if `fd` is not a listening stream socket.
    private func serve(
        _ fd: CInt, name: String, via: AuditEvent.Via, loop ring: SocketLoopRing, dialer: any TunnelSocketDialer,
        early: LoopConnect? = nil, configure: @escaping @Sendable (any Channel, TunnelHandoff) throws -> Void
    ) throws {
        try Self.checkListening(fd, name: name)
        let tracker = self.tracker
        let logger = configuration.logger
        let limit = configuration.limits.maxConnections
        let idleTimeout = configuration.limits.idleTimeout
        let group = self.group
        let refusals = LimitRefusals(audit: configuration.audit, via: via, limit: limit)
        let unread = self.unread
        // The proxy's listener is accepted on by every loop, each serving and splicing the
        // connections it accepts (`LoopConnect`): no hand-over between threads, and the
        // kernel spreads new connections, so tunnels keep every core. The others are
        // accepted by the first loop and their tunnels dealt out in turn.
        let acceptors = early == nil ? [ring.acceptor] : ring.loops
        var descriptors = [fd]
        for _ in acceptors.dropFirst() {
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
            guard copy >= 0 else {
                let error = SystemCallError.last("fcntl(F_DUPFD_CLOEXEC) on the \(name) listener")
                for descriptor in descriptors.dropFirst() { close(descriptor) }
                throw error
            }
            descriptors.append(copy)
        }
        let accepted: @Sendable (CInt, SocketLoop) -> Void = { connection, acceptor in
            let splicer = early == nil ? ring.next() : ring.splicer(for: acceptor)
            // NIO serves the connection: every listener but the proxy, and proxy connections
            // the socket loop does not serve itself (`LoopConnect`).
            let inNIO: @Sendable (CInt) -> Void = { connection in
                ClientBootstrap(group: group)
                    .channelOption(.allowRemoteHalfClosure, value: true)
                    .channelOption(.autoRead, value: true)
                    .channelInitializer { channel in
                        guard tracker.admit(channel) else {
                            if refusals.refused() {
                                logger.warning("connection limit \(limit) reached on \(name); closing new connections")
                            }
                            // Failing the initializer makes the bootstrap close the channel.
                            return channel.eventLoop.makeFailedFuture(GatewayServerError.connectionLimit(limit))
                        }
                        return channel.eventLoop.makeCompletedFuture {
                            let handoff = TunnelHandoff(
                                descriptor: connection, loop: splicer, tracker: tracker, idleTimeout: idleTimeout, dialer: dialer,
                                unread: unread)
                            try configure(channel, handoff)
                        }
                    }
                    .withConnectedSocket(connection)
                    .whenFailure { error in
                        if case GatewayServerError.connectionLimit = error { return }
                        logger.debug("\(name): a new connection could not be served: \(error)")
                    }
            }
            if let early {
                early.accept(connection, on: acceptor, splicer: splicer, passOn: inNIO)
            } else {
                inNIO(connection)
            }
        }
        for (acceptor, descriptor) in zip(acceptors, descriptors) {
            acceptor.listen(descriptor, owner: owner, shared: acceptors.count > 1) { connection in
                accepted(connection, acceptor)
            }
        }
    }

    /// Refuses a descriptor that is not a listening TCP socket, as binding it to NIO would.
    private static func checkListening(_ fd: CInt, name: String) throws {
        var listening: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0, listening != 0 else {
            throw GatewayServerError.notListening(name: name, fd: fd)
        }
    }

    /// Waits for open connections to finish, up to the drain timeout, then closes them.
    private func drain() async {
        let deadline = NIODeadline.now() + configuration.limits.drainTimeout
        // Most connections are already closing when the drain starts (a run's command has
        // ended, and with it what it left behind): look again after 1 ms, then less and
        // less often, up to every 100 ms.
        var pause: UInt64 = 1_000_000
        while tracker.count > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: pause)
            pause = min(pause * 2, 100_000_000)
        }
        tracker.closeAll()
    }
}

/// A listener the gateway was given cannot be served.
package enum GatewayServerError: Error, CustomStringConvertible {
    case notListening(name: String, fd: CInt)
    case connectionLimit(Int)
    /// A reload added a port, and this gateway has no way to bind it.
    case cannotBind
    /// The server stopped while a listener was being added.
    case stopped

    package var description: String {
        switch self {
        case let .notListening(name, fd): "the \(name) listener (descriptor \(fd)) is not a listening TCP socket"
        case let .connectionLimit(limit): "connection limit of \(limit) reached for this sandbox"
        case .cannotBind: "this gateway binds its listeners only at start; restart it to listen on the port"
        case .stopped: "the gateway stopped"
        }
    }
}

/// Socket loops started once and shared by the servers of several sandboxes (the gateway
/// daemon), so that a sandbox added costs no thread: each server accepts on the first and
/// deals its connections out over all of them, with its own listeners and unread budget.
package final class SharedSocketLoops: Sendable {
    /// The loops, started.
    package let loops: [SocketLoop]

    /// Starts `count` loops (at least one).
    /// - Throws: `SystemCallError` when a loop cannot be made or started (those started are stopped).
    package init(count: Int = max(1, min(4, System.coreCount))) throws {
        var loops: [SocketLoop] = []
        do {
            for _ in 0..<max(1, count) {
                let loop = try SocketLoop()
                try loop.start()
                loops.append(loop)
            }
        } catch {
            for loop in loops { loop.shutdown() }
            throw error
        }
        self.loops = loops
    }

    /// Stops every loop (what is still open on them is closed).
    package func shutdown() {
        for loop in loops { loop.shutdown() }
    }
}

/// The server's socket loops: the first accepts; `next()` deals connections out in turn.
/// Where an accepted tunnel is spliced.
enum TunnelPlacement {
    /// How many tunnels more than the least busy loop the accepting loop may hold before it
    /// hands a new one on.
    static let imbalance = 4

    /// nil to keep the tunnel on the accepting loop (holding `own` tunnels), else the index
    /// in `loads` (every loop's count, the acceptor's among them) of the least busy loop,
    /// the first of equals: only when the acceptor holds at least `imbalance` tunnels more.
    static func handOn<Loads: Collection>(own: Int, loads: Loads) -> Loads.Index? where Loads.Element == Int {
        guard let least = loads.indices.min(by: { loads[$0] < loads[$1] }) else { return nil }
        return own >= loads[least] + imbalance ? least : nil
    }
}

private final class SocketLoopRing: @unchecked Sendable {
    let loops: [SocketLoop]
    private let counter = NIOLockedValueBox(0)

    init(_ loops: [SocketLoop]) {
        self.loops = loops
    }

    var acceptor: SocketLoop { loops[0] }

    /// The loop to splice a connection `acceptor` accepted (call on its thread): the
    /// acceptor itself, unless it holds at least four tunnels more than the least busy loop,
    /// then that one. The kernel wakes the first idle loop for each new connection, so a
    /// burst of long transfers could otherwise pile up on one core.
    func splicer(for acceptor: SocketLoop) -> SocketLoop {
        guard loops.count > 1 else { return acceptor }
        let own = acceptor.tunnels.count
        // Counted in place, without an array per accepted connection.
        let loads = loops.lazy.map { $0 === acceptor ? own : $0.statistics.tunnels }
        return TunnelPlacement.handOn(own: own, loads: loads).map { loops[$0] } ?? acceptor
    }

    /// Closes `owner`'s listeners on every loop (the proxy's is on all of them).
    func closeListeners(owner: UInt64) {
        for loop in loops { loop.closeListeners(owner: owner) }
    }

    func next() -> SocketLoop {
        counter.withLockedValue { count in
            count &+= 1
            return loops[count % loops.count]
        }
    }
}

/// Audits connections refused by the connection limit: the first at once, then at most one
/// line a second saying how many were refused since the last, so a sandbox that keeps
/// opening connections at the limit cannot flood the audit log. The same budget as
/// `dns_deny` lines, one line at a time.
private final class LimitRefusals: Sendable {
    private let audit: AuditLog
    private let via: AuditEvent.Via
    private let limit: Int
    private let budget = DenialBudget(DenialBudget.Limits(burst: 1, perSecond: 1))

    init(audit: AuditLog, via: AuditEvent.Via, limit: Int) {
        self.audit = audit
        self.via = via
        self.limit = limit
    }

    /// Counts one refusal; true when it was written to the audit log.
    func refused() -> Bool {
        let (allowed, unreported) = budget.take(1)
        guard allowed == 1 else { return false }
        let count = unreported + 1
        let what = count == 1 ? "a new connection" : "\(count) new connections"
        audit.record(AuditEvent(.egressDeny, via: via,
                                reason: "connection limit of \(limit) reached for this sandbox; refused \(what)"))
        return true
    }
}
