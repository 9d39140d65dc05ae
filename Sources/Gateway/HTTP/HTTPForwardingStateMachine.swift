import NIOCore
import NIOHTTP1

/// The decisions of `HTTPForwarder` for one client connection, without channels: each
/// event (a request part, the route, the dial, the upstream's response) moves the state
/// and returns the actions the handler carries out, in order.
///
/// One request at a time: routed, optionally checked (`UpstreamExchange.bodyCheck`),
/// dialled, then streamed both ways; or answered locally, its unread body dropped. The
/// connection closes after a refusal that asks to, when the client asked to, when a body
/// was left unread, after the connection's `refusalsPerConnection`th refusal, and after a
/// close-delimited response.
package struct HTTPForwardingStateMachine {
    /// The request being served.
    package struct Request {
        package let head: HTTPRequestHead
        package let hasBody: Bool
        package let chunked: Bool
        package let startedAt: NIODeadline
        /// Its `.end` has been read.
        package var ended = false
        /// The connection stays open after this exchange.
        package var keepAlive: Bool
        /// `100 Continue` has been sent.
        package var continueSent = false

        init(head: HTTPRequestHead, startedAt: NIODeadline) {
            self.head = head
            self.startedAt = startedAt
            chunked = head.headers[canonicalForm: "transfer-encoding"].contains { $0.lowercased() == "chunked" }
            let length = head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0
            hasBody = chunked || length > 0
            keepAlive = head.isKeepAlive
        }

        var expectsContinue: Bool {
            head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
        }
    }

    /// A routed exchange and how far its response got.
    package struct Exchange {
        package let exchange: UpstreamExchange
        package var responseHeadSent = false
        package var responseEnded = false
        package var responseStatus: Int?
        /// An HTTP/1.0 client gets an unframed body, ended by closing the connection.
        package var closeDelimited = false
        package var bytesUp: UInt64 = 0
        package var bytesDown: UInt64 = 0
        /// The upstream connection was idle in the pool before this exchange.
        package var reused = false
        /// Some of the request body has been taken from the client (it cannot be sent again).
        package var bodyStarted = false
        /// The request's end has gone upstream.
        package var requestSent = false
        /// The upstream's response allows the connection to be kept: HTTP/1.1, no
        /// `Connection: close`, and framed (a length, chunked, or no body).
        package var upstreamKeepsAlive = false
        /// The exchange's `bodyInspector` for this request's body, while it has not decided,
        /// and the body's tail held from the upstream until it does.
        var inspector: (any RequestBodyInspector)?
        var heldTail: ByteBuffer?
        /// The upstream's response while the inspector has not decided (an upstream may
        /// answer before the body's end: git's http-backend writes its headers at once).
        /// Nothing of it reaches the client before the decision; a refusal replaces it.
        var withheld: WithheldResponse?
        /// The upstream's response read so far, for an exchange with a `bufferedResponse`.
        var buffered: (head: HTTPResponseHead, body: ByteBuffer)?
        /// The body's end (its trailers) while the inspector's pending work decides.
        var awaitedEnd: HTTPHeaders??

        /// A response kept from the client until the body inspector decides.
        struct WithheldResponse {
            var head: HTTPResponseHead
            var body: [ByteBuffer] = []
            var bytes = 0
            var end: HTTPHeaders??
        }

        init(_ exchange: UpstreamExchange) {
            self.exchange = exchange
        }
    }

    /// Where the connection is; each state carries what it needs.
    package enum State {
        /// Between requests.
        case awaitingHead
        /// The router is deciding.
        case routing(Request)
        /// The body check reads the start of the body (`held`) before anything is dialled.
        case checkingBody(Request, UpstreamExchange, checked: [UInt8], held: [HTTPServerRequestPart])
        /// The body check refused: the rest of the body is dropped, then `answer` goes out.
        case discardingBeforeAnswer(Request, answer: LocalResponse)
        /// Connecting to the upstream.
        case dialing(Request, Exchange)
        /// Streaming the request up and the response down.
        case forwarding(Request, Exchange)
        /// Answered locally; the rest of the request's body is dropped.
        case discardingBody(Request)
        /// Nothing more is served; the connection is closing.
        case closing
    }

    /// What the handler does, in order.
    package enum Action {
        /// Ask the router about the request.
        case route(HTTPRequestHead)
        /// Dial the exchange's upstream.
        case dial(UpstreamTarget)
        /// Take an idle connection to the exchange's upstream from the pool, else dial it;
        /// tell `connected(reused:)` which.
        case reuseOrDial(UpstreamTarget)
        /// Write `100 Continue` to the client.
        case sendContinue(HTTPVersion)
        /// Write a whole local answer; close the connection afterwards when `close`.
        case respond(HTTPResponseHead, body: String, close: Bool)
        /// Put the parts the body check held back in front of the unread ones.
        case requeue([HTTPServerRequestPart])
        /// Send the request head to the connected upstream.
        case sendRequestHead(HTTPRequestHead)
        /// Send a request body part upstream.
        case sendRequestBody(ByteBuffer)
        /// Send the request's end upstream.
        case sendRequestEnd(HTTPHeaders?)
        /// Write the response head to the client.
        case writeResponseHead(HTTPResponseHead)
        /// Write a response body part to the client.
        case writeResponseBody(ByteBuffer)
        /// Write the response's end; close the connection afterwards when `close`.
        case writeResponseEnd(HTTPHeaders?, close: Bool)
        /// Run the body inspector's pending work, then tell `inspectorDecided`.
        case awaitInspector(InspectorWork)
        /// Report how the exchange ended to its `completion`.
        case report(UpstreamExchange, ExchangeOutcome)
        /// Close the upstream connection.
        case closeUpstream
        /// The exchange ended cleanly: the upstream connection goes to the pool for later
        /// exchanges (or is closed if the pool will not keep it).
        case releaseUpstream
        /// Close the client connection now (an aborted response, a broken request).
        case closeClient
        /// Drop request parts not yet taken.
        case dropUnread
        /// The request and its response are complete: ready for the next head.
        case awaitNextHead
    }

    package private(set) var state = State.awaitingHead
    /// Counts requests; results of an earlier request's router or dial are stale.
    package private(set) var generation = 0
    /// Refusals answered on this connection so far.
    package private(set) var refusals = 0
    private let refusalsAllowed: Int
    /// The most body a check may hold before it must decide.
    package static let checkedBodyLimit = 4 << 20
    /// The most response body kept from the client while a body inspector decides.
    package static let withheldResponseLimit = 64 << 10

    /// - Parameter refusalsPerConnection: the refusal after which the connection closes.
    package init(refusalsPerConnection: Int) {
        refusalsAllowed = max(1, refusalsPerConnection)
    }

    // MARK: reading from the client

    /// Whether the next request part can be taken now (else it waits, unread).
    package var takesRequestParts: Bool {
        switch state {
        case .awaitingHead, .discardingBody, .checkingBody, .discardingBeforeAnswer: return true
        case .forwarding(let request, _): return !request.ended
        case .routing, .dialing, .closing: return false
        }
    }

    /// Whether more may be read from the client, given whether the upstream takes more.
    package func readsClient(upstreamWritable: Bool) -> Bool {
        switch state {
        case .forwarding(let request, _): return !request.ended && upstreamWritable
        case .awaitingHead, .discardingBody, .checkingBody, .discardingBeforeAnswer: return true
        case .routing, .dialing, .closing: return false
        }
    }

    /// Whether the upstream is being dialled (a connection that arrives now is used).
    package var isDialing: Bool {
        if case .dialing = state { return true }
        return false
    }

    // MARK: events from the client

    /// A request part the handler takes (only while `takesRequestParts`).
    package mutating func requestPart(_ part: HTTPServerRequestPart, now: NIODeadline = .now()) -> [Action] {
        switch state {
        case .awaitingHead:
            guard case .head(let head) = part else {
                // Body without a head cannot happen after a clean exchange; refuse.
                return close()
            }
            return requestHead(head, now: now)
        case .forwarding(var request, var exchange):
            switch part {
            case .head:
                return []
            case .body(let buffer):
                exchange.bodyStarted = true
                if let inspector = exchange.inspector {
                    if let refusal = inspector.inspect(buffer) { return refuseInspected(request, exchange, refusal) }
                    let out = Self.holdingTail(buffer, held: &exchange.heldTail)
                    exchange.bytesUp += UInt64(out?.readableBytes ?? 0)
                    state = .forwarding(request, exchange)
                    return out.map { [.sendRequestBody($0)] } ?? []
                }
                exchange.bytesUp += UInt64(buffer.readableBytes)
                state = .forwarding(request, exchange)
                return [.sendRequestBody(buffer)]
            case .end(let trailers):
                request.ended = true
                if let inspector = exchange.inspector {
                    switch inspector.finish() {
                    case .refuse(let refusal):
                        return refuseInspected(request, exchange, refusal)
                    case .pending(let work):
                        exchange.awaitedEnd = .some(trailers)
                        state = .forwarding(request, exchange)
                        return [.awaitInspector(work)]
                    case .pass:
                        break
                    }
                }
                return releaseInspected(request, exchange, trailers: trailers)
            }
        case .discardingBody(var request):
            guard case .end = part else { return [] }
            request.ended = true
            state = .discardingBody(request)
            return finishRequest()
        case .checkingBody(let request, let exchange, let checked, let held):
            return checkBody(part, request: request, exchange: exchange, checked: checked, held: held)
        case .discardingBeforeAnswer(var request, let answer):
            guard case .end = part else { return [] }
            request.ended = true
            state = .discardingBeforeAnswer(request, answer: answer)
            return respond(answer)
        case .routing, .dialing, .closing:
            return []
        }
    }

    private mutating func requestHead(_ head: HTTPRequestHead, now: NIODeadline) -> [Action] {
        generation += 1
        let request = Request(head: head, startedAt: now)
        state = .routing(request)
        if let problem = RequestValidation.problem(in: head) {
            return respond(Refusal(.badRequest, reason: problem, closeConnection: true).response)
        }
        if head.method == .CONNECT {
            return respond(Refusal(.methodNotAllowed, reason: "CONNECT is served only by the proxy on port 3128", closeConnection: true).response)
        }
        return [.route(head)]
    }

    /// The client will send nothing more: the exchange in flight finishes, then the
    /// connection closes.
    package mutating func clientInputClosed() -> [Action] {
        switch state {
        case .awaitingHead, .discardingBody:
            return close()
        case .routing(var request):
            request.keepAlive = false
            state = .routing(request)
        case .checkingBody(var request, let exchange, let checked, let held):
            request.keepAlive = false
            state = .checkingBody(request, exchange, checked: checked, held: held)
        case .discardingBeforeAnswer(var request, let answer):
            request.keepAlive = false
            state = .discardingBeforeAnswer(request, answer: answer)
        case .dialing(var request, let exchange):
            request.keepAlive = false
            state = .dialing(request, exchange)
        case .forwarding(var request, let exchange):
            request.keepAlive = false
            state = .forwarding(request, exchange)
        case .closing:
            break
        }
        return []
    }

    /// The client connection is gone.
    package mutating func clientClosed() -> [Action] {
        var actions: [Action] = []
        switch state {
        case .checkingBody(let request, let exchange, _, _):
            actions.append(.report(exchange, Self.outcome(request, Exchange(exchange), failure: "the sandbox closed the connection")))
        case .dialing(let request, let exchange), .forwarding(let request, let exchange):
            if !exchange.responseEnded {
                actions.append(.report(exchange.exchange, Self.outcome(request, exchange, failure: "the sandbox closed the connection")))
            }
        default:
            break
        }
        state = .closing
        return actions + [.closeUpstream, .dropUnread]
    }

    /// The HTTP decoder could not parse the request: `400` between requests, else close.
    package mutating func requestMalformed(_ description: String) -> [Action] {
        guard case .awaitingHead = state else { return close() }
        var request = Request(head: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"), startedAt: .now())
        request.ended = true
        state = .routing(request)
        return respond(Refusal(.badRequest, reason: "malformed HTTP request (\(description))", closeConnection: true).response)
    }

    // MARK: routing and the body check

    /// The router's decision.
    package mutating func routed(_ route: HTTPRoute) -> [Action] {
        guard case .routing(let request) = state else { return [] }
        switch route {
        case .respond(let response):
            return respond(response)
        case .forward(let exchange):
            guard exchange.bodyCheck != nil && request.hasBody else {
                return dial(request, exchange)
            }
            var request = request
            var actions: [Action] = []
            if request.expectsContinue {
                // The client waits for this before it sends the body the check needs.
                request.continueSent = true
                actions.append(.sendContinue(request.head.version))
            }
            state = .checkingBody(request, exchange, checked: [], held: [])
            return actions
        }
    }

    /// The router failed.
    package mutating func routingFailed() -> [Action] {
        guard case .routing = state else { return [] }
        return respond(Refusal(.badGateway, reason: "the gateway could not route this request", closeConnection: true).response)
    }

    private mutating func checkBody(
        _ part: HTTPServerRequestPart, request: HTTPForwardingStateMachine.Request, exchange: UpstreamExchange,
        checked: [UInt8], held: [HTTPServerRequestPart]
    ) -> [Action] {
        guard let check = exchange.bodyCheck else { return dial(request, exchange) }
        var request = request
        var checked = checked
        var held = held
        held.append(part)
        switch part {
        case .body(let buffer): checked += buffer.readableBytesView
        case .end: request.ended = true
        case .head: break
        }
        let verdict: UpstreamExchange.BodyCheck
        if checked.count > Self.checkedBodyLimit {
            verdict = .refuse(Refusal(.payloadTooLarge, reason: "the start of this request is too large to check").response)
        } else {
            verdict = check(checked, request.ended)
        }
        switch verdict {
        case .needMore:
            if request.ended {
                state = .routing(request)
                return respond(Refusal(.badRequest, reason: "the request body ended before it could be checked").response)
            }
            state = .checkingBody(request, exchange, checked: checked, held: held)
            return []
        case .pass:
            // The held parts go first, then whatever follows, once connected.
            request.ended = false
            return [.requeue(held)] + dial(request, exchange)
        case .refuse(let answer):
            if request.ended {
                state = .routing(request)
                return respond(answer)
            }
            state = .discardingBeforeAnswer(request, answer: answer)
            return []
        }
    }

    // MARK: the upstream

    private mutating func dial(_ request: HTTPForwardingStateMachine.Request, _ exchange: UpstreamExchange) -> [Action] {
        state = .dialing(request, Exchange(exchange))
        return [exchange.keepsConnection ? .reuseOrDial(exchange.target) : .dial(exchange.target)]
    }

    /// The dial failed: `403`/`502`/`504` as the error says.
    package mutating func dialFailed(_ error: Error) -> [Action] {
        guard case .dialing(let request, let exchange) = state else { return [] }
        let target = exchange.exchange.target
        let refusal = Refusal(dialFailure: error, host: target.host, port: target.port)
        return [.report(exchange.exchange, Self.outcome(request, exchange, failure: refusal.reason, status: Int(refusal.status.code)))]
            + respond(refusal.response)
    }

    /// The upstream connection could not be prepared.
    package mutating func upstreamSetupFailed() -> [Action] {
        guard case .dialing(let request, let exchange) = state else { return [] }
        return [.report(exchange.exchange, Self.outcome(request, exchange, failure: "pipeline setup failed", status: 502))]
            + respond(Refusal(.badGateway, reason: "cannot set up the connection to \(exchange.exchange.target.host)",
                              closeConnection: true).response)
    }

    /// Connected (`reused`: over an idle connection from the pool): the request head goes
    /// upstream, then the body as it is read. After a stale connection's retry a request
    /// without a body has already ended: its end goes up with the head.
    package mutating func connected(reused: Bool = false) -> [Action] {
        guard case .dialing(var request, var exchange) = state else { return [.closeUpstream] }
        exchange.reused = reused
        if request.hasBody, let makeInspector = exchange.exchange.bodyInspector { exchange.inspector = makeInspector() }
        var head = exchange.exchange.head
        var headers = HopByHopHeaders.stripped(head.headers, keeping: exchange.exchange.gatewayHeaders)
        headers.remove(name: "expect")
        headers.remove(name: "content-length")
        if request.chunked {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        } else if let length = request.head.headers.first(name: "content-length") {
            headers.add(name: "Content-Length", value: length)
        }
        if !exchange.exchange.keepsConnection { headers.add(name: "Connection", value: "close") }
        head.headers = headers
        head.version = .http1_1
        var actions: [Action] = [.sendRequestHead(head)]
        if request.ended {
            exchange.requestSent = true
            actions.append(.sendRequestEnd(nil))
        }
        if request.expectsContinue && !request.ended && !request.continueSent {
            request.continueSent = true
            actions.append(.sendContinue(request.head.version))
        }
        state = .forwarding(request, exchange)
        return actions
    }

    /// The upstream's response head.
    package mutating func responseHead(_ upstreamHead: HTTPResponseHead) -> [Action] {
        guard case .forwarding(var request, var exchange) = state else { return [] }
        if exchange.inspector != nil {
            exchange.withheld = Exchange.WithheldResponse(head: upstreamHead)
            state = .forwarding(request, exchange)
            return []
        }
        if let replacement = exchange.exchange.interceptResponse?(upstreamHead) {
            return [.closeUpstream,
                    .report(exchange.exchange, Self.outcome(request, exchange, failure: nil, status: Int(replacement.status.code)))]
                + respond(replacement)
        }
        if exchange.exchange.bufferedResponse != nil {
            exchange.buffered = (upstreamHead, ByteBuffer())
            exchange.responseStatus = Int(upstreamHead.status.code)
            state = .forwarding(request, exchange)
            return []
        }
        let noBody = request.head.method == .HEAD || upstreamHead.status == .noContent
            || upstreamHead.status == .notModified || upstreamHead.status.code < 200
        let upstreamChunked = upstreamHead.headers[canonicalForm: "transfer-encoding"].contains { $0.lowercased() == "chunked" }
        let length = upstreamHead.headers.first(name: "content-length")
        var headers = HopByHopHeaders.stripped(upstreamHead.headers)
        headers.remove(name: "content-length")
        let clientIsHTTP10 = request.head.version.major == 1 && request.head.version.minor == 0
        if noBody {
            if let length { headers.add(name: "Content-Length", value: length) }
        } else if let length, !upstreamChunked {
            headers.add(name: "Content-Length", value: length)
        } else if clientIsHTTP10 {
            exchange.closeDelimited = true
        } else {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        if !request.ended && request.hasBody {
            // The upstream answered before the request body was done; the rest of the
            // body cannot be skipped reliably, so this connection ends with the response.
            request.keepAlive = false
        }
        if exchange.closeDelimited { request.keepAlive = false }
        exchange.upstreamKeepsAlive = upstreamHead.version == .http1_1 && upstreamHead.isKeepAlive
            && (noBody || upstreamChunked || length != nil)
        headers.add(name: "Connection", value: request.keepAlive ? "keep-alive" : "close")
        var head = HTTPResponseHead(version: clientIsHTTP10 ? .http1_0 : .http1_1, status: upstreamHead.status)
        head.headers = headers
        exchange.responseStatus = Int(upstreamHead.status.code)
        exchange.responseHeadSent = true
        state = .forwarding(request, exchange)
        return [.writeResponseHead(head)]
    }

    /// A part of the upstream's response body.
    package mutating func responseBody(_ buffer: ByteBuffer) -> [Action] {
        if case .forwarding(let request, var exchange) = state, exchange.inspector != nil, var withheld = exchange.withheld {
            withheld.bytes += buffer.readableBytes
            guard withheld.bytes <= Self.withheldResponseLimit else {
                // An upstream that says this much before the body is even sent is not one
                // airlock can vouch for: abort rather than buffer more.
                state = .closing
                return [.report(exchange.exchange, Self.outcome(request, exchange, failure: "upstream \(exchange.exchange.target.host) answered at length before the request body was checked")),
                        .closeUpstream, .dropUnread, .closeClient]
            }
            withheld.body.append(buffer)
            exchange.withheld = withheld
            state = .forwarding(request, exchange)
            return []
        }
        if case .forwarding(let request, var exchange) = state, let limit = exchange.exchange.bufferedResponse?.limit,
           var buffered = exchange.buffered {
            guard buffered.body.readableBytes + buffer.readableBytes <= limit else {
                let host = exchange.exchange.target.host
                let refusal = Refusal(.badGateway, reason: "upstream \(host) answered with more than \(limit) bytes where airlock reads the whole answer",
                                      closeConnection: true)
                exchange.responseStatus = nil
                return [.closeUpstream, .report(exchange.exchange, Self.outcome(request, exchange, failure: refusal.reason, status: 502))]
                    + respond(refusal.response)
            }
            var buffer = buffer
            buffered.body.writeBuffer(&buffer)
            exchange.buffered = buffered
            state = .forwarding(request, exchange)
            return []
        }
        guard case .forwarding(let request, var exchange) = state, exchange.responseHeadSent, !exchange.responseEnded else { return [] }
        exchange.bytesDown += UInt64(buffer.readableBytes)
        state = .forwarding(request, exchange)
        return [.writeResponseBody(buffer)]
    }

    /// The upstream's response ended.
    package mutating func responseEnd(_ trailers: HTTPHeaders?) -> [Action] {
        if case .forwarding(let request, var exchange) = state, exchange.inspector != nil, exchange.withheld != nil {
            exchange.withheld?.end = .some(trailers)
            state = .forwarding(request, exchange)
            return []
        }
        if case .forwarding(let request, var exchange) = state, let rewrite = exchange.exchange.bufferedResponse?.rewrite,
           let buffered = exchange.buffered {
            let answer = rewrite(buffered.head, buffered.body)
            exchange.bytesDown = UInt64(answer.body.utf8.count)
            exchange.responseEnded = true
            return [.closeUpstream, .report(exchange.exchange, Self.outcome(request, exchange, failure: nil, status: Int(answer.status.code)))]
                + respond(answer)
        }
        guard case .forwarding(let request, var exchange) = state, !exchange.responseEnded else { return [] }
        exchange.responseEnded = true
        // Kept only when the whole request went up and the whole response came down, framed,
        // on HTTP/1.1 without `Connection: close`: nothing of this exchange is left on it.
        let keep = exchange.exchange.keepsConnection && exchange.requestSent && exchange.upstreamKeepsAlive
        var actions: [Action] = [keep ? .releaseUpstream : .closeUpstream,
                                 .report(exchange.exchange, Self.outcome(request, exchange, failure: nil))]
        actions.append(.writeResponseEnd(exchange.closeDelimited ? nil : trailers, close: !request.keepAlive))
        if !request.keepAlive {
            state = .closing
            return actions + [.dropUnread]
        }
        state = .forwarding(request, exchange)
        if request.ended { actions += finishRequest() }
        return actions
    }

    /// The upstream connection closed.
    package mutating func upstreamClosed() -> [Action] {
        if case .forwarding(_, let exchange) = state, exchange.inspector != nil, exchange.withheld?.end != nil {
            // A complete response is withheld until the inspector decides; nothing is lost.
            return []
        }
        guard case .forwarding(let request, let exchange) = state, !exchange.responseEnded else { return [] }
        if Self.retriesOnFreshConnection(request, exchange) {
            // A kept connection the upstream had closed: once more, on a new connection.
            state = .dialing(request, Exchange(exchange.exchange))
            return [.dial(exchange.exchange.target)]
        }
        let host = exchange.exchange.target.host
        if exchange.responseHeadSent {
            // Mid-stream: abort, so the client sees a truncated response, never a clean end.
            state = .closing
            return [.report(exchange.exchange, Self.outcome(request, exchange, failure: "upstream \(host) closed the connection mid-response")),
                    .dropUnread, .closeClient]
        }
        let refusal = Refusal(.badGateway, reason: "upstream \(host) closed the connection before answering", closeConnection: true)
        return [.report(exchange.exchange, Self.outcome(request, exchange, failure: refusal.reason, status: 502))]
            + respond(refusal.response)
    }

    /// Whether a failed exchange goes once more over a fresh connection: only when its
    /// connection was a kept one (the upstream may have closed it while idle), nothing of
    /// the response has arrived, and sending the request again cannot repeat what the
    /// upstream did: nothing of the body was taken from the client yet (the body streams,
    /// it is never kept to be sent twice), or the request has no body and an idempotent
    /// method.
    static func retriesOnFreshConnection(_ request: Request, _ exchange: Exchange) -> Bool {
        guard exchange.reused, !exchange.responseHeadSent, exchange.withheld == nil, exchange.buffered == nil,
              !exchange.bodyStarted else { return false }
        if request.hasBody { return !request.ended }
        return [.GET, .HEAD, .OPTIONS, .PUT, .DELETE].contains(request.head.method)
    }

    // MARK: body inspection

    /// The body has ended and its inspector (if any) passed it: the held tail and the end
    /// go upstream, and a response withheld meanwhile goes to the client.
    private mutating func releaseInspected(_ request: Request, _ exchange: Exchange, trailers: HTTPHeaders?) -> [Action] {
        var exchange = exchange
        var actions: [Action] = []
        let inspected = exchange.inspector != nil
        if inspected {
            exchange.inspector = nil
            exchange.awaitedEnd = nil
            if let held = exchange.heldTail, held.readableBytes > 0 {
                exchange.bytesUp += UInt64(held.readableBytes)
                actions.append(.sendRequestBody(held))
            }
            exchange.heldTail = nil
        }
        let withheld = exchange.withheld
        exchange.withheld = nil
        exchange.requestSent = true
        state = .forwarding(request, exchange)
        actions.append(.sendRequestEnd(trailers))
        if let withheld {
            // Passed: the response kept back goes to the client as it came.
            actions += responseHead(withheld.head)
            for part in withheld.body { actions += responseBody(part) }
            if let end = withheld.end { actions += responseEnd(end) }
            return actions
        }
        if exchange.responseEnded { actions += finishRequest() }
        return actions
    }

    /// The inspector's pending work (`InspectorDecision.pending`) decided: `nil` passes,
    /// a response refuses. Ignored when the exchange has ended meanwhile.
    package mutating func inspectorDecided(_ refusal: LocalResponse?) -> [Action] {
        guard case .forwarding(let request, let exchange) = state, exchange.inspector != nil,
              let trailers = exchange.awaitedEnd else { return [] }
        if let refusal { return refuseInspected(request, exchange, refusal) }
        return releaseInspected(request, exchange, trailers: trailers)
    }

    /// Adds `buffer` to the body's held tail and returns what may go upstream now: all of
    /// the body so far but its last `UpstreamExchange.heldBodyBytes` bytes.
    private static func holdingTail(_ buffer: ByteBuffer, held: inout ByteBuffer?) -> ByteBuffer? {
        let hold = UpstreamExchange.heldBodyBytes
        var buffer = buffer
        if buffer.readableBytes >= hold {
            // The held bytes go first, then all of this chunk but its tail.
            var out = held.flatMap { $0.readableBytes > 0 ? $0 : nil }
            if let slice = buffer.readSlice(length: buffer.readableBytes - hold), slice.readableBytes > 0 {
                if out == nil { out = slice } else { out!.writeImmutableBuffer(slice) }
            }
            held = buffer
            return out
        }
        var tail = held ?? ByteBuffer()
        tail.writeImmutableBuffer(buffer)
        let out = tail.readableBytes > hold ? tail.readSlice(length: tail.readableBytes - hold) : nil
        held = tail
        return out
    }

    /// The inspector refused the body: the upstream, which never got all of it, is closed
    /// (no report: the inspector audited its refusal), and the refusal is the answer once the
    /// body has been read, unless the upstream's response has begun: then the client's
    /// connection is aborted.
    private mutating func refuseInspected(_ request: Request, _ exchange: Exchange, _ refusal: LocalResponse) -> [Action] {
        if exchange.responseHeadSent {
            state = .closing
            return [.closeUpstream, .dropUnread, .closeClient]
        }
        state = .discardingBeforeAnswer(request, answer: refusal)
        if request.ended { return [.closeUpstream] + respond(refusal) }
        return [.closeUpstream]
    }

    // MARK: answers

    /// A gateway-made answer to the current request; closes afterwards when asked to,
    /// when the client asked to, when the request's body has not been read (it is never
    /// forwarded), or when this is the connection's `refusalsPerConnection`th refusal.
    private mutating func respond(_ response: LocalResponse) -> [Action] {
        guard let request = currentRequest else { return [] }
        if response.headers.contains(name: "X-Airlock-Denied") { refusals += 1 }
        let keepAlive = request.keepAlive
        let unreadBody = request.hasBody && !request.ended
        let close = response.closeConnection || !keepAlive || unreadBody || refusals >= refusalsAllowed
        let head = response.head(version: request.head.version, closing: close)
        let actions: [Action] = [.respond(head, body: request.head.method == .HEAD ? "" : response.body, close: close)]
        if close {
            state = .closing
            return actions + [.dropUnread]
        }
        state = .discardingBody(request)
        if request.ended { return actions + finishRequest() }
        return actions
    }

    private var currentRequest: Request? {
        switch state {
        case .routing(let request), .checkingBody(let request, _, _, _), .discardingBeforeAnswer(let request, _),
             .dialing(let request, _), .forwarding(let request, _), .discardingBody(let request):
            return request
        case .awaitingHead, .closing:
            return nil
        }
    }

    /// The request and its response are both complete.
    private mutating func finishRequest() -> [Action] {
        state = .awaitingHead
        return [.awaitNextHead]
    }

    /// Closes the connection: nothing more is served.
    package mutating func close() -> [Action] {
        state = .closing
        return [.dropUnread, .closeClient]
    }

    private static func outcome(_ request: Request, _ exchange: Exchange, failure: String?, status: Int? = nil) -> ExchangeOutcome {
        ExchangeOutcome(
            status: status ?? (exchange.responseHeadSent ? exchange.responseStatus : nil), bytesUp: exchange.bytesUp,
            bytesDown: exchange.bytesDown, milliseconds: request.startedAt.millisecondsAgo, failure: failure)
    }
}
