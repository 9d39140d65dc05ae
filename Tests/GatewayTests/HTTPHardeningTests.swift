import NIOCore
import XCTest
@testable import Gateway

/// Malformed and hostile request shapes on the HTTP listeners: always a 400/408/431 with
/// a reason, never a forwarded request, never a crash.
final class HTTPHardeningTests: XCTestCase {
    private func assertRefused(_ request: String, status: Int, contains text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let h = try GatewayHarness(listener: .http)
        try h.send(request)
        let raw = try h.received()
        let response = try XCTUnwrap(ParsedResponse(raw), raw, file: file, line: line)
        XCTAssertEqual(response.status, status, request.debugDescription, file: file, line: line)
        XCTAssertTrue(response.body.contains(text), "\(request.debugDescription): \(response.body)", file: file, line: line)
        XCTAssertNotNil(response.header("x-airlock-denied"), file: file, line: line)
        XCTAssertTrue(h.dialer.targets.isEmpty, "nothing forwarded for \(request.debugDescription)", file: file, line: line)
        XCTAssertFalse(h.clientIsOpen, file: file, line: line)
    }

    func testBothContentLengthAndTransferEncodingAreRefused() throws {
        try assertRefused("POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                          status: 400, contains: "malformed")
    }

    func testDuplicateAndConflictingContentLengthAreRefused() throws {
        try assertRefused("POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
                          status: 400, contains: "malformed")
        try assertRefused("POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
                          status: 400, contains: "malformed")
        try assertRefused("POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 4, 4\r\n\r\nabcd",
                          status: 400, contains: "malformed")
    }

    func testObsFoldIsRefused() throws {
        try assertRefused("GET / HTTP/1.1\r\nHost: allowed.test\r\nX-Folded: a\r\n b\r\n\r\n", status: 400, contains: "malformed")
    }

    func testSpacesAndControlCharactersInTheTargetAreRefused() throws {
        try assertRefused("GET /a b HTTP/1.1\r\nHost: allowed.test\r\n\r\n", status: 400, contains: "malformed")
        try assertRefused("GET /a\u{01}b HTTP/1.1\r\nHost: allowed.test\r\n\r\n", status: 400, contains: "malformed")
    }

    /// Bytes that are not UTF-8 in a header value are refused, not forwarded as the
    /// replacement characters the decoder made of them (found by HTTPHeadFuzz: 446 bytes
    /// on the wire became a 1,069-byte head). UTF-8 text passes.
    func testHeaderValuesThatAreNotUTF8AreRefused() throws {
        let h = try GatewayHarness(listener: .http)
        var request = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: allowed.test\r\nX-Name: caf")
        request.writeBytes([0xE9, 0xFF, 0x8A])
        request.writeString("\r\n\r\n")
        try h.send(request)
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(response.header("x-airlock-denied"), "airlock: malformed request: header X-Name is not valid UTF-8")
        XCTAssertTrue(h.dialer.targets.isEmpty, "nothing forwarded")

        XCTAssertNil(RequestValidation.problem(in: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/",
                                                                   headers: ["Host": "allowed.test", "X-Name": "café 東京"])))
    }

    func testUnsupportedTransferEncodingIsRefused() throws {
        try assertRefused("POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                          status: 400, contains: "malformed")
    }

    func testAbsurdHostPortsAreRefused() throws {
        for host in ["allowed.test:0", "allowed.test:65536", "allowed.test:http", "allowed.test:-80"] {
            try assertRefused("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n", status: 400, contains: "bad port")
        }
    }

    func testMissingHostIsRefused() throws {
        try assertRefused("GET / HTTP/1.1\r\n\r\n", status: 400, contains: "no Host header")
    }

    func testOversizedHeadGets431() throws {
        var limits = GatewayLimits()
        limits.maxHeaderBytes = 2048
        let h = try GatewayHarness(listener: .http, limits: limits)
        try h.send("GET / HTTP/1.1\r\nHost: allowed.test\r\n")
        for _ in 0..<10 { try h.send("X-Padding: " + String(repeating: "a", count: 300) + "\r\n") }
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 431)
        XCTAssertTrue(response.body.contains("larger than 2048 bytes"), response.body)
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertTrue(h.dialer.targets.isEmpty)
    }

