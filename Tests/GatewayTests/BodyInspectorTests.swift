import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import Gateway

/// `UpstreamExchange.bodyInspector` in the forwarder: the body streams upstream as it
/// arrives except its last 64 bytes, which wait for the inspector's decision at the
/// body's end; a refusal closes the upstream (which never got the whole body) and is the
/// answer.
final class BodyInspectorTests: XCTestCase {
    /// Records what it sees; refuses at the end when told to, or at once on a chunk
    /// holding `BAD`.
    final class TestInspector: RequestBodyInspector, @unchecked Sendable {
        var seen: [UInt8] = []
        var finished = false
        let refuseAtEnd: Bool

        init(refuseAtEnd: Bool) { self.refuseAtEnd = refuseAtEnd }

        func inspect(_ chunk: ByteBuffer) -> LocalResponse? {
            seen += chunk.readableBytesView
            return String(decoding: chunk.readableBytesView, as: UTF8.self).contains("BAD") ? Self.refusal : nil
        }

        func finish() -> InspectorDecision {
            finished = true
            return refuseAtEnd ? .refuse(Self.refusal) : .pass
        }

        static let refusal = Refusal(.forbidden, reason: "inspected and refused").response
    }

    struct InspectingRouter: HTTPRouter {
        let inspectors = NIOLockedValueBox<[TestInspector]>([])
        let completions = NIOLockedValueBox<Int>(0)
        let refuseAtEnd: Bool

        func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
            var exchange = UpstreamExchange(
                target: UpstreamTarget(host: "upstream.test", port: 443), head: head,
                completion: { [completions] _ in completions.withLockedValue { $0 += 1 } })
            let inspectors = self.inspectors
            let refuseAtEnd = self.refuseAtEnd
            exchange.bodyInspector = {
                let inspector = TestInspector(refuseAtEnd: refuseAtEnd)
                inspectors.withLockedValue { $0.append(inspector) }
                return inspector
            }
            return context.eventLoop.makeSucceededFuture(.forward(exchange))
        }
    }

    final class Rig {
        let loop = EmbeddedEventLoop()
        let dialer: EmbeddedDialer
        let router: InspectingRouter
        let client: EmbeddedChannel

        init(refuseAtEnd: Bool) throws {
            dialer = EmbeddedDialer(loop: loop)
            router = InspectingRouter(refuseAtEnd: refuseAtEnd)
            client = EmbeddedChannel(loop: loop)
            let forwarder = HTTPForwarder(router: router, dialer: dialer, sandbox: "sbx", via: .http)
            var encoderConfiguration = HTTPResponseEncoder.Configuration()
            encoderConfiguration.automaticallySetFramingHeaders = false
            try client.pipeline.syncOperations.addHandler(HTTPResponseEncoder(configuration: encoderConfiguration))
            try client.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
            try client.pipeline.syncOperations.addHandler(forwarder)
            try client.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 1)).wait()
        }

        func send(_ text: String) throws {
            try client.writeInbound(ByteBuffer(string: text))
            loop.run()
        }

        func upstreamBody() throws -> String {
            guard let upstream = dialer.last else { return "" }
            return String(decoding: try GatewayHarness.drain(upstream).readableBytesView, as: UTF8.self)
        }

        func received() throws -> String {
            String(decoding: try GatewayHarness.drain(client).readableBytesView, as: UTF8.self)
        }

        deinit {
            _ = try? client.finish(acceptAlreadyClosed: true)
            for channel in dialer.channels { _ = try? channel.finish(acceptAlreadyClosed: true) }
        }
    }

    func testBodyStreamsExceptItsTailUntilTheInspectorPasses() throws {
        let rig = try Rig(refuseAtEnd: false)
        let first = String(repeating: "a", count: 150), second = String(repeating: "b", count: 50)
        try rig.send("POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n" + first)
        let head = try rig.upstreamBody()
        XCTAssertTrue(head.hasPrefix("POST /push HTTP/1.1\r\n"), head)
        XCTAssertTrue(head.hasSuffix("\r\n\r\n" + String(repeating: "a", count: 86)), "all but the last 64 bytes go on: \(head)")
        try rig.send(second)
        XCTAssertEqual(try rig.upstreamBody(), String(repeating: "a", count: 64) + second, "the held tail goes once the inspector passes")
        let inspector = try XCTUnwrap(rig.router.inspectors.withLockedValue { $0.first })
        XCTAssertEqual(String(decoding: inspector.seen, as: UTF8.self), first + second)
        XCTAssertTrue(inspector.finished)
        try rig.dialer.last!.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        rig.loop.run()
        XCTAssertEqual(ParsedResponse(try rig.received())?.body, "ok")
        XCTAssertEqual(rig.router.completions.withLockedValue { $0 }, 1)
    }

    func testRefusalAtTheEndClosesTheUpstreamWithoutTheTail() throws {
        let rig = try Rig(refuseAtEnd: true)
        try rig.send("POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + String(repeating: "p", count: 100) + "\r\n")
        XCTAssertTrue(try rig.upstreamBody().hasSuffix("24\r\n" + String(repeating: "p", count: 36) + "\r\n"))
        try rig.send("5\r\ntrail\r\n0\r\n\r\n")
        XCTAssertEqual(try rig.upstreamBody(), "", "neither the tail nor the end reaches the upstream")
        XCTAssertFalse(rig.dialer.last!.isActive, "the upstream connection is closed")
        let response = try XCTUnwrap(ParsedResponse(try rig.received()))
        XCTAssertEqual(response.status, 403)
        XCTAssertEqual(response.body, "airlock: inspected and refused\n")
        XCTAssertTrue(rig.client.isActive, "the body was read to its end: the connection stays usable")
        XCTAssertEqual(rig.router.completions.withLockedValue { $0 }, 0, "the refusal is the inspector's to audit")
    }

    func testRefusalMidBodyDropsTheRestAndAnswersAtTheEnd() throws {
        let rig = try Rig(refuseAtEnd: false)
        try rig.send("POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n" + String(repeating: "g", count: 80) + "\r\n")
        _ = try rig.upstreamBody()
        try rig.send("3\r\nBAD\r\n")
        XCTAssertFalse(rig.dialer.last!.isActive)
        XCTAssertEqual(try rig.received(), "", "the answer waits for the body's end")
        try rig.send("4\r\nmore\r\n0\r\n\r\n")
        XCTAssertEqual(ParsedResponse(try rig.received())?.status, 403)
        let inspector = try XCTUnwrap(rig.router.inspectors.withLockedValue { $0.first })
        XCTAssertFalse(inspector.finished, "a refused body is not inspected further")
        XCTAssertEqual(String(decoding: inspector.seen, as: UTF8.self), String(repeating: "g", count: 80) + "BAD")
    }

    func testShortBodiesAreHeldWhole() throws {
        let rig = try Rig(refuseAtEnd: true)
        try rig.send("POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n")
        XCTAssertFalse(try rig.upstreamBody().contains("0123456789"), "a body shorter than the tail is held whole")
        try rig.send("0\r\n\r\n")
        XCTAssertEqual(ParsedResponse(try rig.received())?.status, 403)
    }
}
