import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import Gateway

/// The forwarder's streaming contract: 100-continue, chunked bodies, truncation,
/// backpressure, keep-alive.
final class ForwardTests: XCTestCase {
    func testExpectContinueIsAnsweredAfterTheRouteThenTheBodyStreams() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("POST /upload HTTP/1.1\r\nHost: allowed.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        XCTAssertEqual(try h.received(), "HTTP/1.1 100 Continue\r\n\r\n")
        let head = try h.sentUpstream()
        XCTAssertTrue(head.hasPrefix("POST /upload HTTP/1.1\r\n"), head)
        XCTAssertTrue(head.contains("Content-Length: 5\r\n"), head)
        XCTAssertFalse(head.lowercased().contains("expect"), "the gateway answered Expect itself: \(head)")
        try h.send("hello")
        XCTAssertEqual(try h.sentUpstream(), "hello")
        try h.upstreamSends("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 201)
        XCTAssertEqual(response.body, "ok")
        XCTAssertTrue(h.clientIsOpen)
    }

    func testExpectContinueRefusedGetsNo100AndTheConnectionCloses() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("POST /upload HTTP/1.1\r\nHost: denied.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        let text = try h.received()
        XCTAssertFalse(text.contains("100 Continue"), text)
        let response = try XCTUnwrap(ParsedResponse(text))
        XCTAssertEqual(response.status, 403)
        XCTAssertEqual(response.header("connection"), "close")
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertTrue(h.dialer.targets.isEmpty)
    }

    func testChunkedRequestBodyIsStreamedChunked() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("POST /git-receive-pack HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0000\r\n")
        let head = try h.sentUpstream()
        XCTAssertTrue(head.lowercased().contains("transfer-encoding: chunked\r\n"), head)
        XCTAssertTrue(head.hasSuffix("4\r\n0000\r\n"), "the first chunk goes on before the body ends: \(head)")
        try h.send("6\r\nabcdef\r\n0\r\n\r\n")
        XCTAssertEqual(try h.sentUpstream(), "6\r\nabcdef\r\n0\r\n\r\n")
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        XCTAssertEqual(ParsedResponse(try h.received())?.status, 200)
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"bytes_up\":10"), line)
    }

    func testUpstreamFailureMidStreamClosesClientWithoutFinalChunk() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("GET /pack HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        try h.upstreamSends("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        let first = try h.received()
        XCTAssertTrue(first.contains("Transfer-Encoding: chunked"), first)
        XCTAssertTrue(first.hasSuffix("5\r\nhello\r\n"), first)
        try h.dialer.last!.close().wait()
        h.loop.run()
        let rest = try h.received()
        XCTAssertFalse(rest.contains("0\r\n\r\n"), "no clean end after a truncated upstream: \(rest)")
        XCTAssertFalse(h.clientIsOpen, "the sandbox sees the connection drop")
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("mid-response"), line)
    }

    func testContentLengthResponseCutShortAlsoAborts() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("GET /file HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-some")
        XCTAssertTrue(try h.received().hasSuffix("only-some"))
        try h.dialer.last!.close().wait()
        h.loop.run()
        XCTAssertFalse(h.clientIsOpen)
    }

    func testErrorsFromUpstreamPassThroughAndAreNeverTurnedInto200() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("GET /missing HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        try h.upstreamSends("HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
        let response = try XCTUnwrap(ParsedResponse(try h.received()))
        XCTAssertEqual(response.status, 404)
        XCTAssertEqual(response.body, "nope")
    }

    func testKeepAliveServesASecondRequestWithAFreshDial() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("GET /one HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        XCTAssertEqual(ParsedResponse(try h.received())?.body, "one")
        try h.send("GET /two HTTP/1.1\r\nHost: example.com\r\n\r\n")
        XCTAssertEqual(h.dialer.targets.map(\.host), ["allowed.test", "example.com"])
        XCTAssertTrue(try h.sentUpstream().hasPrefix("GET /two HTTP/1.1\r\n"))
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        XCTAssertEqual(ParsedResponse(try h.received())?.body, "two")
    }

    func testPipelinedRequestsAreAnsweredInOrder() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("GET /one HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET /two HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        XCTAssertEqual(h.dialer.targets.count, 1, "the second request waits for the first response")
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        XCTAssertEqual(h.dialer.targets.count, 2)
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        let text = try h.received()
        let one = try XCTUnwrap(text.range(of: "one"))
        let two = try XCTUnwrap(text.range(of: "two"))
        XCTAssertLessThan(one.lowerBound, two.lowerBound)
    }

    func testUpstreamIsNotReadWhileTheClientCannotTakeMore() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("GET /big HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        let upstream = try XCTUnwrap(h.dialer.last)
        try h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        h.client.isWritable = false
        h.client.pipeline.fireChannelWritabilityChanged()
        let reads = ReadCounter()
        try upstream.pipeline.syncOperations.addHandler(reads, position: .first)
        upstream.read()
        XCTAssertEqual(reads.count, 0, "no read from the upstream while the sandbox side is full")
        h.client.isWritable = true
        h.client.pipeline.fireChannelWritabilityChanged()
        XCTAssertEqual(reads.count, 1, "the held read is issued once the sandbox side drains")
    }

    func testClientBodyIsNotReadWhileTheUpstreamCannotTakeMore() throws {
        let h = try GatewayHarness(listener: .http)
        try h.send("POST /up HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 10\r\n\r\nabc")
        let upstream = try XCTUnwrap(h.dialer.last)
        upstream.isWritable = false
        upstream.pipeline.fireChannelWritabilityChanged()
        let reads = ReadCounter()
        try h.client.pipeline.syncOperations.addHandler(reads, position: .first)
        h.client.read()
        XCTAssertEqual(reads.count, 0, "no read from the sandbox while the upstream is full")
        upstream.isWritable = true
        upstream.pipeline.fireChannelWritabilityChanged()
        XCTAssertEqual(reads.count, 1)
    }

    func testInterceptedResponseIsReplacedByTheLocalAnswer() throws {
        let loop = EmbeddedEventLoop()
        let dialer = EmbeddedDialer(loop: loop)
        let router = InterceptingRouter()
        let client = EmbeddedChannel(loop: loop)
        let forwarder = HTTPForwarder(router: router, dialer: dialer, sandbox: "sbx", via: .http)
        var encoderConfiguration = HTTPResponseEncoder.Configuration()
        encoderConfiguration.automaticallySetFramingHeaders = false
        try client.pipeline.syncOperations.addHandler(HTTPResponseEncoder(configuration: encoderConfiguration))
        try client.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        try client.pipeline.syncOperations.addHandler(forwarder)
        try client.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 1)).wait()
        try client.writeInbound(ByteBuffer(string: "GET /git/x/info/refs HTTP/1.1\r\nHost: airlock.internal\r\n\r\n"))
        let upstream = try XCTUnwrap(dialer.last)
        XCTAssertEqual(dialer.targets.first?.host, "upstream.test")
        try upstream.writeInbound(ByteBuffer(string: "HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\nsecret"))
        let text = String(decoding: try GatewayHarness.drain(client).readableBytesView, as: UTF8.self)
        let response = try XCTUnwrap(ParsedResponse(text))
        XCTAssertEqual(response.status, 403)
        XCTAssertEqual(response.body, "airlock: upstream credential refused\n")
        XCTAssertFalse(text.contains("secret"))
        XCTAssertFalse(upstream.isActive)
        XCTAssertEqual(router.outcomes.withLockedValue { $0.map(\.status) }, [403])
        _ = try? client.finish(acceptAlreadyClosed: true)
    }
}

/// Counts `read` calls reaching the head of a pipeline.
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny
    private(set) var count = 0

    func read(context: ChannelHandlerContext) {
        count += 1
        context.read()
    }
}

import NIOConcurrencyHelpers

/// Forwards everything to `upstream.test` and maps an upstream 401 to a local 403.
struct InterceptingRouter: HTTPRouter {
    let outcomes = NIOLockedValueBox<[ExchangeOutcome]>([])

    func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
        let outcomes = self.outcomes
        let exchange = UpstreamExchange(
            target: UpstreamTarget(host: "upstream.test", port: 443),
            head: head,
            interceptResponse: { response in
                response.status == .unauthorized ? Refusal(.forbidden, reason: "upstream credential refused").response : nil
            },
            completion: { outcome in outcomes.withLockedValue { $0.append(outcome) } })
        return context.eventLoop.makeSucceededFuture(.forward(exchange))
    }
}
