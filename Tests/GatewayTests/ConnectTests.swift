import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import Gateway

/// `CONNECT` on the explicit proxy: allowed tunnels splice, refusals are real HTTP answers.
final class ConnectTests: XCTestCase {
    func testAllowedConnectAnswers200ThenSplicesBothWays() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
        XCTAssertEqual(h.dialer.targets.map { "\($0.host):\($0.port)" }, ["allowed.test:443"])
        XCTAssertNil(h.dialer.targets.first?.tls, "a tunnel is plain TCP; TLS is the sandbox's")
        let answer = try h.received()
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 "), answer)
        XCTAssertTrue(answer.hasSuffix("\r\n\r\n"), answer)
        XCTAssertFalse(answer.lowercased().contains("content-length"), answer)
        XCTAssertFalse(answer.lowercased().contains("transfer-encoding"), answer)

        // After the 200, bytes pass untouched in both directions.
        try h.send("\u{16}\u{03}\u{01}client-hello-bytes")
        XCTAssertEqual(try h.sentUpstream(), "\u{16}\u{03}\u{01}client-hello-bytes")
        try h.upstreamSends("server-bytes")
        XCTAssertEqual(try h.received(), "server-bytes")

        // Closing the upstream closes the sandbox side; the tunnel's end is audited.
        try h.dialer.last!.close().wait()
        h.loop.run()
        XCTAssertFalse(h.clientIsOpen)
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_allow\",\"sandbox\":\"sbx\",\"via\":\"connect\",\"host\":\"allowed.test\",\"port\":443"), line)
        XCTAssertTrue(line.contains("\"bytes_up\":21,\"bytes_down\":12"), line)
    }

    func testBytesSentWithTheConnectHeadReachTheUpstream() throws {
        let h = try GatewayHarness(listener: .proxy)
        h.dialer.holdDials = true
        try h.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\nearly-bytes")
        h.dialer.completePending()
        h.loop.run()
        XCTAssertTrue(try h.received().hasPrefix("HTTP/1.1 200 "))
        XCTAssertEqual(try h.sentUpstream(), "early-bytes")
    }

    func testDeniedConnectGets403AndCloses() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 403)
        let reason = "airlock: evil.test is not on the allowlist; add it to /etc/airlock/policy or pass --allow evil.test"
        XCTAssertEqual(response.body, reason + "\n")
        XCTAssertEqual(response.header("x-airlock-denied"), reason)
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertTrue(h.dialer.targets.isEmpty)
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_deny\",\"sandbox\":\"sbx\",\"via\":\"connect\",\"host\":\"evil.test\",\"port\":443"), line)
    }

    func testConnectToOtherPortNeedsARule() throws {
        let h = try GatewayHarness(listener: .proxy, policy: "allowed.test\napi.test:8443\n")
        try h.send("CONNECT allowed.test:22 HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 403)
        XCTAssertTrue(response.body.hasPrefix("airlock: port 22 is not allowed for allowed.test"), response.body)
        XCTAssertTrue(response.body.contains("--allow allowed.test:22"), response.body)

        let h2 = try GatewayHarness(listener: .proxy, policy: "allowed.test\napi.test:8443\n")
        try h2.send("CONNECT api.test:8443 HTTP/1.1\r\nHost: api.test\r\n\r\n")
        XCTAssertTrue(try h2.received().hasPrefix("HTTP/1.1 200 "))
        XCTAssertEqual(h2.dialer.targets.map(\.port), [8443])
    }

    func testMalformedConnectTargetsGet400() throws {
        let targets = ["allowed.test:0", "allowed.test:65536", "allowed.test:https", "allowed.test:-1",
                       "allowed.test:44x3", "allowed.test:", "allowed.test:443:443", "user@allowed.test:443",
                       "allowed.test%0d%0a:443", "allowed.test:99999999999999999999"]
        for target in targets {
            let h = try GatewayHarness(listener: .proxy)
            try h.send("CONNECT \(target) HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
            let text = try h.received()
            let response = try XCTUnwrap(ParsedResponse(text), "\(target): \(text)")
            XCTAssertEqual(response.status, 400, target)
            XCTAssertTrue(response.body.hasPrefix("airlock: malformed request"), "\(target): \(response.body)")
            XCTAssertNotNil(response.header("x-airlock-denied"), target)
            XCTAssertTrue(h.dialer.targets.isEmpty, target)
            XCTAssertFalse(h.clientIsOpen, target)
        }
    }

    func testConnectDialFailureIs502AndAudited() throws {
        let h = try GatewayHarness(listener: .proxy)
        h.dialer.failure = .connectFailed(host: "allowed.test", port: 443, reason: "Connection refused")
        try h.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 502)
        XCTAssertEqual(response.body, "airlock: cannot connect to allowed.test:443: Connection refused\n")
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_deny\""), line)
        XCTAssertTrue(line.contains("Connection refused"), line)
    }

    func testConnectOnTransparentHTTPListenerIs405() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 405)
        XCTAssertTrue(h.dialer.targets.isEmpty)
    }
}
