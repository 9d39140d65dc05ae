import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOSSL
import XCTest
import TestSupport
@testable import Gateway
@testable import GatewayCore

/// Kept-alive upstream connections: what is kept, for how long, for whom, and the one
/// retry of a request that met a connection the upstream had closed.
final class UpstreamPoolTests: XCTestCase {
    /// Routes every request to `git.test:443` as a kept exchange (as the git and credential
    /// routes do), recording each outcome.
    struct KeptRouter: HTTPRouter {
        let outcomes = NIOLockedValueBox<[ExchangeOutcome]>([])
        var keeps = true

        func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
            let outcomes = self.outcomes
            var upstreamHead = head
            upstreamHead.headers.replaceOrAdd(name: "Host", value: "git.test")
            upstreamHead.headers.add(name: "Authorization", value: "Basic cmVhbA==")
            var exchange = UpstreamExchange(
                target: UpstreamTarget(host: "git.test", port: 443), head: upstreamHead, gatewayHeaders: ["host", "authorization"],
                completion: { outcome in outcomes.withLockedValue { $0.append(outcome) } })
            exchange.keepsConnection = keeps
            return context.eventLoop.makeSucceededFuture(.forward(exchange))
        }
    }

    /// Sandbox connections to one forwarder configuration sharing one pool and dialer.
    final class Rig {
        let loop = EmbeddedEventLoop()
        let dialer: EmbeddedDialer
        let pool: UpstreamPool
        let router: KeptRouter
        private(set) var clients: [EmbeddedChannel] = []

        init(limits: UpstreamPool.Limits = UpstreamPool.Limits(), keeps: Bool = true) {
            dialer = EmbeddedDialer(loop: loop)
            pool = UpstreamPool(limits: limits)
            var router = KeptRouter()
            router.keeps = keeps
            self.router = router
        }

        /// A new sandbox connection.
        func connect() throws -> EmbeddedChannel {
            let client = EmbeddedChannel(loop: loop)
            var encoder = HTTPResponseEncoder.Configuration()
            encoder.automaticallySetFramingHeaders = false
            try client.pipeline.syncOperations.addHandler(HTTPResponseEncoder(configuration: encoder))
            try client.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
            try client.pipeline.syncOperations.addHandler(HTTPForwarder(
                router: router, dialer: dialer, sandbox: "sbx", via: .git, pool: pool))
            try client.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 40000)).wait()
            clients.append(client)
            return client
        }

        func send(_ text: String, on client: EmbeddedChannel) throws {
            try client.writeInbound(client.allocator.buffer(string: text))
            loop.run()
        }

        func received(_ client: EmbeddedChannel) throws -> String {
            String(decoding: try GatewayHarness.drain(client).readableBytesView, as: UTF8.self)
        }

        func sent(_ upstream: EmbeddedChannel) throws -> String {
            String(decoding: try GatewayHarness.drain(upstream).readableBytesView, as: UTF8.self)
        }

        func upstreamSends(_ text: String, on upstream: EmbeddedChannel) throws {
            try upstream.writeInbound(upstream.allocator.buffer(string: text))
            loop.run()
        }

        /// One GET answered with `response` by whichever upstream it went to; that upstream.
        @discardableResult
        func get(on client: EmbeddedChannel, answer response: String = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") throws -> EmbeddedChannel {
            try send("GET /git/o/r/info/refs HTTP/1.1\r\nHost: airlock.internal\r\n\r\n", on: client)
            let upstream = try XCTUnwrap(dialer.last)
            try upstreamSends(response, on: upstream)
            return upstream
        }

        deinit {
            for client in clients { _ = try? client.finish(acceptAlreadyClosed: true) }
            for channel in dialer.channels { _ = try? channel.finish(acceptAlreadyClosed: true) }
        }
    }

    static let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    func testASecondRequestReusesTheConnectionAfterACleanResponse() throws {
        let rig = Rig()
        let client = try rig.connect()
        let upstream = try rig.get(on: client)
        XCTAssertEqual(ParsedResponse(try rig.received(client))?.body, "ok")
        let first = try rig.sent(upstream)
        XCTAssertFalse(first.lowercased().contains("connection: close"), first)
        XCTAssertEqual(rig.pool.idleCount, 1, "parked after the clean end")

        try rig.send("GET /git/o/r/info/refs?again HTTP/1.1\r\nHost: airlock.internal\r\n\r\n", on: client)
        XCTAssertEqual(rig.dialer.targets.count, 1, "no second dial")
        let second = try rig.sent(upstream)
        XCTAssertTrue(second.hasPrefix("GET /git/o/r/info/refs?again HTTP/1.1\r\n"), second)
        XCTAssertTrue(second.contains("Authorization: Basic cmVhbA==\r\n"), "each request carries its own credential: \(second)")
        try rig.upstreamSends("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", on: upstream)
        XCTAssertEqual(ParsedResponse(try rig.received(client))?.status, 200)
        XCTAssertEqual(rig.router.outcomes.withLockedValue { $0.map(\.status) }, [200, 200])

        // Another sandbox connection on the same loop takes it too.
        let other = try rig.connect()
        try rig.send("GET /git/o/r/info/refs HTTP/1.1\r\nHost: airlock.internal\r\n\r\n", on: other)
        XCTAssertEqual(rig.dialer.targets.count, 1)
        XCTAssertTrue(try rig.sent(upstream).hasPrefix("GET /git/o/r/info/refs HTTP/1.1"))
    }

    func testNoReuseAfterConnectionCloseOrATruncatedBodyOrWithoutTheExchangeAsking() throws {
        let rig = Rig()
        let client = try rig.connect()
        let closing = try rig.get(on: client, answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        XCTAssertEqual(ParsedResponse(try rig.received(client))?.status, 200)
        XCTAssertFalse(closing.isActive, "the upstream said close")
        XCTAssertEqual(rig.pool.idleCount, 0)

        let cut = try rig.get(on: client, answer: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly")
        XCTAssertEqual(rig.dialer.targets.count, 2)
        _ = try rig.received(client)
        try client.close().wait()
        rig.loop.run()
        XCTAssertFalse(cut.isActive, "a response not read to its end leaves its connection closed")
        XCTAssertEqual(rig.pool.idleCount, 0)

        let plain = Rig(keeps: false)
        let sandbox = try plain.connect()
        let upstream = try plain.get(on: sandbox)
        XCTAssertTrue(try plain.sent(upstream).contains("Connection: close\r\n"))
        XCTAssertFalse(upstream.isActive)
        XCTAssertEqual(plain.pool.idleCount, 0, "the sandbox's own HTTP is never kept")
    }

    func testAPolicyReloadRetiresEveryKeptConnection() throws {
        let rig = Rig()
        let client = try rig.connect()
        let upstream = try rig.get(on: client)
        _ = try rig.received(client)
        XCTAssertEqual(rig.pool.idleCount, 1)
        rig.pool.policyChanged()
        rig.loop.run()
        XCTAssertFalse(upstream.isActive, "dialled under the old policy: closed")
        XCTAssertEqual(rig.pool.idleCount, 0)
        try rig.get(on: client)
        XCTAssertEqual(rig.dialer.targets.count, 2, "dialled again under the new policy")

        // A connection in use when the policy changes is closed at its end, not parked.
        try rig.send("GET /git/o/r/info/refs HTTP/1.1\r\nHost: airlock.internal\r\n\r\n", on: client)
        let inUse = try XCTUnwrap(rig.dialer.last)
        XCTAssertEqual(rig.dialer.targets.count, 2, "the second connection was kept and reused")
        rig.pool.policyChanged()
        try rig.upstreamSends(Self.ok, on: inUse)
        XCTAssertFalse(inUse.isActive)
        XCTAssertEqual(rig.pool.idleCount, 0)
    }

    func testAPolicyStoreReloadStartsANewGeneration() throws {
        let dir = try TemporaryDirectory()
        let file = dir.file("policy")
        try "allowed.test\n".write(toFile: file, atomically: true, encoding: .utf8)
        let audit = AuditLog(sink: MemoryAuditSink(), sandbox: "sbx")
        let store = PolicyStore(initial: try Policy.parse("allowed.test\n", source: file), path: file, extra: nil, audit: audit)
        let configuration = GatewayConfiguration(sandbox: "sbx", gatewayAddress: IPAddress("169.254.200.1")!, policy: store, audit: audit)
        let pipelines = GatewayPipelines(configuration: configuration, dialer: EmbeddedDialer(loop: EmbeddedEventLoop()))
        let before = pipelines.upstreamPool.generation
        try "allowed.test\nother.test\n".write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertTrue(store.reload())
        XCTAssertEqual(pipelines.upstreamPool.generation, before + 1)
    }

    func testAnIdleConnectionIsClosedAfterTheIdleTimeoutOrWhenTheUpstreamLeavesOrSpeaks() throws {
        let rig = Rig(limits: UpstreamPool.Limits(idleTimeout: .seconds(30)))
        let client = try rig.connect()
        let first = try rig.get(on: client)
        _ = try rig.received(client)
        rig.loop.advanceTime(by: .seconds(29))
        XCTAssertTrue(first.isActive)
        rig.loop.advanceTime(by: .seconds(2))
        XCTAssertFalse(first.isActive, "closed after 30 s idle")
        XCTAssertEqual(rig.pool.idleCount, 0)

        let second = try rig.get(on: client)
        XCTAssertEqual(rig.dialer.targets.count, 2)
        _ = try rig.received(client)
        second.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        rig.loop.run()
        XCTAssertFalse(second.isActive, "the upstream closed its end: closed and forgotten")
        XCTAssertEqual(rig.pool.idleCount, 0)

        let third = try rig.get(on: client)
        _ = try rig.received(client)
        try rig.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", on: third)
        XCTAssertFalse(third.isActive, "an idle upstream has nothing to say")
        XCTAssertEqual(try rig.received(client), "", "nothing of it reaches a sandbox")
        XCTAssertEqual(rig.pool.idleCount, 0)
        try rig.get(on: client)
        XCTAssertEqual(rig.dialer.targets.count, 4)
    }

    func testThePoolKeepsAtMostItsBound() throws {
        let rig = Rig(limits: UpstreamPool.Limits(perKey: 1, total: 1))
        let a = try rig.connect()
        let b = try rig.connect()
        try rig.send("GET /one HTTP/1.1\r\nHost: airlock.internal\r\n\r\n", on: a)
        try rig.send("GET /two HTTP/1.1\r\nHost: airlock.internal\r\n\r\n", on: b)
        XCTAssertEqual(rig.dialer.channels.count, 2)
        let (first, second) = (rig.dialer.channels[0], rig.dialer.channels[1])
        try rig.upstreamSends(Self.ok, on: first)
        try rig.upstreamSends(Self.ok, on: second)
        XCTAssertTrue(first.isActive)
        XCTAssertFalse(second.isActive, "over the bound: closed")
        XCTAssertEqual(rig.pool.idleCount, 1)
    }

    func testAStaleKeptConnectionIsRetriedOnAFreshOneWhenNothingOfTheBodyWasSent() throws {
        let rig = Rig()
        let client = try rig.connect()
        let stale = try rig.get(on: client)
        _ = try rig.received(client)
        _ = try rig.sent(stale)
        // The upstream closed it, unseen until the next request goes out on it.
        try rig.send("GET /git/o/r/info/refs HTTP/1.1\r\nHost: airlock.internal\r\n\r\n", on: client)
        XCTAssertEqual(rig.dialer.targets.count, 1)
        try stale.close().wait()
        rig.loop.run()
        XCTAssertEqual(rig.dialer.targets.count, 2, "once more, freshly dialled")
        let fresh = try XCTUnwrap(rig.dialer.last)
        XCTAssertTrue(try rig.sent(fresh).hasPrefix("GET /git/o/r/info/refs HTTP/1.1\r\n"))
        try rig.upstreamSends(Self.ok, on: fresh)
        XCTAssertEqual(ParsedResponse(try rig.received(client))?.body, "ok", "the sandbox never saw the stale connection")
        XCTAssertEqual(rig.router.outcomes.withLockedValue { $0.count }, 2, "reported once")

        // A push whose body has started cannot be sent again: 502 as without a pool.
        try rig.send("POST /git/o/r/git-receive-pack HTTP/1.1\r\nHost: airlock.internal\r\nContent-Length: 8\r\n\r\n0000", on: client)
        XCTAssertEqual(rig.dialer.targets.count, 2, "on the kept connection")
        try fresh.close().wait()
        rig.loop.run()
        XCTAssertEqual(rig.dialer.targets.count, 2, "no retry")
        let answer = try XCTUnwrap(ParsedResponse(try rig.received(client)))
        XCTAssertEqual(answer.status, 502)
        XCTAssertEqual(answer.body, "airlock: upstream git.test closed the connection before answering\n")
    }

    func testKeysSeparateTargetsTLSContextsAndGenerationsAndNameNoCredential() throws {
        let pool = UpstreamPool()
        let loop = EmbeddedEventLoop()
        let context = try UpstreamTLS(caFile: nil)
        let other = try UpstreamTLS(caFile: nil)
        let key = pool.key(for: UpstreamTarget(host: "git.test", port: 443, tls: context), on: loop)
        XCTAssertEqual(key, pool.key(for: UpstreamTarget(host: "git.test", port: 443, tls: context), on: loop))
        XCTAssertNotEqual(key, pool.key(for: UpstreamTarget(host: "git.test", port: 443, tls: other), on: loop), "another TLS context")
        XCTAssertNotEqual(key, pool.key(for: UpstreamTarget(host: "git.test", port: 8443, tls: context), on: loop))
        XCTAssertNotEqual(key, pool.key(for: UpstreamTarget(host: "git.test", port: 443), on: loop), "plain TCP")
        XCTAssertNotEqual(key, pool.key(for: UpstreamTarget(host: "git.test", port: 443, tls: context), on: EmbeddedEventLoop()), "another loop")
        XCTAssertEqual(key.serverName, "git.test")
        XCTAssertNil(pool.key(for: UpstreamTarget(host: "127.0.0.1", port: 443, tls: context), on: loop).serverName)
        XCTAssertEqual(key.description, "https://git.test:443 (policy generation 0)")

        let channel = EmbeddedChannel(loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        XCTAssertTrue(pool.park(channel, as: key))
        pool.policyChanged()
        XCTAssertFalse(channel.isActive)
        XCTAssertNil(pool.take(key))
        XCTAssertNotEqual(pool.key(for: UpstreamTarget(host: "git.test", port: 443, tls: context), on: loop), key, "a new generation")
        let late = EmbeddedChannel(loop: loop)
        try late.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        XCTAssertFalse(pool.park(late, as: key), "dialled under the old policy: never kept")
        _ = try? late.finish(acceptAlreadyClosed: true)
    }
}
