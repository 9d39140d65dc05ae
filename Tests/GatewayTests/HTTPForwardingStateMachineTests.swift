import NIOCore
import NIOHTTP1
import XCTest
@testable import Gateway

/// The forwarder's decisions, event by event, without channels.
final class HTTPForwardingStateMachineTests: XCTestCase {
    private func head(_ method: HTTPMethod = .GET, _ uri: String = "/", _ headers: [(String, String)] = [("Host", "allowed.test")],
                      version: HTTPVersion = .http1_1) -> HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: uri, headers: HTTPHeaders(headers))
    }

    private func exchange(_ check: (@Sendable ([UInt8], Bool) -> UpstreamExchange.BodyCheck)? = nil,
                          intercept: (@Sendable (HTTPResponseHead) -> LocalResponse?)? = nil) -> UpstreamExchange {
        var exchange = UpstreamExchange(target: UpstreamTarget(host: "allowed.test", port: 80), head: head(), interceptResponse: intercept)
        exchange.bodyCheck = check
        return exchange
    }

    /// What the actions say, in a form a test can compare.
    private func describe(_ actions: [HTTPForwardingStateMachine.Action]) -> [String] {
        actions.map { action in
            switch action {
            case .route(let head): "route \(head.uri)"
            case .dial(let target): "dial \(target.host):\(target.port)"
            case .reuseOrDial(let target): "reuse or dial \(target.host):\(target.port)"
            case .sendContinue: "100"
            case .respond(let head, let body, let close): "respond \(head.status.code) \(body.trimmingCharacters(in: .newlines))\(close ? " close" : "")"
            case .requeue(let parts): "requeue \(parts.count)"
            case .sendRequestHead(let head): "up head \(head.headers.first(name: "connection") ?? "")"
            case .sendRequestBody(let buffer): "up body \(buffer.readableBytes)"
            case .sendRequestEnd: "up end"
            case .writeResponseHead(let head): "down head \(head.status.code) \(head.headers.first(name: "connection") ?? "")"
            case .writeResponseBody(let buffer): "down body \(buffer.readableBytes)"
            case .writeResponseEnd(_, let close): "down end\(close ? " close" : "")"
            case .awaitInspector: "await inspector"
            case .report(_, let outcome): "report \(outcome.status.map(String.init) ?? "-") \(outcome.bytesUp)/\(outcome.bytesDown) \(outcome.failure ?? "ok")"
            case .closeUpstream: "close upstream"
            case .releaseUpstream: "release upstream"
            case .closeClient: "close client"
            case .dropUnread: "drop unread"
            case .awaitNextHead: "next"
            }
        }
    }

    func testAForwardedRequestStreamsBothWaysAndIsReportedOnce() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        XCTAssertEqual(describe(machine.requestPart(.head(head(.POST, "/up", [("Host", "allowed.test"), ("Content-Length", "3")])))), ["route /up"])
        XCTAssertFalse(machine.takesRequestParts, "nothing more is taken while routing")
        XCTAssertEqual(describe(machine.routed(.forward(exchange()))), ["dial allowed.test:80"])
        XCTAssertFalse(machine.readsClient(upstreamWritable: true), "nothing is read while dialling")
        XCTAssertEqual(describe(machine.connected()), ["up head close"])
        XCTAssertTrue(machine.readsClient(upstreamWritable: true))
        XCTAssertFalse(machine.readsClient(upstreamWritable: false), "the body waits while the upstream is full")
        XCTAssertEqual(describe(machine.requestPart(.body(ByteBuffer(string: "abc")))), ["up body 3"])
        XCTAssertEqual(describe(machine.requestPart(.end(nil))), ["up end"])
        XCTAssertFalse(machine.readsClient(upstreamWritable: true), "the next request waits for this response")
        var response = HTTPResponseHead(version: .http1_1, status: .ok)
        response.headers.add(name: "Content-Length", value: "2")
        XCTAssertEqual(describe(machine.responseHead(response)), ["down head 200 keep-alive"])
        XCTAssertEqual(describe(machine.responseBody(ByteBuffer(string: "ok"))), ["down body 2"])
        XCTAssertEqual(describe(machine.responseEnd(nil)), ["close upstream", "report 200 3/2 ok", "down end", "next"])
        XCTAssertEqual(describe(machine.upstreamClosed()), [], "a finished exchange is not reported again")
        XCTAssertEqual(describe(machine.clientClosed()), ["close upstream", "drop unread"])
    }

    func testExpectContinueIsSentOnceConnectedAndNeverForARefusal() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        let expecting = head(.POST, "/up", [("Host", "allowed.test"), ("Content-Length", "3"), ("Expect", "100-continue")])
        _ = machine.requestPart(.head(expecting))
        _ = machine.routed(.forward(exchange()))
        XCTAssertEqual(describe(machine.connected()), ["up head close", "100"])

        var refused = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = refused.requestPart(.head(expecting))
        let refusal = Refusal(.forbidden, reason: "no").response
        XCTAssertEqual(describe(refused.routed(.respond(refusal))), ["respond 403 airlock: no close", "drop unread"],
                       "no 100, and the unread body closes the connection")
    }

    func testALocalAnswerKeepsTheConnectionUntilTheRefusalLimit() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 2)
        let refusal = Refusal(.forbidden, reason: "evil.test is not on the allowlist").response
        _ = machine.requestPart(.head(head()))
        XCTAssertEqual(describe(machine.routed(.respond(refusal))), ["respond 403 airlock: evil.test is not on the allowlist"])
        XCTAssertEqual(describe(machine.requestPart(.end(nil))), ["next"], "kept alive once the request has ended")
        _ = machine.requestPart(.head(head()))
        XCTAssertEqual(describe(machine.routed(.respond(refusal))), ["respond 403 airlock: evil.test is not on the allowlist close", "drop unread"])
        XCTAssertEqual(machine.refusals, 2)
    }

    func testTheBodyCheckHoldsPartsThenPassesThemOn() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head(.POST, "/p", [("Host", "allowed.test"), ("Transfer-Encoding", "chunked")])))
        let check: @Sendable ([UInt8], Bool) -> UpstreamExchange.BodyCheck = { prefix, _ in prefix.count >= 4 ? .pass : .needMore }
        XCTAssertEqual(describe(machine.routed(.forward(exchange(check)))), [], "nothing is dialled before the check decides")
        XCTAssertEqual(describe(machine.requestPart(.body(ByteBuffer(string: "ab")))), [])
        XCTAssertEqual(describe(machine.requestPart(.body(ByteBuffer(string: "cd")))), ["requeue 2", "dial allowed.test:80"])
    }

    func testARefusingBodyCheckAnswersAfterTheBodyIsDrainedAndReportsNothing() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head(.POST, "/p", [("Host", "allowed.test"), ("Content-Length", "8")])))
        let answer = Refusal(.forbidden, reason: "push to main refused").response
        let check: @Sendable ([UInt8], Bool) -> UpstreamExchange.BodyCheck = { _, _ in .refuse(answer) }
        _ = machine.routed(.forward(exchange(check)))
        XCTAssertEqual(describe(machine.requestPart(.body(ByteBuffer(string: "abcd")))), [])
        XCTAssertEqual(describe(machine.requestPart(.body(ByteBuffer(string: "efgh")))), [], "the rest of the body is dropped")
        XCTAssertEqual(describe(machine.requestPart(.end(nil))), ["respond 403 airlock: push to main refused", "next"])
    }

    func testABodyThatEndsBeforeTheCheckDecidesIs400() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head(.POST, "/p", [("Host", "allowed.test"), ("Content-Length", "1")])))
        _ = machine.routed(.forward(exchange { _, _ in .needMore }))
        _ = machine.requestPart(.body(ByteBuffer(string: "a")))
        XCTAssertEqual(describe(machine.requestPart(.end(nil))), ["respond 400 airlock: the request body ended before it could be checked", "next"])
    }

    func testDialFailuresMapTo403And502And504() {
        let cases: [(DialError, String)] = [
            (.refused(host: "allowed.test", reason: "resolves to 127.0.0.1"), "403"),
            (.connectFailed(host: "allowed.test", port: 80, reason: "Connection refused"), "502"),
            (.timedOut(host: "allowed.test", port: 80, what: "connecting"), "504"),
        ]
        for (error, status) in cases {
            var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
            _ = machine.requestPart(.head(head()))
            _ = machine.routed(.forward(exchange()))
            let actions = describe(machine.dialFailed(error))
            XCTAssertEqual(actions.first, "report \(status) 0/0 \(error.reason)")
            XCTAssertTrue(actions.contains("respond \(status) airlock: \(error.reason) close"), "\(actions)")
        }
    }

    func testAnUpstreamThatClosesMidResponseAbortsTheClient() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head()))
        _ = machine.routed(.forward(exchange()))
        _ = machine.connected()
        _ = machine.requestPart(.end(nil))
        var response = HTTPResponseHead(version: .http1_1, status: .ok)
        response.headers.add(name: "Transfer-Encoding", value: "chunked")
        _ = machine.responseHead(response)
        _ = machine.responseBody(ByteBuffer(string: "hello"))
        XCTAssertEqual(describe(machine.upstreamClosed()),
                       ["report 200 0/5 upstream allowed.test closed the connection mid-response", "drop unread", "close client"])
    }

    func testAnUpstreamThatClosesBeforeAnsweringIs502() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head()))
        _ = machine.routed(.forward(exchange()))
        _ = machine.connected()
        XCTAssertEqual(describe(machine.upstreamClosed()), [
            "report 502 0/0 upstream allowed.test closed the connection before answering",
            "respond 502 airlock: upstream allowed.test closed the connection before answering close", "drop unread",
        ])
    }

    func testAnHTTP10ClientGetsACloseDelimitedBody() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head(version: .http1_0)))
        _ = machine.routed(.forward(exchange()))
        _ = machine.connected()
        _ = machine.requestPart(.end(nil))
        var response = HTTPResponseHead(version: .http1_1, status: .ok)
        response.headers.add(name: "Transfer-Encoding", value: "chunked")
        XCTAssertEqual(describe(machine.responseHead(response)), ["down head 200 close"])
        XCTAssertEqual(describe(machine.responseEnd(nil)), ["close upstream", "report 200 0/0 ok", "down end close", "drop unread"])
    }

    func testAnInterceptedResponseIsReplacedAndReportedWithTheLocalStatus() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head()))
        let intercept: @Sendable (HTTPResponseHead) -> LocalResponse? = { head in
            head.status == .unauthorized ? Refusal(.forbidden, reason: "upstream credential refused").response : nil
        }
        _ = machine.routed(.forward(exchange(intercept: intercept)))
        _ = machine.connected()
        _ = machine.requestPart(.end(nil))
        XCTAssertEqual(describe(machine.responseHead(HTTPResponseHead(version: .http1_1, status: .unauthorized))),
                       ["close upstream", "report 403 0/0 ok", "respond 403 airlock: upstream credential refused", "next"])
    }

    func testHalfCloseBetweenRequestsClosesAndDuringAnExchangeEndsKeepAlive() {
        var idle = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        XCTAssertEqual(describe(idle.clientInputClosed()), ["drop unread", "close client"])

        var busy = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = busy.requestPart(.head(head()))
        _ = busy.routed(.forward(exchange()))
        _ = busy.connected()
        _ = busy.requestPart(.end(nil))
        XCTAssertEqual(describe(busy.clientInputClosed()), [])
        var response = HTTPResponseHead(version: .http1_1, status: .ok)
        response.headers.add(name: "Content-Length", value: "0")
        XCTAssertEqual(describe(busy.responseHead(response)), ["down head 200 close"])
    }

    func testAClientLeavingMidExchangeIsReported() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head()))
        _ = machine.routed(.forward(exchange()))
        XCTAssertEqual(describe(machine.clientClosed()), ["report - 0/0 the sandbox closed the connection", "close upstream", "drop unread"])
    }

    func testMalformedRequestsAre400OnlyBetweenRequests() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        XCTAssertEqual(describe(machine.requestMalformed("invalid header")),
                       ["respond 400 airlock: malformed HTTP request (invalid header) close", "drop unread"])
        var busy = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = busy.requestPart(.head(head()))
        XCTAssertEqual(describe(busy.requestMalformed("x")), ["drop unread", "close client"])
    }

    /// Decides at the body's end with a fixed answer, as git's pack check does.
    private final class EndInspector: RequestBodyInspector {
        let answer: LocalResponse?
        init(_ answer: LocalResponse?) { self.answer = answer }
        func inspect(_ chunk: ByteBuffer) -> LocalResponse? { nil }
        func finish() -> InspectorDecision { answer.map { .refuse($0) } ?? .pass }
    }

    /// Decides at the body's end only after work that takes time, as the pack check does
    /// when it asks the upstream.
    private final class PendingInspector: RequestBodyInspector {
        func inspect(_ chunk: ByteBuffer) -> LocalResponse? { nil }
        func finish() -> InspectorDecision { .pending { eventLoop, _ in eventLoop.makeSucceededFuture(nil) } }
    }

    /// An inspector that must ask before it decides: the held tail, the end and any
    /// upstream answer wait for the decision; a refusal then replaces the answer, a pass
    /// releases everything in order. A decision that comes after the exchange ended is
    /// ignored.
    func testAPendingInspectorHoldsTheTailAndTheAnswerUntilItDecides() {
        for refuse in [true, false] {
            var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
            var inspected = exchange()
            inspected.bodyInspector = { PendingInspector() }
            _ = machine.requestPart(.head(head(.POST, "/push", [("Host", "allowed.test"), ("Transfer-Encoding", "chunked")])))
            _ = machine.routed(.forward(inspected))
            _ = machine.connected()
            XCTAssertEqual(describe(machine.requestPart(.body(ByteBuffer(repeating: 1, count: 100)))), ["up body 36"])
            XCTAssertEqual(describe(machine.requestPart(.end(nil))), ["await inspector"], "neither the tail nor the end goes up yet")
            XCTAssertFalse(machine.readsClient(upstreamWritable: true), "nothing more is read meanwhile")
            var early = HTTPResponseHead(version: .http1_1, status: .ok)
            early.headers.add(name: "Content-Length", value: "2")
            XCTAssertEqual(describe(machine.responseHead(early)), [], "an early answer is withheld")
            XCTAssertEqual(describe(machine.responseBody(ByteBuffer(string: "ok"))), [])
            if refuse {
                let refusal = LocalResponse(status: .ok, headers: HTTPHeaders([("X-Airlock-Denied", "no")]), body: "refused")
                XCTAssertEqual(describe(machine.inspectorDecided(refusal)), ["close upstream", "respond 200 refused", "next"])
            } else {
                XCTAssertEqual(describe(machine.inspectorDecided(nil)), ["up body 64", "up end", "down head 200 keep-alive", "down body 2"])
            }
            XCTAssertEqual(describe(machine.inspectorDecided(nil)), [], "a second decision changes nothing")
        }
        // The upstream gives up while the inspector is deciding: a 502, and the late
        // decision is ignored.
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        var inspected = exchange()
        inspected.bodyInspector = { PendingInspector() }
        _ = machine.requestPart(.head(head(.POST, "/push", [("Host", "allowed.test"), ("Content-Length", "3")])))
        _ = machine.routed(.forward(inspected))
        _ = machine.connected()
        _ = machine.requestPart(.body(ByteBuffer(string: "abc")))
        XCTAssertEqual(describe(machine.requestPart(.end(nil))), ["await inspector"])
        XCTAssertEqual(describe(machine.upstreamClosed()).first, "report 502 0/0 upstream allowed.test closed the connection before answering")
        XCTAssertEqual(describe(machine.inspectorDecided(nil)), [])
    }

    /// An upstream that answers before the inspected body has ended (git's http-backend
    /// writes its headers at once): nothing of its answer reaches the client before the
    /// inspector decides; a refusal replaces it, a pass releases it as it came.
    func testAnUpstreamAnswerIsWithheldUntilTheInspectorDecides() {
        for refuse in [true, false] {
            var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
            let refusal = LocalResponse(status: .ok, headers: HTTPHeaders([("X-Airlock-Denied", "no")]), body: "refused")
            var inspected = exchange()
            let answer = refuse ? refusal : nil
            inspected.bodyInspector = { EndInspector(answer) }
            _ = machine.requestPart(.head(head(.POST, "/push", [("Host", "allowed.test"), ("Transfer-Encoding", "chunked")])))
            _ = machine.routed(.forward(inspected))
            XCTAssertEqual(describe(machine.connected()), ["up head close"])
            XCTAssertEqual(describe(machine.requestPart(.body(ByteBuffer(repeating: 1, count: 100)))), ["up body 36"], "the last 64 bytes are held")
            var early = HTTPResponseHead(version: .http1_1, status: .ok)
            early.headers.add(name: "Transfer-Encoding", value: "chunked")
            XCTAssertEqual(describe(machine.responseHead(early)), [], "the early head is withheld")
            XCTAssertEqual(describe(machine.responseBody(ByteBuffer(string: "ab"))), [], "and so is its body")
            if refuse {
                XCTAssertEqual(describe(machine.requestPart(.end(nil))), ["close upstream", "respond 200 refused", "next"],
                               "the refusal replaces the withheld answer, which never reached the client")
            } else {
                XCTAssertEqual(describe(machine.requestPart(.end(nil))), ["up body 64", "up end", "down head 200 keep-alive", "down body 2"],
                               "the held tail and the end go up, then the withheld answer down")
                XCTAssertEqual(describe(machine.responseEnd(nil)), ["close upstream", "report 200 100/2 ok", "down end", "next"])
            }
        }
    }

    // MARK: kept upstream connections

    private func kept(_ method: HTTPMethod = .GET) -> UpstreamExchange {
        var exchange = UpstreamExchange(target: UpstreamTarget(host: "git.test", port: 443), head: head(method, "/o/r.git/info/refs"))
        exchange.keepsConnection = true
        return exchange
    }

    private func response(_ headers: [(String, String)] = [("Content-Length", "2")], version: HTTPVersion = .http1_1) -> HTTPResponseHead {
        HTTPResponseHead(version: version, status: .ok, headers: HTTPHeaders(headers))
    }

    /// A kept exchange's GET, sent and answered with `upstream`: the actions of its end.
    private func keptGET(answeredWith upstream: HTTPResponseHead, body: String = "ok") -> [String] {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head()))
        XCTAssertEqual(describe(machine.routed(.forward(kept()))), ["reuse or dial git.test:443"])
        XCTAssertEqual(describe(machine.connected()), ["up head "], "no Connection: close on a kept connection")
        XCTAssertEqual(describe(machine.requestPart(.end(nil))), ["up end"])
        _ = machine.responseHead(upstream)
        if !body.isEmpty { _ = machine.responseBody(ByteBuffer(string: body)) }
        return describe(machine.responseEnd(nil))
    }

    func testAKeptConnectionIsReleasedOnlyAfterACleanFramedHTTP11Response() {
        XCTAssertEqual(keptGET(answeredWith: response()), ["release upstream", "report 200 0/2 ok", "down end", "next"])
        XCTAssertEqual(keptGET(answeredWith: response([("Transfer-Encoding", "chunked")])).first, "release upstream")
        XCTAssertEqual(keptGET(answeredWith: response([("Content-Length", "2"), ("Connection", "close")])).first, "close upstream",
                       "the upstream said it closes")
        XCTAssertEqual(keptGET(answeredWith: response([("Content-Length", "2")], version: .http1_0)).first, "close upstream",
                       "HTTP/1.0 is not kept")
        XCTAssertEqual(keptGET(answeredWith: response([])).first, "close upstream", "a body ended by the close is not kept")
    }

    func testAnExchangeThatDoesNotAskIsNeverKept() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head()))
        XCTAssertEqual(describe(machine.routed(.forward(exchange()))), ["dial allowed.test:80"])
        XCTAssertEqual(describe(machine.connected()), ["up head close"])
        _ = machine.requestPart(.end(nil))
        _ = machine.responseHead(response())
        _ = machine.responseBody(ByteBuffer(string: "ok"))
        XCTAssertEqual(describe(machine.responseEnd(nil)).first, "close upstream")
    }

    func testAResponseBeforeTheWholeRequestWentUpIsNotKept() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head(.POST, "/up", [("Host", "git.test"), ("Content-Length", "10")])))
        _ = machine.routed(.forward(kept(.POST)))
        _ = machine.connected()
        _ = machine.requestPart(.body(ByteBuffer(string: "12345")))
        _ = machine.responseHead(response())
        _ = machine.responseBody(ByteBuffer(string: "ok"))
        XCTAssertEqual(describe(machine.responseEnd(nil)).first, "close upstream", "the rest of the request would follow on it")
    }

    func testAStaleKeptConnectionIsRetriedOnceOnAFreshOneWhenNothingOfTheBodyWasSent() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head()))
        _ = machine.routed(.forward(kept()))
        XCTAssertEqual(describe(machine.connected(reused: true)), ["up head "])
        XCTAssertEqual(describe(machine.requestPart(.end(nil))), ["up end"])
        XCTAssertEqual(describe(machine.upstreamClosed()), ["dial git.test:443"], "a fresh dial, not the pool")
        XCTAssertEqual(describe(machine.connected()), ["up head ", "up end"], "the GET is sent again, whole")
        XCTAssertEqual(describe(machine.upstreamClosed()),
                       ["report 502 0/0 upstream git.test closed the connection before answering",
                        "respond 502 airlock: upstream git.test closed the connection before answering close", "drop unread"],
                       "only once")

        var post = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = post.requestPart(.head(head(.POST, "/o/r.git/git-upload-pack", [("Host", "git.test"), ("Content-Length", "4")])))
        _ = post.routed(.forward(kept(.POST)))
        _ = post.connected(reused: true)
        XCTAssertEqual(describe(post.upstreamClosed()), ["dial git.test:443"], "the body is still unread: it can go on the new one")
        XCTAssertEqual(describe(post.connected()), ["up head "])
        XCTAssertEqual(describe(post.requestPart(.body(ByteBuffer(string: "0000")))), ["up body 4"])
    }

    func testAStaleKeptConnectionIsNotRetriedOnceTheBodyStartedOrForABodilessPOST() {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = machine.requestPart(.head(head(.POST, "/o/r.git/git-upload-pack", [("Host", "git.test"), ("Content-Length", "8")])))
        _ = machine.routed(.forward(kept(.POST)))
        _ = machine.connected(reused: true)
        XCTAssertEqual(describe(machine.requestPart(.body(ByteBuffer(string: "0000")))), ["up body 4"])
        XCTAssertEqual(describe(machine.upstreamClosed()).first, "report 502 4/0 upstream git.test closed the connection before answering",
                       "the body's start is gone: 502 as without a pool")

        var bodiless = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = bodiless.requestPart(.head(head(.POST, "/api/x/merge", [("Host", "git.test")])))
        _ = bodiless.routed(.forward(kept(.POST)))
        _ = bodiless.connected(reused: true)
        _ = bodiless.requestPart(.end(nil))
        XCTAssertEqual(describe(bodiless.upstreamClosed()).first, "report 502 0/0 upstream git.test closed the connection before answering",
                       "a POST is not idempotent: the upstream may have acted on it")

        var fresh = HTTPForwardingStateMachine(refusalsPerConnection: 3)
        _ = fresh.requestPart(.head(head()))
        _ = fresh.routed(.forward(kept()))
        _ = fresh.connected()
        _ = fresh.requestPart(.end(nil))
        XCTAssertEqual(describe(fresh.upstreamClosed()).first, "report 502 0/0 upstream git.test closed the connection before answering",
                       "a connection dialled for this request is not stale")
    }
}
