import NIOCore
import NIOHTTP1
import XCTest
@testable import Gateway
@testable import GatewayCore

/// The explicit proxy (3128), absolute-form requests: routing, refusals, streaming, audit.
final class ProxyTests: XCTestCase {
    func testAllowedAbsoluteFormIsForwardedInOriginFormAndStreamedBack() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET http://allowed.test/pkg/a?x=1 HTTP/1.1\r\nHost: allowed.test\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nAccept: */*\r\n\r\n")
        XCTAssertEqual(h.dialer.targets.map { "\($0.host):\($0.port)" }, ["allowed.test:80"])
        let upstream = try h.sentUpstream()
        XCTAssertTrue(upstream.hasPrefix("GET /pkg/a?x=1 HTTP/1.1\r\n"), upstream)
        XCTAssertTrue(upstream.contains("Host: allowed.test\r\n"), upstream)
        XCTAssertTrue(upstream.contains("Accept: */*\r\n"), upstream)
        XCTAssertFalse(upstream.lowercased().contains("proxy-"), upstream)

        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello")
        var text = try h.received()
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"), text)
        XCTAssertTrue(text.hasSuffix("hello"), "the first half of the body is passed on before the rest arrives: \(text)")
        try h.upstreamSends(" world")
        text += try h.received()
        let response = try XCTUnwrap(ParsedResponse(text))
        XCTAssertEqual(response.body, "hello world")
        XCTAssertEqual(response.header("content-length"), "11")
        XCTAssertTrue(h.clientIsOpen, "keep-alive connection stays open")

        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_allow\""), line)
        XCTAssertTrue(line.contains("\"sandbox\":\"sbx\",\"via\":\"proxy\",\"host\":\"allowed.test\",\"port\":80"), line)
        XCTAssertTrue(line.contains("\"rule\":\"allowed.test\""), line)
        XCTAssertTrue(line.contains("\"bytes_up\":0,\"bytes_down\":11"), line)
    }

    func testDeniedHostGets403NamingHostAndFix() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n")
        XCTAssertTrue(h.dialer.targets.isEmpty, "nothing is dialled for a refused host")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 403)
        XCTAssertEqual(response.header("content-type"), "text/plain; charset=utf-8")
        let reason = "airlock: example.org is not on the allowlist; add it to /etc/airlock/policy or pass --allow example.org"
        XCTAssertEqual(response.body, reason + "\n")
        XCTAssertEqual(response.header("x-airlock-denied"), reason)
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_deny\",\"sandbox\":\"sbx\",\"via\":\"proxy\",\"host\":\"example.org\",\"port\":80"), line)
        XCTAssertTrue(line.contains("\"reason\":\"example.org is not on the allowlist\""), line)
    }

    func testPolicyRefusalIsNever407() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\nProxy-Authorization: Basic eDp5\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 403)
        XCTAssertNil(response.header("proxy-authenticate"))
    }

    func testIPLiteralIsRefused() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET http://2130706433/ HTTP/1.1\r\nHost: 2130706433\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 403)
        XCTAssertTrue(response.body.contains("IP literal"), response.body)
        XCTAssertTrue(h.dialer.targets.isEmpty)
    }

    func testHTTPSAbsoluteFormIsRefusedWithHint() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(response.body, "airlock: https URLs go through CONNECT, not as absolute-form requests\n")
        XCTAssertFalse(h.clientIsOpen)
    }

    func testOriginFormOnProxyIsRefused() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 400)
        XCTAssertTrue(response.body.contains("absolute URL"), response.body)
    }

    func testUnresolvableUpstreamIs502() throws {
        let h = try GatewayHarness(listener: .proxy)
        h.dialer.failure = .unresolvable(host: "allowed.test", reason: "Name or service not known")
        try h.send("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 502)
        XCTAssertEqual(response.body, "airlock: cannot resolve allowed.test: Name or service not known\n")
        XCTAssertNotNil(response.header("x-airlock-denied"))
    }

    func testUpstreamTimeoutIs504() throws {
        let h = try GatewayHarness(listener: .proxy)
        h.dialer.failure = .timedOut(host: "allowed.test", port: 80, what: "connecting")
        try h.send("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 504)
        XCTAssertEqual(response.body, "airlock: connecting to allowed.test:80 timed out\n")
    }

    func testResolvedPrivateAddressRefusalIs403AndAudited() throws {
        let h = try GatewayHarness(listener: .proxy)
        h.dialer.failure = .refused(host: "allowed.test", reason: "resolves to 127.0.0.1 is loopback; add allow-private 127.0.0.0/8 to permit it")
        try h.send("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 403)
        XCTAssertTrue(response.body.contains("allow-private 127.0.0.0/8"), response.body)
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_deny\""), line)
        XCTAssertTrue(line.contains("loopback"), line)
    }

    func testUpstreamClosingBeforeAnsweringIs502() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        let upstream = try XCTUnwrap(h.dialer.last)
        upstream.pipeline.fireChannelInactive()
        try upstream.close().wait()
        h.loop.run()
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 502)
        XCTAssertEqual(response.body, "airlock: upstream allowed.test closed the connection before answering\n")
        XCTAssertFalse(h.clientIsOpen)
    }

    func testHopByHopResponseHeadersAreStripped() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nConnection: X-Secret-Hop\r\nX-Secret-Hop: 1\r\nTE: trailers\r\nUpgrade: h2c\r\n\r\n")
        let upstream = try h.sentUpstream().lowercased()
        XCTAssertFalse(upstream.contains("x-secret-hop"), upstream)
        XCTAssertFalse(upstream.contains("te: trailers"), upstream)
        XCTAssertFalse(upstream.contains("upgrade"), upstream)
        try h.upstreamSends("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: X-Up-Hop\r\nX-Up-Hop: 1\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
        let text = try h.received().lowercased()
        XCTAssertFalse(text.contains("keep-alive: timeout"), text)
        XCTAssertFalse(text.contains("x-up-hop"), text)
        XCTAssertFalse(text.contains("proxy-authenticate"), text)
    }
}
