#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Gateway
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals
import GatewayCore

/// One sandbox's gateway as the command line assembles it from `GatewayOptions`: the audit
/// log, the policy, the git upstreams and sessions, and the server with its services.
///
/// Shared by `airlock gateway serve` (persistent, until SIGTERM) and `airlock run` (until
/// the command exits). Building it opens files and checks every flag; no thread starts
/// until `start`.
final class GatewayRuntime {
    let sandbox: String
    let gatewayAddress: IPAddress
    let audit: AuditLog
    let sessions: SessionStore
    let gitUpstreams: GitUpstreams
    /// The secrets credential routes send: `run --secret`, later `airlock secret set`.
    let secrets: SecretStore
    private let routeTrust: RouteUpstreamTrust
    private let options: GatewayOptions
    private let policyFiles: PolicyFiles?
    private let policyCheck: (@Sendable (String) -> String?)?
    private let reloadPolicy: Bool
    private let repositoriesGiven: Bool
    private let initialPolicy: Policy
    private let flagPolicy: Policy
    private var logger: Logger

    private var policyStore: PolicyStore?
    /// The event loops and lookup threads this runtime started (and stops); nil when they are
    /// shared (`gateway serve --all`).
    private var group: MultiThreadedEventLoopGroup?
    private var lookups: LookupThreads?
    private var serviceGroup: ServiceGroup?
    private let finished = DispatchSemaphore(value: 0)
    private let readyOrStopped = DispatchSemaphore(value: 0)
    private let failure = ErrorBox()

    /// - Parameters:
    ///   - policyFiles: the policy files in force, if any (`--policy FILE`, else the
    ///     default locations; see `GatewayOptions.policyFiles`).
    ///   - policyCheck: vets each path of `policyFiles` before it is read, at start and on
    ///     every reload (a root gateway refuses paths other accounts could change).
    ///   - extraGitHosts: git hosts that must have an upstream (`run --repo` hosts); each
    ///     gets `https://HOST` unless `--git-upstream` names it.
    ///   - secrets: the credential routes' secrets known at start (`run --secret`).
    /// - Throws: `PolicyError`, `AuditLogError`, `GitUpstreams.ConfigurationError`, `UpstreamTLS.Invalid`, each one line.
    ///   - reloadPolicy: whether the policy files are re-read on change and SIGHUP (`run`
    ///     reads them once: its command may be able to change them).
    ///   - repositoriesGiven: false for a `run` without `--repo`: no session can exist, and
    ///     every git request is answered with the `--repo` to pass (`UnscopedGitRouter`).
    ///   - audit: where audit lines go instead of `--audit-log` or stderr.
    ///   - tally: counts the refusals of the log opened from `--audit-log` or stderr (when
    ///     `audit` is given, that log carries its own).
    ///   - upstreams: the git upstreams and route trust to use, made once for many sandboxes
    ///     (the daemon: their TLS contexts hold the system trust store); nil makes this
    ///     runtime's own from `options` and `extraGitHosts`.
    ///   - metrics: counts what the log opened from `--audit-log` or stderr records
    ///     (`gateway serve --metrics-…`); its gauges are read from this gateway.
    init(
        sandbox: String, gatewayAddress: IPAddress, options: GatewayOptions, policyFiles: PolicyFiles?,
        policyCheck: (@Sendable (String) -> String?)? = nil,
        extraGitHosts: [String] = [], sessionLimits: SessionLimits = SessionLimits(),
        reloadPolicy: Bool = true, audit: AuditLog? = nil, tally: RefusalTally? = nil, metrics: GatewayMetrics? = nil,
        repositoriesGiven: Bool = true,
        logLevel: Logger.Level = .info, secrets: [String: Secret] = [:], upstreams: Upstreams? = nil
    ) throws {
        self.sandbox = sandbox
        self.gatewayAddress = gatewayAddress
        self.options = options
        self.policyFiles = policyFiles
        self.policyCheck = policyCheck
        flagPolicy = try options.flagPolicy()
        if let policyFiles {
            initialPolicy = try policyFiles.load(check: policyCheck).policy.adding(rulesFrom: flagPolicy)
        } else {
            initialPolicy = flagPolicy
        }
        try initialPolicy.checkListenerPorts()
        if let upstreams {
            gitUpstreams = upstreams.git
            routeTrust = upstreams.routes
        } else {
            let made = try Self.upstreams(options: options, extraGitHosts: extraGitHosts)
            gitUpstreams = made.git
            routeTrust = made.routes
        }
        self.secrets = SecretStore(secrets)
        if let audit {
            self.audit = audit
        } else {
            self.audit = try options.openAuditLog(sandbox: sandbox, tally: tally, metrics: metrics)
        }
        self.reloadPolicy = reloadPolicy
        self.repositoriesGiven = repositoriesGiven
        sessions = SessionStore(limits: sessionLimits, audit: self.audit)
        logger = Logger(label: "airlock.gateway")
        logger.logLevel = logLevel
    }

