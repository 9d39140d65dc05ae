import NIOCore

/// Where an exchange or a tunnel is dialled to.
package struct UpstreamTarget: Sendable {
    /// The host name as the sandbox asked for it (normalised); also the TLS server name.
    package var host: String
    /// The TCP port.
    package var port: Int
    /// TLS towards the upstream; `nil` means plain TCP.
    package var tls: UpstreamTLS?
    /// An address the caller already checked; `nil` means the dialer resolves the name
    /// and checks every candidate against the policy.
    package var address: SocketAddress?

    /// Creates a target.
    package init(host: String, port: Int, tls: UpstreamTLS? = nil, address: SocketAddress? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        self.address = address
    }
}
