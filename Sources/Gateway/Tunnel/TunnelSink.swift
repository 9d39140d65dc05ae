import NIOCore

/// Where one client connection's tunnel goes once it is established: the seam between
/// deciding a tunnel and carrying its bytes.
///
/// The gateway's sink is `TunnelHandoff`, which dials a bare socket and hands both sockets
/// to a `SocketLoop` to splice. Handler tests use a recorder instead and see exactly what
/// would be handed over.
package protocol TunnelSink: AnyObject {
    /// Connects to `target` for this connection's tunnel, with every check the dialer
    /// makes (resolution, address rules). Completes on `eventLoop`; fails with a
    /// `DialError` that says what went wrong.
    func connect(to target: UpstreamTarget, on eventLoop: any EventLoop) -> EventLoopFuture<any TunnelUpstream>
}

/// A connected upstream for one tunnel, not yet carrying bytes.
package protocol TunnelUpstream: AnyObject {
    /// Joins `channel` (the client connection) to this upstream and takes both over.
    ///
    /// Called on the channel's event loop once nothing more will be read through its
    /// pipeline. `toClient` goes to the client first (a `CONNECT` answer), `toUpstream` to
    /// the upstream first (bytes the client already sent). `completion` runs exactly once,
    /// with what moved, or with why the tunnel never started.
    func splice(
        _ channel: any Channel, toClient: [UInt8], toUpstream: [UInt8],
        completion: @escaping @Sendable (SocketLoop.Totals) -> Void)

    /// Closes the upstream unused (the client went away first).
    func close()
}