    /// The git upstreams and the route upstreams' trust: two TLS client contexts, each with
    /// the system trust store loaded.
    struct Upstreams: Sendable {
        let git: GitUpstreams
        let routes: RouteUpstreamTrust
    }

    /// The upstreams `options` ask for (`--git-upstream`, `--upstream-ca`), with `https://HOST`
    /// for each of `extraGitHosts` not named, and github.com when nothing is.
    /// - Throws: `GitUpstreams.ConfigurationError`, `CredentialRoute.Invalid`, each one line.
    static func upstreams(options: GatewayOptions, extraGitHosts: [String] = []) throws -> Upstreams {
        var mappings = try options.gitUpstreams().map { GitUpstreams.Mapping(gitHost: $0.key, url: $0.value) }
        var wanted = Set(extraGitHosts.map { $0.lowercased() })
        if mappings.isEmpty { wanted.insert("github.com") }
        for host in wanted.subtracting(mappings.map(\.gitHost)).sorted() {
            mappings.append(GitUpstreams.Mapping(gitHost: host, url: "https://\(host)"))
        }
        // One client context for git and route upstreams, made on the first HTTPS dial.
        let upstreamTLS = try UpstreamTLS(caFile: options.upstreamCA)
        return Upstreams(git: try GitUpstreams(mappings: mappings.sorted { $0.gitHost < $1.gitHost }, tls: upstreamTLS),
                         routes: RouteUpstreamTrust(context: upstreamTLS))
    }

    /// The policy's ports besides 80 and 443 at start: each gets a transparent listener.
    var listenerPorts: [Int] { initialPolicy.listenerPorts }

    /// The policy in force, reloaded in place; nil until `start`.
    var policy: PolicyStore? { policyStore }

    /// The credential routes of the policy in force at start.
    var routes: [CredentialRoute] { initialPolicy.routes }

    /// Whether the policy in force at start allows `host` on port 443 (git over HTTPS).
    func allowsHTTPS(to host: String) -> Bool {
        initialPolicy.decide(host: host, port: 443).isAllowed
    }

    /// Starts serving `listeners` (descriptors the server takes over) and `extraServices`.
    ///
    /// - Parameters:
    ///   - shutdownSignals: signals that drain and stop the gateway (`gateway serve`: TERM and
    ///     INT; `run`: none, since its signals go to the command).
    ///   - eventLoops: event loop threads (`run` needs fewer than a long-lived gateway).
    ///   - bindPort: binds a listener in G for a port a reload allows (`gateway serve`'s
    ///     `PortBinder`); without it such a port is reachable through the proxy only.
    ///   - shared: event loops, lookup threads and socket loops shared with other sandboxes
    ///     (the daemon); nil starts this runtime's own, stopped by `wait`.
    ///   - ready: called once every listener is serving.
    func start(
        listeners: GatewayListeners, extraServices: (MultiThreadedEventLoopGroup) -> [any Service] = { _ in [] },
        shutdownSignals: [UnixSignal], eventLoops: Int = System.coreCount, bindPort: (@Sendable (Int) throws -> CInt)? = nil,
        shared: SharedServing? = nil, ready: @escaping @Sendable () -> Void = {}
    ) {
        if shared == nil { Self.raiseOpenFileLimit() }
        let failure = self.failure
        let finished = self.finished
        let store = PolicyStore(
            initial: initialPolicy, files: reloadPolicy ? policyFiles : nil, check: policyCheck, extra: flagPolicy, audit: audit, logger: logger)
        store.startWatching()
        policyStore = store
        let group: MultiThreadedEventLoopGroup
        let lookups: LookupThreads
        if let shared {
            group = shared.group
            lookups = shared.lookups
        } else {
            group = MultiThreadedEventLoopGroup(numberOfThreads: eventLoops)
            self.group = group
            lookups = LookupThreads()
            self.lookups = lookups
        }

        let configuration = GatewayConfiguration(
            sandbox: sandbox, gatewayAddress: gatewayAddress, policy: store, audit: audit,
            limits: options.limits,
            internalRouter: InternalRouter(
                git: repositoriesGiven
                    ? GitRouter(upstreams: gitUpstreams, sessions: sessions, audit: audit)
                    : UnscopedGitRouter(hosts: gitUpstreams.hosts, audit: audit),
                routes: RouteRouter(policy: store, secrets: secrets, trust: routeTrust, audit: audit, sessions: sessions),
                lfs: repositoriesGiven ? LFSRouter(upstreams: gitUpstreams, sessions: sessions, audit: audit, actions: LFSActionTable()) : nil),
            gatewayNames: gitUpstreams.hosts, logger: logger, bindPort: bindPort)
        let readyOrStopped = self.readyOrStopped
        let server = GatewayServer(
            configuration: configuration, listeners: listeners, group: group, lookups: lookups,
            socketLoops: shared?.socketLoops, ready: {
                failure.markReady()
                readyOrStopped.signal()
                ready()
            })
        if let metrics = audit.metrics {
            let sessions = self.sessions
            metrics.sampleSessions { sessions.liveCount }
            metrics.sampleConnections { server.openConnectionsAndTunnels }
        }
        let services: [any Service] = [server] + extraServices(group)
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                // Named by type: without a name the configuration interpolates the service
                // itself ("\(service)"), which reflects over the object at every start.
                services: services.map {
                    ServiceGroupConfiguration.ServiceConfiguration(service: $0, serviceName: _typeName(type(of: $0), qualified: false))
                },
                gracefulShutdownSignals: shutdownSignals,
                logger: logger))
        self.serviceGroup = serviceGroup
        Task {
            do {
                try await serviceGroup.run()
            } catch {
                failure.set(error)
            }
            readyOrStopped.signal()
            finished.signal()
        }
    }

    /// A gateway holds two descriptors per tunnel (four while bytes are in flight) and two
    /// per forwarded request: raise the soft open-file limit to the hard one, as servers
    /// do, so the connection limit rather than the default 1024 descriptors bounds it.
    static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// Waits until every listener serves.
    /// - Throws: what stopped the gateway before it was ready, or `CLIError` after `timeout` seconds.
    func awaitReady(timeout: Double) throws {
        if readyOrStopped.wait(timeout: .now() + timeout) == .timedOut {
            shutdown()
            throw CLIError("the gateway did not start within \(Int(timeout)) seconds")
        }
        if failure.isReady { return }
        try wait(timeout: 1)
        throw CLIError("the gateway stopped before it was ready")
    }

    /// Drains open connections (bounded by the limits' drain timeout) and stops.
    func shutdown() {
        guard let serviceGroup else { return }
        Task { await serviceGroup.triggerGracefulShutdown() }
    }

    /// Waits until the gateway stopped (at most `timeout` seconds); rethrows what stopped it.
    /// - Parameter stopThreads: also stop this runtime's event loops and lookup threads (idle
    ///   by then: every connection is closed and every audit line written). A process that
    ///   exits right afterwards passes false: the exit ends them, without a join each.
    /// - Returns: false if it was still running when the time ran out.
    @discardableResult
    func wait(timeout: Double? = nil, stopThreads: Bool = true) throws -> Bool {
        if let timeout {
            if finished.wait(timeout: .now() + timeout) == .timedOut { return false }
        } else {
            finished.wait()
        }
        policyStore?.stopWatching()
        if stopThreads {
            lookups?.shutdown()
            try? group?.syncShutdownGracefully()
        }
        if let error = failure.get() { throw error }
        return true
    }
}

