import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import Gateway

/// `CONNECT` on the explicit proxy: allowed tunnels are handed to the tunnel sink with their
/// answer, refusals are real HTTP answers.
final class ConnectTests: XCTestCase {
    func testAllowedConnectIsHandedOffWithItsAnswerAndAuditedWhenItEnds() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
        XCTAssertEqual(h.tunnels.targets.map { "\($0.host):\($0.port)" }, ["allowed.test:443"])
        XCTAssertNil(h.tunnels.targets.first?.tls, "a tunnel is plain TCP; TLS is the sandbox's")
        XCTAssertTrue(h.dialer.targets.isEmpty, "tunnels are dialled by the tunnel sink only")
        let tunnel = try XCTUnwrap(h.tunnels.last)
        // The answer goes first on the spliced connection: no framing headers, nothing else.
        XCTAssertEqual(tunnel.toClient, "HTTP/1.1 200 Connection established\r\n\r\n")
        XCTAssertEqual(tunnel.toUpstream, [])
        XCTAssertEqual(try h.received(), "", "nothing more is written through the HTTP pipeline")
        XCTAssertFalse(h.clientIsOpen, "the connection left NIO for the socket loop")
        XCTAssertFalse(h.auditLines.contains { $0.contains("egress_allow") }, "the tunnel is audited when it ends")

