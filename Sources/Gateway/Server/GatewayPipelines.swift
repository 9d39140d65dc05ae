import NIOCore
import NIOHTTP1

/// Builds the per-connection pipelines of the gateway's TCP listeners.
///
/// Shared by `GatewayServer` and the handler tests, so tests exercise the exact
/// pipelines the gateway serves.
package struct GatewayPipelines: Sendable {
    private let configuration: GatewayConfiguration
    private let dialer: any UpstreamDialer
    private let transparentRouter: EgressRouter
    private let proxyRouter: EgressRouter

    /// - Parameters:
    ///   - configuration: the sandbox's configuration.
    ///   - dialer: the dialer the handlers use.
    package init(configuration: GatewayConfiguration, dialer: any UpstreamDialer) {
        self.configuration = configuration
        self.dialer = dialer
        let gatewayHost = configuration.gatewayAddress.description
        transparentRouter = EgressRouter(mode: .transparent, policy: configuration.policy, audit: configuration.audit,
                                         gatewayHost: gatewayHost, internalRouter: configuration.internalRouter)
        proxyRouter = EgressRouter(mode: .proxy, policy: configuration.policy, audit: configuration.audit,
                                   gatewayHost: gatewayHost, internalRouter: configuration.internalRouter)
    }

    /// Transparent HTTP (port 80): requests routed by `Host`.
    /// - Throws: if a handler cannot be added (the channel is closing).
    package func configureHTTP(_ channel: any Channel) throws {
        try configureHTTPServer(channel, router: transparentRouter, tunnels: nil, via: .http)
    }

    /// The explicit proxy (port 3128): `CONNECT` and absolute-form requests.
    /// - Throws: if a handler cannot be added (the channel is closing).
    package func configureProxy(_ channel: any Channel) throws {
        try configureHTTPServer(channel, router: proxyRouter, tunnels: proxyRouter, via: .proxy)
    }

    /// Transparent TLS (port 443): routed by the ClientHello's server name.
    /// - Throws: if a handler cannot be added (the channel is closing).
    package func configureTLS(_ channel: any Channel) throws {
        let limits = configuration.limits
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(IdleStateHandler(allTimeout: limits.idleTimeout))
        try sync.addHandler(IdleCloser())
        try sync.addHandler(SNIPeekHandler(
            router: transparentRouter, dialer: dialer, audit: configuration.audit, sandbox: configuration.sandbox,
            maxBytes: limits.clientHelloBytes, timeout: limits.clientHelloTimeout))
    }

    private func configureHTTPServer(_ channel: any Channel, router: any HTTPRouter, tunnels: (any TunnelRouter)?, via: AuditEvent.Via) throws {
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
        try sync.addHandler(HTTPForwarder(
            router: router, tunnels: tunnels, dialer: dialer, sandbox: configuration.sandbox, via: via, headGuard: headGuard,
            refusalsPerConnection: limits.refusalsPerConnection))
    }
}
