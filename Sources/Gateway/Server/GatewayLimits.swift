import NIOCore

/// The bounds the gateway enforces on every sandbox connection.
///
/// Defaults are safe for package managers and git; each is configurable with a flag of
/// `airlock gateway serve` and `airlock run` (see docs/configuration.md).
package struct GatewayLimits: Sendable, Equatable {
    /// Largest request head (request line and headers) accepted, in bytes; larger gets `431`.
    package var maxHeaderBytes: Int = 32 * 1024
    /// Open sandbox connections per sandbox (all listeners together); more are closed at once.
    package var maxConnections: Int = 512
    /// Time to establish a TCP connection upstream; beyond it the sandbox gets `504`.
    package var connectTimeout: TimeAmount = .seconds(10)
    /// Time for the TLS handshake with an upstream (git, HTTPS forwarding).
    package var tlsHandshakeTimeout: TimeAmount = .seconds(10)
    /// Time a client has to send a complete request head once it started one.
    package var headerTimeout: TimeAmount = .seconds(10)
    /// A connection with no bytes in either direction for this long is closed.
    package var idleTimeout: TimeAmount = .seconds(300)
    /// An HTTP connection kept alive after a response is closed if the next request has
    /// not started within this time, so idle kept-alive connections do not hold the
    /// sandbox's connection slots for `idleTimeout`.
    package var keepAliveTimeout: TimeAmount = .seconds(15)
    /// Refusals (answers with `X-Airlock-Denied`) one HTTP connection gets before the
    /// gateway closes it: the one that reaches this count goes out with `Connection: close`.
    /// Not a flag: a client refused this often on one connection is looping.
    package var refusalsPerConnection: Int = 16
    /// Bytes of a TLS ClientHello the transparent TLS listener buffers to find the SNI.
    package var clientHelloBytes: Int = 16 * 1024
    /// Time the transparent TLS listener waits for a complete ClientHello.
    package var clientHelloTimeout: TimeAmount = .seconds(5)
    /// Bytes the sandbox's tunnels may hold for readers that stopped reading (see
    /// `UnreadBudget`); past it the tunnel whose reader took nothing for longest is closed.
    /// 64 MiB: room for dozens of large downloads that pause at once, while 512 unread
    /// tunnels can no longer pin 1.4 GiB of kernel memory until the idle timeout.
    package var maxUnreadBytes: Int = 64 << 20
    /// On shutdown, how long open connections may drain before they are closed.
    package var drainTimeout: TimeAmount = .seconds(30)

    /// The defaults.
    package init() {}
}
