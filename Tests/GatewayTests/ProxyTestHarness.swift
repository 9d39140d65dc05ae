import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import Gateway
@testable import GatewayCore

/// A dialer for handler tests: hands back connected `EmbeddedChannel`s on the test's
/// loop, or fails with a chosen error, and records every target it was asked for.
final class EmbeddedDialer: UpstreamDialer, @unchecked Sendable {
    // @unchecked: used only on the EmbeddedEventLoop's (the test's) thread.
    let loop: EmbeddedEventLoop
    var failure: DialError?
    private(set) var targets: [UpstreamTarget] = []
    private(set) var channels: [EmbeddedChannel] = []
    /// When true, the dial stays pending until `completePending()`.
    var holdDials = false
    private var pending: [(EventLoopPromise<any Channel>, UpstreamTarget)] = []

    init(loop: EmbeddedEventLoop) {
        self.loop = loop
    }

    func dial(_ target: UpstreamTarget, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        targets.append(target)
        let promise = eventLoop.makePromise(of: (any Channel).self)
        if holdDials {
            pending.append((promise, target))
        } else {
            complete(promise)
        }
        return promise.futureResult
    }

    func completePending() {
        let waiting = pending
        pending = []
        for (promise, _) in waiting { complete(promise) }
    }

    private func complete(_ promise: EventLoopPromise<any Channel>) {
        if let failure {
            promise.fail(failure)
            return
        }
        let channel = EmbeddedChannel(loop: loop)
        _ = try? channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
        channels.append(channel)
        promise.succeed(channel)
    }

    /// The most recent upstream channel.
    var last: EmbeddedChannel? { channels.last }
}

/// The tunnel sink of handler tests: records what the gateway would hand to the socket
/// loop (the target, the client's first bytes, the replayed bytes) and closes the client
/// channel as the hand-off does. Dials succeed, fail with a chosen error, or wait.
final class RecordingTunnelSink: TunnelSink, @unchecked Sendable {
    // @unchecked: used only on the EmbeddedEventLoop's (the test's) thread.
    var failure: DialError?
    /// When true, a dial stays pending until `completePending()`.
    var holdDials = false
    private(set) var targets: [UpstreamTarget] = []
    private(set) var tunnels: [RecordedTunnel] = []
    private var pending: [(EventLoopPromise<any TunnelUpstream>, RecordedTunnel)] = []

    func connect(to target: UpstreamTarget, on eventLoop: any EventLoop) -> EventLoopFuture<any TunnelUpstream> {
        targets.append(target)
        let promise = eventLoop.makePromise(of: (any TunnelUpstream).self)
        let tunnel = RecordedTunnel(target: target)
        if holdDials {
            pending.append((promise, tunnel))
        } else {
            complete(promise, tunnel)
        }
        return promise.futureResult
    }

    func completePending() {
        let waiting = pending
        pending = []
        for (promise, tunnel) in waiting { complete(promise, tunnel) }
    }

    private func complete(_ promise: EventLoopPromise<any TunnelUpstream>, _ tunnel: RecordedTunnel) {
        if let failure {
            promise.fail(failure)
            return
        }
        tunnels.append(tunnel)
        promise.succeed(tunnel)
    }

    /// The most recent connected upstream.
    var last: RecordedTunnel? { tunnels.last }
}

/// One upstream the recording sink connected, and what was handed over with it.
final class RecordedTunnel: TunnelUpstream, @unchecked Sendable {
    let target: UpstreamTarget
    /// What the client gets first (`CONNECT`'s answer), once handed off.
    private(set) var toClient: String?
    /// What the upstream gets first (early bytes, the replayed ClientHello).
    private(set) var toUpstream: [UInt8]?
    private(set) var closedUnused = false
    private var completion: (@Sendable (SocketLoop.Totals) -> Void)?

    init(target: UpstreamTarget) {
        self.target = target
    }

    var handedOff: Bool { toClient != nil }

    func splice(_ channel: any Channel, toClient: [UInt8], toUpstream: [UInt8],
                completion: @escaping @Sendable (SocketLoop.Totals) -> Void) {
        self.toClient = String(decoding: toClient, as: UTF8.self)
        self.toUpstream = toUpstream
        self.completion = completion
        // As the socket loop's hand-off does: the connection leaves NIO.
        channel.close(promise: nil)
    }

    func close() {
        closedUnused = true
    }

    /// Ends the spliced tunnel as the socket loop reports it.
    func end(up: UInt64, down: UInt64, ending: String? = nil) {
        completion?(SocketLoop.Totals(up: up, down: down, ending: ending))
        completion = nil
    }
}

