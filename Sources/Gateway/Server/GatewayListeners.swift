import GatewayCore
/// The descriptors of one sandbox's listening sockets, bound inside its gateway namespace.
///
/// The server takes ownership: each descriptor is closed when its listener stops. A `nil`
/// entry leaves that listener off (tests serve only what they need).
package struct GatewayListeners: Sendable {
    /// UDP 53, bound.
    package var dnsUDP: CInt?
    /// TCP 53, bound (listening or not).
    package var dnsTCP: CInt?
    /// TCP 80: transparent HTTP and `airlock.internal`.
    package var http: CInt?
    /// TCP 443: transparent TLS by SNI.
    package var tls: CInt?
    /// TCP 3128: the explicit proxy.
    package var proxy: CInt?
    /// TCP 22: every SSH connection is answered with "SSH is not offered".
    package var ssh: CInt?
    /// TCP on the policy's other ports (`Policy.listenerPorts`), by port: transparent TLS or
    /// HTTP, whichever the client speaks.
    package var ports: [Int: CInt]

    /// Creates a set of listeners.
    package init(dnsUDP: CInt? = nil, dnsTCP: CInt? = nil, http: CInt? = nil, tls: CInt? = nil, proxy: CInt? = nil,
                 ssh: CInt? = nil, ports: [Int: CInt] = [:]) {
        self.ports = ports
        self.dnsUDP = dnsUDP
        self.dnsTCP = dnsTCP
        self.http = http
        self.tls = tls
        self.proxy = proxy
        self.ssh = ssh
    }
}
