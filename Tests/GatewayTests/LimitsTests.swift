import NIOCore
import NIOEmbedded
import XCTest
@testable import Gateway

/// Idle timeout and the per-sandbox connection limit.
final class LimitsTests: XCTestCase {
    /// `IdleStateHandler` measures idleness on the wall clock, so this test drives the
    /// pipeline with the events it emits rather than with the embedded loop's clock.
    /// (Spliced tunnels have the socket loop's own idle timeout.)
    func testIdleEventClosesAConnectionButOtherIdleKindsDoNot() throws {
        let h = try GatewayHarness(listener: .proxy)
        h.tunnels.holdDials = true
        try h.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        h.client.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
        h.client.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.write)
        h.loop.run()
        XCTAssertTrue(h.clientIsOpen, "idle in one direction only is not idle")
        h.client.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.all)
        h.loop.run()
        XCTAssertFalse(h.clientIsOpen, "no bytes either way closes the connection")
        h.tunnels.completePending()
        h.loop.run()
        XCTAssertEqual(h.tunnels.last?.closedUnused, true, "and the upstream dialled for it")
    }

    func testEveryListenerPipelineHasAnIdleTimer() throws {
        for listener in [GatewayHarness.Listener.http, .proxy, .tls] {
            let h = try GatewayHarness(listener: listener)
            XCTAssertNoThrow(try h.client.pipeline.syncOperations.handler(type: IdleStateHandler.self))
            XCTAssertNoThrow(try h.client.pipeline.syncOperations.handler(type: IdleCloser.self))
        }
    }

    func testConnectionLimitAdmitsUpToTheLimitAndFreesOnClose() throws {
        let tracker = ConnectionTracker(limit: 2)
        let loop = EmbeddedEventLoop()
        let a = EmbeddedChannel(loop: loop), b = EmbeddedChannel(loop: loop), c = EmbeddedChannel(loop: loop)
        XCTAssertTrue(tracker.admit(a))
        XCTAssertTrue(tracker.admit(b))
        XCTAssertFalse(tracker.admit(c), "the third connection is over the limit")
        XCTAssertEqual(tracker.count, 2)
        try a.close().wait()
        loop.run()
        XCTAssertEqual(tracker.count, 1)
        XCTAssertTrue(tracker.admit(c), "a closed connection frees its slot")
        tracker.closeAll()
        loop.run()
        XCTAssertEqual(tracker.count, 0)
        XCTAssertFalse(b.isActive)
    }
}

/// What one sandbox connection can cost the gateway: refusals on a kept-alive connection,
/// kept-alive connections between requests.
final class KeptAliveLimitsTests: XCTestCase {
    func testAConnectionThatKeepsBeingRefusedIsClosedAfterTheLimit() throws {
        var limits = GatewayLimits()
        limits.refusalsPerConnection = 4
        let h = try GatewayHarness(listener: .http, limits: limits)
        // A flood of small denied requests on one kept-alive connection, in one write.
        try h.send(String(repeating: "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", count: 50))
        let text = try h.received()
        let answers = text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { ParsedResponse("HTTP/1.1 " + $0) }
        XCTAssertEqual(answers.count, 4, text)
        XCTAssertTrue(answers.allSatisfy { $0?.status == 403 && $0?.body.hasPrefix("airlock: evil.test is not on the allowlist") == true }, text)
        XCTAssertEqual(answers.dropLast().map { $0?.header("connection") }, ["keep-alive", "keep-alive", "keep-alive"])
        XCTAssertEqual(answers.last??.header("connection"), "close")
        XCTAssertFalse(h.clientIsOpen, "the fourth refusal closes the connection")
        XCTAssertEqual(h.auditLines.filter { $0.contains("\"egress_deny\"") }.count, 4, "\(h.auditLines)")
    }

    func testTheDefaultRefusalLimitClosesAFloodingConnection() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send(String(repeating: "GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n", count: 100))
        let text = try h.received()
        XCTAssertEqual(text.components(separatedBy: "HTTP/1.1 403 ").count - 1, GatewayLimits().refusalsPerConnection)
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertEqual(h.auditLines.count, GatewayLimits().refusalsPerConnection)
    }

    func testAKeptAliveConnectionIsClosedWhenTheNextRequestDoesNotStartInTime() throws {
        var limits = GatewayLimits()
        limits.keepAliveTimeout = .seconds(15)
        let h = try GatewayHarness(listener: .http, limits: limits)
        try h.send("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("connection"), "keep-alive")
        h.loop.advanceTime(by: .seconds(14))
        XCTAssertTrue(h.clientIsOpen, "within the keep-alive timeout")
        h.loop.advanceTime(by: .seconds(2))
        XCTAssertFalse(h.clientIsOpen, "closed at the keep-alive timeout, long before the idle timeout")
        XCTAssertEqual(try h.received(), "", "closed without an answer: no request was in flight")
    }

    func testTheKeepAliveTimeoutStopsOnceTheNextRequestStarts() throws {
        var limits = GatewayLimits()
        limits.keepAliveTimeout = .seconds(5)
        limits.headerTimeout = .seconds(10)
        let h = try GatewayHarness(listener: .http, limits: limits)
        try h.send("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        XCTAssertEqual(ParsedResponse(try h.received())?.status, 200)
        h.loop.advanceTime(by: .seconds(4))
        try h.send("GET / HTTP/1.1\r\nHost: allowed.test\r\n")
        h.loop.advanceTime(by: .seconds(4))
        XCTAssertTrue(h.clientIsOpen, "a started head is timed by the header timeout")
        try h.send("\r\n")
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", on: h.dialer.last)
        XCTAssertEqual(ParsedResponse(try h.received())?.status, 200)
        XCTAssertEqual(h.dialer.targets.count, 2)
    }
}
