import NIOCore
import NIOHTTP1
import GatewayCore

/// Builds the per-connection pipelines of the gateway's TCP listeners.
///
/// Shared by `GatewayServer` and the handler tests, so tests exercise the exact
/// pipelines the gateway serves. Established tunnels go to the `TunnelSink` given per
/// connection: the server's `TunnelHandoff`, or a test's recorder.
package struct GatewayPipelines: Sendable {
    private let configuration: GatewayConfiguration
    private let dialer: any UpstreamDialer
    private let transparentRouter: EgressRouter
    private let proxyRouter: EgressRouter
    /// Upstream connections the git and credential routes keep between requests; a policy
    /// reload starts a new generation (nothing dialled under the old policy is reused).
    package let upstreamPool: UpstreamPool

    /// - Parameters:
    ///   - configuration: the sandbox's configuration.
    ///   - dialer: the dialer the handlers use.
    ///   - upstreamPool: where kept upstream connections wait; a new pool by default.
    package init(configuration: GatewayConfiguration, dialer: any UpstreamDialer, upstreamPool: UpstreamPool = UpstreamPool()) {
        self.configuration = configuration
        self.dialer = dialer
        self.upstreamPool = upstreamPool
        configuration.policy.onReload { [upstreamPool] _ in upstreamPool.policyChanged() }
        let gatewayHost = configuration.gatewayAddress.description
        transparentRouter = EgressRouter(mode: .transparent, policy: configuration.policy, audit: configuration.audit,
                                         gatewayHost: gatewayHost, internalRouter: configuration.internalRouter)
        proxyRouter = EgressRouter(mode: .proxy, policy: configuration.policy, audit: configuration.audit,
                                   gatewayHost: gatewayHost, internalRouter: configuration.internalRouter)
    }

    /// Transparent HTTP (port 80): requests routed by `Host`.
    /// - Throws: if a handler cannot be added (the channel is closing).
    package func configureHTTP(_ channel: any Channel) throws {
        try configureHTTPServer(channel, router: transparentRouter, via: .http)
    }

    /// The explicit proxy (port 3128): `CONNECT` (tunnels go to `tunnels`) and
    /// absolute-form requests.
    /// - Throws: if a handler cannot be added (the channel is closing).
    package func configureProxy(_ channel: any Channel, tunnels: any TunnelSink) throws {
        let opener = TunnelOpener(router: proxyRouter, sink: tunnels, sandbox: configuration.sandbox, via: .connect)
        let upgrades = TunnelOpener(router: proxyRouter, sink: tunnels, sandbox: configuration.sandbox, via: .proxy)
        try configureHTTPServer(channel, router: proxyRouter, via: .proxy) { headGuard in
            ConnectHandler(opener: opener, upgrades: upgrades, headGuard: headGuard)
        }
    }

    /// The explicit proxy's `CONNECT` served on the socket loop (`LoopConnect`), with the
    /// router, limits and sandbox the proxy's pipeline has.
    package func loopConnect(dialer: any TunnelSocketDialer, tracker: ConnectionTracker?, contextLoop: any EventLoop,
                             unread: UnreadBudget? = nil) -> LoopConnect {
        LoopConnect(router: proxyRouter, dialer: dialer, sandbox: configuration.sandbox, contextLoop: contextLoop, tracker: tracker,
                    maxHeadBytes: configuration.limits.maxHeaderBytes, idleTimeout: configuration.limits.idleTimeout, unread: unread)
    }

    /// Transparent TLS (port 443): routed by the ClientHello's server name; tunnels go to
    /// `tunnels`.
    /// - Throws: if a handler cannot be added (the channel is closing).
    package func configureTLS(_ channel: any Channel, tunnels: any TunnelSink, port: Int = 443) throws {
        let limits = configuration.limits
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(IdleStateHandler(allTimeout: limits.idleTimeout))
        try sync.addHandler(IdleCloser())
        let opener = TunnelOpener(router: transparentRouter, sink: tunnels, sandbox: configuration.sandbox, via: .sni)
        try sync.addHandler(SNIPeekHandler(
            opener: opener, audit: configuration.audit, sandbox: configuration.sandbox,
            maxBytes: limits.clientHelloBytes, timeout: limits.clientHelloTimeout, port: port))
    }

    /// A transparent listener on another port the policy allows: TLS is routed by its
    /// server name as on 443, HTTP by `Host` as on 80, both dialled on `port`; anything
    /// else is refused (`FirstBytesRouter`).
    /// - Throws: if a handler cannot be added (the channel is closing).
    package func configurePort(_ channel: any Channel, port: Int, tunnels: any TunnelSink) throws {
        let configuration = self.configuration
        let router = EgressRouter(
            mode: .transparent, policy: configuration.policy, audit: configuration.audit,
            gatewayHost: configuration.gatewayAddress.description, internalRouter: configuration.internalRouter, listenerPort: port)
        try channel.pipeline.syncOperations.addHandler(FirstBytesRouter(
            port: port, audit: configuration.audit, sandbox: configuration.sandbox, timeout: configuration.limits.clientHelloTimeout
        ) { kind, channel in
            switch kind {
            case .tls: try self.configureTLS(channel, tunnels: tunnels, port: port)
            case .http: try self.configureHTTPServer(channel, router: router, via: .http)
            case .other: break
            }
        })
    }

    /// SSH (port 22): every connection is answered with the SSH identification string and
    /// a disconnect saying SSH is not offered and how to use HTTPS, then closed.
    /// - Throws: if a handler cannot be added (the channel is closing).
    package func configureSSH(_ channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(SSHRefusalHandler(
            audit: configuration.audit, sandbox: configuration.sandbox, timeout: configuration.limits.clientHelloTimeout))
    }

    private func configureHTTPServer(
        _ channel: any Channel, router: any HTTPRouter, via: AuditEvent.Via,
        connectHandler: ((RequestHeadGuard) -> ConnectHandler)? = nil
    ) throws {
        let limits = configuration.limits
        let sync = channel.pipeline.syncOperations
        let headGuard = RequestHeadGuard(
            maxBytes: limits.maxHeaderBytes, timeout: limits.headerTimeout, keepAliveTimeout: limits.keepAliveTimeout)
        var encoderConfiguration = HTTPResponseEncoder.Configuration()
        encoderConfiguration.automaticallySetFramingHeaders = false
        try sync.addHandler(IdleStateHandler(allTimeout: limits.idleTimeout))
        try sync.addHandler(IdleCloser())
        try sync.addHandler(headGuard)
        try sync.addHandler(HTTPResponseEncoder(configuration: encoderConfiguration))
        try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        try sync.addHandler(RequestHeadGuard.DecodedParts(headGuard))
        if let connectHandler { try sync.addHandler(connectHandler(headGuard)) }
        try sync.addHandler(HTTPForwarder(
            router: router, dialer: dialer, sandbox: configuration.sandbox, via: via, headGuard: headGuard,
            refusalsPerConnection: limits.refusalsPerConnection, pool: upstreamPool))
    }
}
