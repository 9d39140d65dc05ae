#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Dispatch
import Gateway
import Logging
import NIOCore
import NIOPosix
import Netns
import ServiceLifecycle

/// `airlock gateway`: serve the gateway of a persistent sandbox.
struct GatewayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Serve the gateway of a persistent sandbox.",
        subcommands: [Serve.self]
    )

    /// `airlock gateway serve NAME`
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve DNS, transparent HTTP/TLS and the proxy for a sandbox made by `airlock netns create`.",
            discussion: """
                Binds the listeners inside the sandbox's gateway namespace (DNS 53 udp+tcp, HTTP 80, \
                TLS 443, proxy 3128 on the gateway address), opens the audit log, then drops to \
                --run-as (no capabilities, not dumpable) and serves until SIGTERM or SIGINT, which \
                drain open connections. The policy is reloaded on SIGHUP and when its file changes; \
                a file that does not parse keeps the old policy. The policy file must stay readable \
                by the --run-as user for reloads. Requires root (CAP_SYS_ADMIN, CAP_NET_BIND_SERVICE, \
                CAP_SETUID, CAP_SETGID, CAP_SETPCAP).
                """
        )

        @Argument(help: "The sandbox name, as given to `airlock netns create`.")
        var name: String

        @OptionGroup var options: GatewayOptions

        @Option(name: .long, help: ArgumentHelp("The user to serve as after binding.", valueName: "user"))
        var runAs: String = "nobody"

        func run() throws {
            try reportingErrors(exitCode: { error in
                if case SandboxError.notFound = error { return ExitCodes.notFound }
                if error is Privileges.PrivilegeError { return ExitCodes.permission }
                return nil
            }) {
                try serve()
            }
        }

        private func serve() throws {
            let sandboxName = try NamespaceName(name)
            try Privileges.requireRoot(
                for: "airlock gateway serve",
                capabilities: [.sysAdmin, .netBindService, .setuid, .setgid, .setpcap])
            let user = try Users.lookup(runAs)
            let state = try PersistentSandbox().load(name: sandboxName)
            let gatewayIPv4 = state.topology.gatewayAddress.address
            guard let gatewayAddress = IPAddress(gatewayIPv4.description) else {
                throw CLIError("gateway address \(gatewayIPv4) is not usable")
            }
            let sandbox = sandboxName.rawValue
            let audit = try options.openAuditLog(sandbox: sandbox)
            let (initial, policyPath, extra) = try options.initialPolicy()
            _ = try options.gitUpstreams()

            let gatewayNamespace = try NetworkNamespace.open(path: state.gatewayPin)
            let sockets = try GatewaySockets.bind(in: gatewayNamespace.descriptor, address: gatewayIPv4)
            try gatewayNamespace.close()

            // Git gateway and control socket: built here, before privileges are dropped
            // (the control socket lives under /run/airlock/NAME; binding it starts no thread).
            let gitUpstreams = try GitUpstreams(
                mappings: try options.gitUpstreams().map { GitUpstreams.Mapping(gitHost: $0.key, url: $0.value) },
                caFile: options.upstreamCA)
            let sessions = SessionStore(audit: audit)
            let internalRouter: (any HTTPRouter)? = GitRouter(upstreams: gitUpstreams, sessions: sessions, audit: audit)
            let controlSocket = try ControlSocket(path: ControlSocket.path(sandbox: sandbox))
            let startedBy = getuid()

            try Privileges.dropProcessPrivileges(to: user)

            // Threads start only after the drop: setuid reaches every thread, capabilities
            // only the calling one.
            var logger = Logger(label: "airlock.gateway")
            logger.logLevel = .info
            let store = PolicyStore(initial: initial, path: policyPath, extra: extra, audit: audit, logger: logger)
            store.startWatching()
            let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
            let control = ControlServer(
                socket: controlSocket,
                responder: ControlResponder(sandbox: sandbox, sessions: sessions, gitHosts: gitUpstreams.hosts),
                allowedUIDs: [startedBy], audit: audit, group: group)
            let extraServices: [any Service] = [control]
            let threadPool = NIOThreadPool(numberOfThreads: 2)
            threadPool.start()

            let configuration = GatewayConfiguration(
                sandbox: sandbox, gatewayAddress: gatewayAddress, policy: store, audit: audit,
                limits: options.limits, internalRouter: internalRouter, logger: logger)
            let listeners = GatewayListeners(
                dnsUDP: sockets.dnsUDP.descriptor.rawValue, dnsTCP: sockets.dnsTCP.descriptor.rawValue,
                http: sockets.http.descriptor.rawValue, tls: sockets.tls.descriptor.rawValue,
                proxy: sockets.proxy.descriptor.rawValue)
            let readyLine = "airlock: gateway for \(sandbox) ready on \(gatewayAddress) (dns 53, http 80, tls 443, proxy 3128)"
            let server = GatewayServer(
                configuration: configuration, listeners: listeners, group: group, threadPool: threadPool,
                ready: {
                    print(readyLine)
                    fflush(stdout)
                })
            let services: [any Service] = [server] + extraServices
            let serviceGroup = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger))

            let failure = ResultBox()
            let finished = DispatchSemaphore(value: 0)
            Task {
                do {
                    try await serviceGroup.run()
                } catch {
                    failure.set(error)
                }
                finished.signal()
            }
            finished.wait()
            store.stopWatching()
            try? threadPool.syncShutdownGracefully()
            try? group.syncShutdownGracefully()
            if let error = failure.get() { throw error }
        }
    }
}

/// Carries an error out of the serving task.
private final class ResultBox: @unchecked Sendable {
    // @unchecked: written once by the task before the semaphore is signalled, read after.
    private var error: Error?
    func set(_ error: Error) { self.error = error }
    func get() -> Error? { error }
}