        tunnel.end(up: 21, down: 12)
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_allow\",\"sandbox\":\"sbx\",\"via\":\"connect\",\"host\":\"allowed.test\",\"port\":443"), line)
        XCTAssertTrue(line.contains("\"bytes_up\":21,\"bytes_down\":12"), line)
        XCTAssertFalse(line.contains("\"reason\""), line)
    }

    func testATunnelThatEndedEarlySaysWhyOnItsLine() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        try XCTUnwrap(h.tunnels.last).end(up: 5, down: 0, ending: "no bytes for 300 s")
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_allow\""), line)
        XCTAssertTrue(line.contains("\"reason\":\"no bytes for 300 s\""), line)
    }

    func testBytesSentWithTheConnectHeadReachTheUpstream() throws {
        let h = try GatewayHarness(listener: .proxy)
        h.tunnels.holdDials = true
        try h.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\nearly-bytes")
        XCTAssertNil(h.tunnels.last, "still dialling")
        h.tunnels.completePending()
        h.loop.run()
        let tunnel = try XCTUnwrap(h.tunnels.last)
        XCTAssertEqual(tunnel.toClient, "HTTP/1.1 200 Connection established\r\n\r\n")
        XCTAssertEqual(tunnel.toUpstream.map { String(decoding: $0, as: UTF8.self) }, "early-bytes")
    }

    func testAConnectPipelinedAfterARequestWaitsForItsAnswer() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET http://allowed.test/one HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
                   + "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\nearly")
        XCTAssertEqual(h.dialer.targets.map(\.host), ["allowed.test"])
        XCTAssertTrue(h.tunnels.targets.isEmpty, "the CONNECT waits until the request before it is answered")
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        XCTAssertEqual(ParsedResponse(try h.received())?.body, "one")
        let tunnel = try XCTUnwrap(h.tunnels.last)
        XCTAssertEqual(tunnel.toClient, "HTTP/1.1 200 Connection established\r\n\r\n")
        XCTAssertEqual(tunnel.toUpstream.map { String(decoding: $0, as: UTF8.self) }, "early")
    }

    func testAClientLeavingWhileItsTunnelIsDialledClosesTheUpstreamAndIsAudited() throws {
        let h = try GatewayHarness(listener: .proxy)
        h.tunnels.holdDials = true
        try h.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        try h.client.close().wait()
        h.loop.run()
        h.tunnels.completePending()
        h.loop.run()
        let tunnel = try XCTUnwrap(h.tunnels.last)
        XCTAssertTrue(tunnel.closedUnused, "the upstream dialled for a client that left is closed")
        XCTAssertFalse(tunnel.handedOff)
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"via\":\"connect\",\"host\":\"allowed.test\",\"port\":443"), line)
        XCTAssertTrue(line.contains("\"reason\":\"the sandbox closed the connection\""), line)
    }

    /// `ws://` through the proxy: the upgrade request goes to the upstream as its first
    /// bytes, in origin form with `Upgrade` kept and the proxy's headers gone, so the
    /// server's `101` and the frames after it pass as they are; audited as a proxy request.
    func testAWebSocketUpgradeThroughTheProxyBecomesATunnelCarryingTheRequest() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET http://allowed.test/chat?room=1 HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: websocket\r\n"
                   + "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   + "Sec-WebSocket-Version: 13\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n\r\nframe")
        XCTAssertEqual(h.tunnels.targets.map { "\($0.host):\($0.port)" }, ["allowed.test:80"])
        XCTAssertTrue(h.dialer.targets.isEmpty, "not forwarded as an HTTP exchange")
        let tunnel = try XCTUnwrap(h.tunnels.last)
        XCTAssertEqual(tunnel.toClient, "", "the upstream answers (101), not the gateway")
        XCTAssertEqual(tunnel.toUpstream.map { String(decoding: $0, as: UTF8.self) },
                       "GET /chat?room=1 HTTP/1.1\r\nHost: allowed.test\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       + "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframe")
        tunnel.end(up: 300, down: 200)
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_allow\",\"sandbox\":\"sbx\",\"via\":\"proxy\",\"host\":\"allowed.test\",\"port\":80"), line)
        XCTAssertTrue(line.contains("\"bytes_up\":300,\"bytes_down\":200") && !line.contains("\"status\""), line)
    }

    func testUpgradesAreDecidedLikeRequestsAndMustBePlainGets() throws {
        let denied = try GatewayHarness(listener: .proxy)
        try denied.send("GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        let refusal = try XCTUnwrap(ParsedResponse(try denied.received()))
        XCTAssertEqual(refusal.status, 403)
        XCTAssertEqual(refusal.header("x-airlock-denied"), "airlock: denied.test is not on the allowlist; add it to /etc/airlock/policy or pass --allow denied.test")
        XCTAssertTrue(denied.tunnels.targets.isEmpty)
        XCTAssertTrue(denied.auditLines.last?.contains("\"event\":\"egress_deny\"") == true)

        for (request, reason) in [
            ("GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
             "airlock: malformed request: an upgrade through the proxy must be http:// (wss:// and https:// go through CONNECT)"),
            ("POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nhi",
             "airlock: malformed request: an upgrade request is a GET without a body"),
        ] {
            let h = try GatewayHarness(listener: .proxy)
            try h.send(request)
            let response = try XCTUnwrap(ParsedResponse(try h.received()))
            XCTAssertEqual(response.status, 400, request)
            XCTAssertEqual(response.header("x-airlock-denied"), reason)
            XCTAssertTrue(h.tunnels.targets.isEmpty && h.dialer.targets.isEmpty)
        }
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
        XCTAssertTrue(h.tunnels.targets.isEmpty)
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
        XCTAssertEqual(h2.tunnels.last?.toClient, "HTTP/1.1 200 Connection established\r\n\r\n")
        XCTAssertEqual(h2.tunnels.targets.map(\.port), [8443])
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
            XCTAssertTrue(h.tunnels.targets.isEmpty, target)
            XCTAssertFalse(h.clientIsOpen, target)
        }
    }

    func testConnectDialFailureIs502AndAudited() throws {
        let h = try GatewayHarness(listener: .proxy)
        h.tunnels.failure = .connectFailed(host: "allowed.test", port: 443, reason: "Connection refused")
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
        XCTAssertEqual(response.body, "airlock: CONNECT is served only by the proxy on port 3128\n")
        XCTAssertTrue(h.dialer.targets.isEmpty)
        XCTAssertTrue(h.tunnels.targets.isEmpty)
    }
}
