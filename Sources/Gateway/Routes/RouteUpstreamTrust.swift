import GatewayCore

/// How route upstreams are verified: one TLS client context with full verification (chain
/// and host name, or IP address for an IP-literal upstream) against the system trust store
/// plus the CAs of `--upstream-ca`, made when the first route upstream is dialled
/// (`UpstreamTLS`). Routes are HTTPS only.
package struct RouteUpstreamTrust: Sendable {
    /// The client context every route upstream is dialled with.
    package let context: UpstreamTLS

    /// - Parameter caFile: a PEM file of extra trusted CAs.
    /// - Throws: `CredentialRoute.Invalid` for an unreadable or empty CA file.
    package init(caFile: String?) throws {
        do {
            context = try UpstreamTLS(caFile: caFile)
        } catch let error as UpstreamTLS.Invalid {
            throw CredentialRoute.Invalid(description: error.description)
        }
    }

    /// Route upstreams verified through a context shared with other upstreams (git).
    package init(context: UpstreamTLS) {
        self.context = context
    }
}
