import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Serves every listener of one sandbox from descriptors bound inside its gateway namespace.
///
/// A `Service`: `run()` serves until graceful shutdown (SIGTERM through the
/// `ServiceGroup`), then stops accepting, lets open connections finish for at most
/// `limits.drainTimeout`, and closes the rest. Cancellation closes everything at once.
/// The connection limit counts all TCP listeners of the sandbox together.
package final class GatewayServer: Service {
    private let configuration: GatewayConfiguration
    private let listeners: GatewayListeners
    private let group: any EventLoopGroup
    private let threadPool: NIOThreadPool
    private let tracker: ConnectionTracker
    private let ready: (@Sendable () -> Void)?

    /// - Parameters:
    ///   - configuration: the sandbox's gateway configuration.
    ///   - listeners: bound sockets; the server owns them from here on.
    ///   - group: the event loops to serve on.
    ///   - threadPool: for name lookups (must be started).
    ///   - ready: called once every listener is serving.
    package init(
        configuration: GatewayConfiguration, listeners: GatewayListeners, group: any EventLoopGroup,
        threadPool: NIOThreadPool, ready: (@Sendable () -> Void)? = nil
    ) {
        self.configuration = configuration
        self.listeners = listeners
        self.group = group
        self.threadPool = threadPool
        self.tracker = ConnectionTracker(limit: configuration.limits.maxConnections)
        self.ready = ready
    }

    /// Connections open now, across the sandbox's TCP listeners.
    package var openConnections: Int { tracker.count }

    /// Serves until graceful shutdown or cancellation.
    /// - Throws: if a descriptor cannot be served (not a socket, wrong type).
    package func run() async throws {
        let dialer = configuration.dialer ?? PolicyDialer(
            policy: configuration.policy, limits: configuration.limits,
            forbidden: [configuration.gatewayAddress], threadPool: threadPool)
        let pipelines = GatewayPipelines(configuration: configuration, dialer: dialer)
        var servers: [any Channel] = []
        do {
            if let fd = listeners.http {
                servers.append(try await serve(fd, name: "http") { try pipelines.configureHTTP($0) })
            }
            if let fd = listeners.tls {
                servers.append(try await serve(fd, name: "tls") { try pipelines.configureTLS($0) })
            }
            if let fd = listeners.proxy {
                servers.append(try await serve(fd, name: "proxy") { try pipelines.configureProxy($0) })
            }
            if let fd = listeners.dnsTCP {
                let policy = configuration.policy
                let address = configuration.gatewayAddress
                let audit = configuration.audit
                servers.append(try await serve(fd, name: "dns-tcp") { channel in
                    try channel.pipeline.syncOperations.addHandlers(
                        DNSTCPHandler.handlers(policy: policy, gatewayAddress: address, audit: audit))
                })
            }
            if let fd = listeners.dnsUDP {
                servers.append(contentsOf: try await DNSUDPListener.serve(
                    fd, group: group, policy: configuration.policy,
                    gatewayAddress: configuration.gatewayAddress, audit: configuration.audit))
            }
        } catch {
            for server in servers { try? await server.close() }
            throw error
        }
        ready?()

        do {
            try await gracefulShutdown()
        } catch {
            // Cancelled: no draining.
            for server in servers { try? await server.close() }
            tracker.closeAll()
            return
        }
        configuration.logger.info("gateway for \(configuration.sandbox): draining \(tracker.count) connection(s)")
        for server in servers { try? await server.close() }
        await drain()
    }

    private func serve(_ fd: CInt, name: String, configure: @escaping @Sendable (any Channel) throws -> Void) async throws -> any Channel {
        let tracker = self.tracker
        let logger = configuration.logger
        let limit = configuration.limits.maxConnections
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.autoRead, value: true)
            .childChannelInitializer { channel in
                guard tracker.admit(channel) else {
                    logger.warning("connection limit \(limit) reached on \(name); closing a new connection")
                    return channel.close()
                }
                return channel.eventLoop.makeCompletedFuture { try configure(channel) }
            }
            .withBoundSocket(fd)
            .get()
    }

    /// Waits for open connections to finish, up to the drain timeout, then closes them.
    private func drain() async {
        let deadline = NIODeadline.now() + configuration.limits.drainTimeout
        while tracker.count > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 100_000_000)
        }
        tracker.closeAll()
    }
}
