import NIOCore
import NIOHTTP1

/// Opens connections to upstreams on behalf of the proxies and the forwarder.
///
/// Handlers never dial by themselves; they ask an injected dialer, so tests hand back
/// `EmbeddedChannel`s and the real `PolicyDialer` can check every resolved address.
package protocol UpstreamDialer: Sendable {
    /// Connects to `target` on `eventLoop` and returns the connected channel, with TLS
    /// (if `target.tls` is set) already in its pipeline and nothing else.
    ///
    /// The returned future fails with a `DialError` that says what went wrong.
    func dial(_ target: UpstreamTarget, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel>
}

/// Why an upstream could not be reached; each case maps to the status the sandbox sees.
package enum DialError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The policy refused the resolved address (or the name is the gateway itself): 403.
    case refused(host: String, reason: String)
    /// The name did not resolve: 502.
    case unresolvable(host: String, reason: String)
    /// The connection or the TLS handshake failed: 502.
    case connectFailed(host: String, port: Int, reason: String)
    /// The connection or the TLS handshake did not finish in time: 504.
    case timedOut(host: String, port: Int, what: String)

    /// The status the sandbox sees for this failure.
    package var status: HTTPResponseStatus {
        switch self {
        case .refused: .forbidden
        case .unresolvable, .connectFailed: .badGateway
        case .timedOut: .gatewayTimeout
        }
    }

    /// One line naming the host: the audit `reason`, and what the sandbox sees after
    /// `airlock: ` (see `Refusal`).
    package var reason: String {
        switch self {
        case let .refused(host, reason): "\(host) refused: \(reason)"
        case let .unresolvable(host, reason): "cannot resolve \(host): \(reason)"
        case let .connectFailed(host, port, reason): "cannot connect to \(host):\(port): \(reason)"
        case let .timedOut(host, port, what): "\(what) to \(host):\(port) timed out"
        }
    }

    /// The line the sandbox sees.
    package var description: String { Refusal.prefix + reason }
}
