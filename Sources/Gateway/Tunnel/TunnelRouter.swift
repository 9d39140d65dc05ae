/// Decides whether a byte tunnel (a `CONNECT`, or transparent TLS routed by SNI) may open.
package protocol TunnelRouter: Sendable {
    /// Decides a tunnel to `host:port`; called on the client channel's event loop.
    /// The router audits refusals itself; the completion of `.open` audits the tunnel's end.
    func routeTunnel(host: String, port: Int, context: RequestContext) -> TunnelRoute
}

/// A tunnel router's decision.
package enum TunnelRoute: Sendable {
    /// Dial `target` and splice; `completion` gets the byte counts when both sides closed,
    /// or the dial failure.
    case open(UpstreamTarget, completion: @Sendable (ExchangeOutcome) -> Void)
    /// Refuse: the explicit proxy answers with this response, transparent TLS just closes.
    case refuse(LocalResponse)
}
