import NIOCore
import NIOHTTP1
import GatewayCore

/// Opens the gateway's byte tunnels, for `CONNECT` (`ConnectHandler`) and transparent TLS
/// (`SNIPeekHandler`) alike: the policy decision, the dial, the hand-off to the sink, and
/// the audit of how the tunnel ended.
///
/// The router audits a refusal itself; an allowed tunnel is reported exactly once, when it
/// ends, when its dial fails, or when the client leaves before it started.
package struct TunnelOpener {
    private let router: any TunnelRouter
    private let sink: any TunnelSink
    private let sandbox: String
    private let via: AuditEvent.Via

    /// What the router said about one tunnel.
    package enum Decision {
        /// Refused (and audited); `CONNECT` answers with this, transparent TLS just closes.
        case refused(LocalResponse)
        /// Allowed: dial it.
        case allowed(OpeningTunnel)
    }

    /// - Parameters:
    ///   - router: decides each tunnel.
    ///   - sink: dials upstreams and carries established tunnels.
    ///   - sandbox: the sandbox this listener belongs to.
    ///   - via: `.connect` for the explicit proxy's `CONNECT`, `.proxy` for its upgrade requests
    ///     (both answer refusals and dial failures in HTTP), `.sni`
    ///     for transparent TLS.
    package init(router: any TunnelRouter, sink: any TunnelSink, sandbox: String, via: AuditEvent.Via) {
        self.router = router
        self.sink = sink
        self.sandbox = sandbox
        self.via = via
    }

    /// Asks the router about a tunnel from `channel` to `host:port`.
    package func decide(host: String, port: Int, for channel: any Channel) -> Decision {
        let context = RequestContext(sandbox: sandbox, via: via, eventLoop: channel.eventLoop, clientAddress: channel.remoteAddress)
        switch router.routeTunnel(host: host, port: port, context: context) {
        case .refuse(let response):
            return .refused(response)
        case .open(let target, let completion):
            return .allowed(OpeningTunnel(target: target, sink: sink, answersInHTTP: via != .sni, completion: completion))
        }
    }
}

/// One tunnel the router allowed, from its dial to its hand-off. Used on the client
/// channel's event loop only.
package final class OpeningTunnel {
    /// Where the tunnel goes.
    package let target: UpstreamTarget
    private let sink: any TunnelSink
    /// The client was answered in HTTP (`CONNECT`): the outcome carries the status it saw
    /// and why an established tunnel ended early.
    private let answersInHTTP: Bool
    private let completion: @Sendable (ExchangeOutcome) -> Void
    private let startedAt = NIODeadline.now()
    private var upstream: (any TunnelUpstream)?
    private var state = State.idle

    private enum State { case idle, dialing, connected, handedOff, finished }

    fileprivate init(target: UpstreamTarget, sink: any TunnelSink, answersInHTTP: Bool,
                     completion: @escaping @Sendable (ExchangeOutcome) -> Void) {
        self.target = target
        self.sink = sink
        self.answersInHTTP = answersInHTTP
        self.completion = completion
    }

    /// Dials the upstream; `then` runs on `eventLoop` with `nil` once connected, or with the
    /// refusal the client is answered with (already reported). Not called when the tunnel
    /// was cancelled meanwhile.
    package func dial(on eventLoop: any EventLoop, then: @escaping (Refusal?) -> Void) {
        guard state == .idle else { return }
        state = .dialing
        sink.connect(to: target, on: eventLoop).hop(to: eventLoop).whenComplete { result in
            guard self.state == .dialing else {
                if case .success(let upstream) = result { upstream.close() }
                return
            }
            switch result {
            case .success(let upstream):
                self.upstream = upstream
                self.state = .connected
                then(nil)
            case .failure(let error):
                let refusal = Refusal(dialFailure: error, host: self.target.host, port: self.target.port)
                self.report(ExchangeOutcome(status: self.answersInHTTP ? Int(refusal.status.code) : nil, bytesUp: 0, bytesDown: 0,
                                            milliseconds: self.startedAt.millisecondsAgo, failure: refusal.reason))
                then(refusal)
            }
        }
    }

    /// Hands the client connection and the connected upstream to the sink.
    /// - Parameters:
    ///   - toClient: the gateway's answer, sent first (`CONNECT`'s `200`).
    ///   - toUpstream: bytes the client already sent (early data, the peeked ClientHello).
    ///   - answeredStatus: the status the gateway answered the client with (`CONNECT`'s
    ///     `200`), for the audit line; nil when the upstream answers (an upgrade).
    package func handOff(_ channel: any Channel, toClient: [UInt8], toUpstream: [UInt8], answeredStatus: Int? = 200) {
        guard state == .connected, let upstream else { return }
        state = .handedOff
        self.upstream = nil
        let startedAt = self.startedAt
        let answersInHTTP = self.answersInHTTP
        let completion = self.completion
        upstream.splice(channel, toClient: toClient, toUpstream: toUpstream) { totals in
            // The reason an established CONNECT tunnel ended early (idle, reset) goes on its line.
            completion(ExchangeOutcome(status: answersInHTTP ? answeredStatus : nil, bytesUp: totals.up, bytesDown: totals.down,
                                       milliseconds: startedAt.millisecondsAgo, failure: answersInHTTP ? totals.ending : nil))
        }
    }

    /// The client left before the tunnel was handed off: the upstream (now or when its dial
    /// completes) is closed unused, and the tunnel is reported as never started.
    package func cancel() {
        switch state {
        case .idle, .dialing, .connected:
            upstream?.close()
            upstream = nil
            state = .finished
            completion(ExchangeOutcome(status: nil, bytesUp: 0, bytesDown: 0, milliseconds: startedAt.millisecondsAgo,
                                       failure: "the sandbox closed the connection"))
        case .handedOff, .finished:
            break
        }
    }

    private func report(_ outcome: ExchangeOutcome) {
        state = .finished
        completion(outcome)
    }
}