    func testOversizedHeadInOneReadGets431AndNeverReachesTheUpstream() throws {
        var limits = GatewayLimits()
        limits.maxHeaderBytes = 2048
        let h = try GatewayHarness(listener: .http, limits: limits)
        try h.send("GET / HTTP/1.1\r\nHost: allowed.test\r\nX-Padding: " + String(repeating: "a", count: 6000) + "\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 431)
        XCTAssertEqual(response.body, "airlock: request head larger than 2048 bytes; the gateway's limit is --max-header-bytes\n")
        XCTAssertEqual(response.header("x-airlock-denied"), "airlock: request head larger than 2048 bytes; the gateway's limit is --max-header-bytes")
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertTrue(h.dialer.targets.isEmpty, "nothing forwarded")
    }

    func testOversizedPipelinedHeadGets431AfterTheFirstResponse() throws {
        var limits = GatewayLimits()
        limits.maxHeaderBytes = 2048
        let h = try GatewayHarness(listener: .http, limits: limits)
        try h.send("GET /small HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
                   + "GET /big HTTP/1.1\r\nHost: allowed.test\r\nX-Padding: " + String(repeating: "a", count: 6000) + "\r\n\r\n")
        XCTAssertTrue(try h.sentUpstream().hasPrefix("GET /small HTTP/1.1"))
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        let text = try h.received()
        let parts = text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { ParsedResponse("HTTP/1.1 " + $0) }
        XCTAssertEqual(parts.map { $0?.status }, [200, 431], text)
        XCTAssertEqual(h.dialer.targets.count, 1, "the oversized head never went upstream")
        XCTAssertFalse(h.clientIsOpen)
    }

    func testAHeadJustUnderTheLimitInOneReadIsForwarded() throws {
        var limits = GatewayLimits()
        limits.maxHeaderBytes = 2048
        let h = try GatewayHarness(listener: .http, limits: limits)
        let start = "GET / HTTP/1.1\r\nHost: allowed.test\r\nX-Padding: "
        let head = start + String(repeating: "a", count: 2048 - start.utf8.count - 4) + "\r\n\r\n"
        XCTAssertEqual(head.utf8.count, 2048)
        try h.send(head + "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        XCTAssertEqual(h.dialer.targets.map(\.host), ["allowed.test"])
        XCTAssertTrue(h.clientIsOpen)
    }

    func testSlowTricklingHeadIsCutOffWith408() throws {
        var limits = GatewayLimits()
        limits.headerTimeout = .seconds(10)
        let h = try GatewayHarness(listener: .http, limits: limits)
        try h.send("GET / HTTP/1.1\r\nHost: allowed.test\r\nX-Slow: ")
        for _ in 0..<9 {
            try h.send("a")
            h.loop.advanceTime(by: .seconds(1))
        }
        XCTAssertTrue(h.clientIsOpen, "still within the header deadline")
        h.loop.advanceTime(by: .seconds(2))
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 408)
        XCTAssertFalse(h.clientIsOpen)
    }

    func testSilentConnectionIsClosedAtTheHeaderDeadline() throws {
        let h = try GatewayHarness(listener: .http)
        h.loop.advanceTime(by: .seconds(11))
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertEqual(try h.received(), "")
    }

    func testHealthzIsAnsweredLocally() throws {
        for host in ["airlock.internal", "AIRLOCK.INTERNAL.", "169.254.200.1", "airlock.internal:80"] {
            let h = try GatewayHarness(listener: .http)
            try h.send("GET /healthz HTTP/1.1\r\nHost: \(host)\r\n\r\n")
            let response = try XCTUnwrap(ParsedResponse(try h.received()), host)
            XCTAssertEqual(response.status, 200, host)
            XCTAssertEqual(response.body, "ok\n", host)
            XCTAssertTrue(h.dialer.targets.isEmpty, host)
        }
    }

    func testUnknownInternalPathIs404() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("GET /admin HTTP/1.1\r\nHost: airlock.internal\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 404)
        XCTAssertEqual(response.body, "airlock: no such endpoint on airlock.internal: /admin\n")
        XCTAssertEqual(response.header("content-type"), "text/plain; charset=utf-8")
    }

    func testGitPathWithoutAnInternalRouterIs404() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("GET /git/github.com/o/r/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: airlock.internal\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 404)
        XCTAssertTrue(response.body.contains("git gateway is not enabled"), response.body)
    }

    func testGitPathGoesToTheInternalRouter() throws {
        let router = RecordingRouter()
        let h = try GatewayHarness(listener: .http, internalRouter: router)
        try h.send("GET /git/github.com/o/r/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: airlock.internal\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.body, "git here\n")
        XCTAssertEqual(router.seen.withLockedValue { $0 }, ["http sbx /git/github.com/o/r/info/refs?service=git-upload-pack"])
    }

    func testHostIsRecheckedOnEveryRequestOfAKeptAliveConnection() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        XCTAssertEqual(ParsedResponse(try h.received())?.status, 200)
        try h.send("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 403)
        XCTAssertTrue(response.body.hasPrefix("airlock: evil.test is not on the allowlist"), response.body)
        XCTAssertEqual(h.dialer.targets.map(\.host), ["allowed.test"])
        XCTAssertTrue(h.auditLines.last?.contains("\"via\":\"http\",\"host\":\"evil.test\"") == true)
    }

    func testHopByHopHeaderList() {
        var headers = HTTPHeadersForTest.make([("Connection", "close, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "5"),
                                               ("Proxy-Foo", "1"), ("TE", "trailers"), ("Trailer", "x"), ("Upgrade", "h2c"),
                                               ("Transfer-Encoding", "chunked"), ("Accept", "*/*"), ("Git-Protocol", "version=2")])
        headers = HopByHopHeaders.stripped(headers)
        XCTAssertEqual(headers.map(\.name), ["Accept", "Git-Protocol"])
    }
}

import NIOHTTP1

enum HTTPHeadersForTest {
    static func make(_ pairs: [(String, String)]) -> HTTPHeaders {
        HTTPHeaders(pairs)
    }
}
