import NIOCore
import NIOHTTP1
import XCTest
@testable import Gateway

/// `UpstreamExchange.bufferedResponse`: the forwarder reads the whole answer (bounded) and
/// the client gets what the rewrite makes of it, never the upstream's bytes.
final class BufferedResponseTests: XCTestCase {
    private func forwarding(limit: Int) -> HTTPForwardingStateMachine {
        var machine = HTTPForwardingStateMachine(refusalsPerConnection: 16)
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/batch",
                                   headers: HTTPHeaders([("Host", "airlock.internal"), ("Content-Length", "2")]))
        var exchange = UpstreamExchange(target: UpstreamTarget(host: "upstream.test", port: 443), head: head)
        exchange.bufferedResponse = .init(limit: limit) { head, body in
            LocalResponse(status: head.status, body: "rewritten:" + String(decoding: body.readableBytesView, as: UTF8.self))
        }
        _ = machine.requestPart(.head(head))
        _ = machine.routed(.forward(exchange))
        _ = machine.connected()
        _ = machine.requestPart(.body(ByteBuffer(string: "{}")))
        _ = machine.requestPart(.end(nil))
        return machine
    }

    func testTheClientGetsTheRewriteOfTheWholeAnswer() {
        var machine = forwarding(limit: 16)
        XCTAssertTrue(machine.responseHead(HTTPResponseHead(version: .http1_1, status: .ok)).isEmpty, "nothing reaches the client yet")
        XCTAssertTrue(machine.responseBody(ByteBuffer(string: "abc")).isEmpty)
        XCTAssertTrue(machine.responseBody(ByteBuffer(string: "def")).isEmpty)
        let actions = machine.responseEnd(nil)
        let bodies = actions.compactMap { action -> String? in
            if case .respond(let head, let body, _) = action { return "\(head.status.code) \(body)" }
            return nil
        }
        XCTAssertEqual(bodies, ["200 rewritten:abcdef"])
        XCTAssertFalse(actions.contains { if case .writeResponseBody = $0 { return true } else { return false } })
    }

    func testAnAnswerOverTheLimitIsA502AndTheUpstreamIsClosed() {
        var machine = forwarding(limit: 4)
        _ = machine.responseHead(HTTPResponseHead(version: .http1_1, status: .ok))
        XCTAssertTrue(machine.responseBody(ByteBuffer(string: "abc")).isEmpty)
        let actions = machine.responseBody(ByteBuffer(string: "de"))
        XCTAssertTrue(actions.contains { if case .closeUpstream = $0 { return true } else { return false } })
        let answers = actions.compactMap { action -> String? in
            if case .respond(let head, let body, let close) = action { return "\(head.status.code) \(body) \(close)" }
            return nil
        }
        XCTAssertEqual(answers, ["502 airlock: upstream upstream.test answered with more than 4 bytes where airlock reads the whole answer\n true"])
        XCTAssertTrue(machine.responseEnd(nil).isEmpty, "the rest of the upstream's answer is ignored")
    }
}