/// What the sandboxes of one gateway daemon share: the event loops, the threads for name
/// lookups, and the socket loops. Made once by `gateway serve --all`, stopped by it.
struct SharedServing: Sendable {
    let group: MultiThreadedEventLoopGroup
    let lookups: LookupThreads
    let socketLoops: SharedSocketLoops

    /// Starts the event loops (one per core unless told) and the socket loops; the two
    /// name lookup threads start with the first lookup (`LookupThreads`).
    /// - Throws: `SystemCallError` when the socket loops cannot start.
    static func start(eventLoops: Int = System.coreCount) throws -> SharedServing {
        let socketLoops = try SharedSocketLoops()
        return SharedServing(group: MultiThreadedEventLoopGroup(numberOfThreads: eventLoops),
                             lookups: LookupThreads(), socketLoops: socketLoops)
    }

    /// Stops everything (after every sandbox stopped).
    func shutdown() {
        socketLoops.shutdown()
        lookups.shutdown()
        try? group.syncShutdownGracefully()
    }
}

extension GatewayListeners {
    /// How many descriptors `GatewaySockets.all` holds.
    static let standardCount = 6

    /// The listeners from descriptors in `GatewaySockets.all` order (DNS UDP, DNS TCP, HTTP,
    /// TLS, proxy, SSH, then one per entry of `ports`), as `Netns` binds them and as the
    /// rootless builder sends them.
    init(ordered descriptors: [CInt], ports: [Int]) {
        precondition(descriptors.count == Self.standardCount + ports.count, "GatewaySockets.all holds six sockets and the ports")
        var byPort: [Int: CInt] = [:]
        for (index, port) in ports.enumerated() { byPort[port] = descriptors[Self.standardCount + index] }
        self.init(dnsUDP: descriptors[0], dnsTCP: descriptors[1], http: descriptors[2], tls: descriptors[3], proxy: descriptors[4],
                  ssh: descriptors[5], ports: byPort)
    }
}

/// Carries readiness and an error out of the serving task.
final class ErrorBox: Sendable {
    private let state = NIOLockedValueBox<(ready: Bool, error: Error?)>((false, nil))
    func set(_ error: Error) { state.withLockedValue { $0.error = error } }
    func get() -> Error? { state.withLockedValue { $0.error } }
    func markReady() { state.withLockedValue { $0.ready = true } }
    var isReady: Bool { state.withLockedValue { $0.ready } }
}