/// A router that answers `/git/…` for tests of the internal-router hook.
struct RecordingRouter: HTTPRouter {
    let seen = NIOLockedValueBox<[String]>([])

    func route(_ head: HTTPRequestHead, context: RequestContext) -> EventLoopFuture<HTTPRoute> {
        seen.withLockedValue { $0.append("\(context.via.rawValue) \(context.sandbox) \(head.uri)") }
        return context.eventLoop.makeSucceededFuture(.respond(.text(.ok, "git here\n")))
    }
}

/// One sandbox connection through the gateway's real pipelines, with an embedded dialer.
final class GatewayHarness {
    let loop = EmbeddedEventLoop()
    let client: EmbeddedChannel
    let dialer: EmbeddedDialer
    let tunnels = RecordingTunnelSink()
    let sink = MemoryAuditSink()
    let audit: AuditLog
    let policy: PolicyStore

    enum Listener { case http, proxy, tls }

    init(
        listener: Listener, policy text: String = "allowed.test\nexample.com\n",
        limits: GatewayLimits = GatewayLimits(), internalRouter: (any HTTPRouter)? = nil
    ) throws {
        audit = AuditLog(sink: sink, sandbox: "sbx")
        policy = PolicyStore(initial: try Policy.parse(text, source: "/etc/airlock/policy"), path: nil, extra: nil, audit: audit)
        dialer = EmbeddedDialer(loop: loop)
        client = EmbeddedChannel(loop: loop)
        let configuration = GatewayConfiguration(
            sandbox: "sbx", gatewayAddress: IPAddress("169.254.200.1")!, policy: policy, audit: audit,
            limits: limits, internalRouter: internalRouter, dialer: dialer)
        let pipelines = GatewayPipelines(configuration: configuration, dialer: dialer)
        switch listener {
        case .http: try pipelines.configureHTTP(client)
        case .proxy: try pipelines.configureProxy(client, tunnels: tunnels)
        case .tls: try pipelines.configureTLS(client, tunnels: tunnels)
        }
        try client.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 40000)).wait()
    }

    /// Sends raw bytes from the sandbox.
    func send(_ text: String) throws {
        try client.writeInbound(client.allocator.buffer(string: text))
        loop.run()
    }

    func send(_ bytes: ByteBuffer) throws {
        try client.writeInbound(bytes)
        loop.run()
    }

    /// Everything the gateway wrote to the sandbox since the last call.
    func received() throws -> String {
        String(decoding: try Self.drain(client).readableBytesView, as: UTF8.self)
    }

    /// Everything the gateway wrote to `upstream` since the last call.
    func sentUpstream(_ upstream: EmbeddedChannel? = nil) throws -> String {
        guard let channel = upstream ?? dialer.last else { return "" }
        return String(decoding: try Self.drain(channel).readableBytesView, as: UTF8.self)
    }

    /// Bytes from the upstream to the gateway.
    func upstreamSends(_ text: String, on upstream: EmbeddedChannel? = nil) throws {
        let channel = try XCTUnwrap(upstream ?? dialer.last, "no upstream was dialled")
        try channel.writeInbound(channel.allocator.buffer(string: text))
        loop.run()
    }

    static func drain(_ channel: EmbeddedChannel) throws -> ByteBuffer {
        var all = channel.allocator.buffer(capacity: 0)
        while let part = try channel.readOutbound(as: IOData.self) {
            switch part {
            case .byteBuffer(var buffer): all.writeBuffer(&buffer)
            case .fileRegion: XCTFail("unexpected file region")
            }
        }
        return all
    }

    /// The audit lines written so far.
    var auditLines: [String] { sink.lines }

    /// Whether the sandbox connection is still open.
    var clientIsOpen: Bool { client.isActive }

    deinit {
        _ = try? client.finish(acceptAlreadyClosed: true)
        for channel in dialer.channels { _ = try? channel.finish(acceptAlreadyClosed: true) }
    }
}

/// The status line, headers and body of one HTTP/1.1 response text.
struct ParsedResponse {
    var statusLine: String
    var headers: [(String, String)]
    var body: String

    init?(_ text: String) {
        guard let split = text.range(of: "\r\n\r\n") else { return nil }
        let headLines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        statusLine = headLines[0]
        headers = headLines.dropFirst().compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]).lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        body = String(text[split.upperBound...])
    }

    func header(_ name: String) -> String? {
        headers.first { $0.0 == name.lowercased() }?.1
    }

    var status: Int? { Int(statusLine.split(separator: " ").dropFirst().first ?? "") }
}
