import NIOCore
import NIOHTTP1

/// One request/response exchange the forwarder streams to an upstream.
package struct UpstreamExchange: Sendable {
    /// Where to send the request.
    package var target: UpstreamTarget
    /// The request head sent upstream: origin-form URI and `Host` set by the router.
    /// The forwarder strips hop-by-hop headers (`Connection` and the headers it names,
    /// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Upgrade`, `Expect`) and sets framing.
    package var head: HTTPRequestHead
    /// Headers of `head` that the gateway set itself (`host`, git's upstream
    /// `authorization`), lowercase: never removed as hop-by-hop, so a request that names
    /// them in `Connection` cannot strip them.
    package var gatewayHeaders: Set<String>
    /// Called with the upstream's response head before anything reaches the client; a
    /// non-nil answer replaces the upstream response (for example, an upstream `401`
    /// mapped to a local refusal) and the upstream connection is closed.
    package var interceptResponse: (@Sendable (HTTPResponseHead) -> LocalResponse?)?
    /// Called once when the exchange ends, successfully or not; for audit.
    package var completion: (@Sendable (ExchangeOutcome) -> Void)?
    /// Looks at the start of the request body before anything is dialled (git's push
    /// commands): called with the bytes so far and whether the body has ended, until it
    /// passes or refuses. A refused request's body is read to its end and dropped, then the
    /// refusal is the answer; `completion` is not called.
    package var bodyCheck: (@Sendable (_ prefix: [UInt8], _ ended: Bool) -> BodyCheck)?

    /// Makes the inspector of one request's body (a fresh one per request): it sees every
    /// body chunk as it is forwarded upstream and decides by the body's end. The forwarder
    /// holds back the body's last `heldBodyBytes` bytes until then, so a
    /// refused body never reaches the upstream whole (a pushed pack without its trailer is
    /// never applied). A refusal closes the upstream connection and is the answer;
    /// `completion` is not called.
    package var bodyInspector: (@Sendable () -> any RequestBodyInspector)?

    /// Keeps the upstream connection alive for later exchanges to the same target
    /// (`UpstreamPool`): the request goes without `Connection: close`, may go over an idle
    /// connection, and its connection is parked after a clean exchange (an HTTP/1.1
    /// response without `Connection: close`, framed, read to its end, after the whole
    /// request was sent). Set for the git and credential routes, whose requests carry the
    /// gateway's credential themselves; left off for the sandbox's own HTTP.
    package var keepsConnection = false

    /// Reads the upstream's whole response instead of streaming it, and answers with what
    /// its `rewrite` makes of it: for small answers the gateway must change before the
    /// sandbox sees them (Git LFS batch responses). A body over its `limit` is refused with
    /// `502` and the upstream connection closed. `interceptResponse` still goes first.
    package var bufferedResponse: BufferedResponse?

    /// See `bufferedResponse`.
    package struct BufferedResponse: Sendable {
        /// The most response body read; more is a `502`.
        package var limit: Int
        /// Makes the answer from the upstream's head and whole body.
        package var rewrite: @Sendable (HTTPResponseHead, ByteBuffer) -> LocalResponse

        /// Creates a buffered-response rewrite.
        package init(limit: Int, rewrite: @escaping @Sendable (HTTPResponseHead, ByteBuffer) -> LocalResponse) {
            self.limit = limit
            self.rewrite = rewrite
        }
    }

    /// The body bytes the forwarder keeps from the upstream until an inspector decides:
    /// more than a pack's trailer (20 or 32 bytes).
    package static let heldBodyBytes = 64

    /// What `bodyCheck` says.
    package enum BodyCheck: Sendable {
        /// Not decided yet: more of the body is needed.
        case needMore
        /// Forward the request, body and all.
        case pass
        /// Answer with this instead; nothing is forwarded.
        case refuse(LocalResponse)
    }

    /// Creates an exchange.
    package init(
        target: UpstreamTarget,
        head: HTTPRequestHead,
        gatewayHeaders: Set<String> = ["host"],
        interceptResponse: (@Sendable (HTTPResponseHead) -> LocalResponse?)? = nil,
        completion: (@Sendable (ExchangeOutcome) -> Void)? = nil
    ) {
        self.target = target
        self.head = head
        self.gatewayHeaders = gatewayHeaders
        self.interceptResponse = interceptResponse
        self.completion = completion
    }
}

/// Sees a request body while it streams upstream and decides whether the upstream may
/// have all of it (`UpstreamExchange.bodyInspector`). Used on the connection's event loop
/// only.
package protocol RequestBodyInspector: AnyObject {
    /// The next chunk of the body; a response refuses the request at once.
    func inspect(_ chunk: ByteBuffer) -> LocalResponse?
    /// The body has ended: the decision, at once or once `pending` work is done.
    func finish() -> InspectorDecision
}

/// A body inspector's decision at the body's end.
package enum InspectorDecision {
    /// The held bytes and the end go upstream.
    case pass
    /// This answers the request instead.
    case refuse(LocalResponse)
    /// Decided by work that takes time (a question to the upstream), run on the client
    /// connection's event loop with the forwarder's dialer: its `nil` passes, a response
    /// refuses. Until it completes the held bytes and any upstream answer wait.
    case pending(InspectorWork)
}

/// Work a body inspector needs done before it decides (`InspectorDecision.pending`).
package typealias InspectorWork = @Sendable (_ eventLoop: any EventLoop, _ dialer: any UpstreamDialer) -> EventLoopFuture<LocalResponse?>
