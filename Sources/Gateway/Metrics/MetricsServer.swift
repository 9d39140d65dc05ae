#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import GatewayCore

/// The listening socket for `gateway serve --metrics-listen`: bound with plain system calls
/// (no thread) by the main thread while it is still in the host's network namespace and
/// still privileged, before the gateway drops to its user. The sandbox's namespace has no
/// route to the host namespace, so the sandbox cannot reach it, whatever address it has.
package struct MetricsListener: Sendable {
    /// The listening descriptor, handed to `MetricsServer`.
    package let descriptor: CInt
    /// The address as given, for messages.
    package let address: String

    /// A metrics address could not be used; one line.
    package struct Failure: Error, CustomStringConvertible {
        package let description: String
    }

    /// Parses `ADDRESS:PORT` (`127.0.0.1:9464`, `[::1]:9464`).
    /// - Throws: `Failure` naming the value and the expected form.
    package static func parse(_ text: String) throws -> SocketAddress {
        let bad = Failure(description: "--metrics-listen \(text): expected ADDRESS:PORT with a numeric address, such as 127.0.0.1:9464 or [::1]:9464")
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            throw bad
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            throw bad
        }
        guard let address = try? SocketAddress(ipAddress: host, port: port) else { throw bad }
        return address
    }

    /// Binds and listens on `text` (`ADDRESS:PORT`) in the calling thread's network namespace.
    /// - Throws: `Failure` with the address and the system's reason.
    package static func bind(_ text: String) throws -> MetricsListener {
        let address = try parse(text)
        let family = address.protocol == .inet6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot listen for metrics on \(text): \(String(cString: strerror(errno)))") }
        var one: CInt = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        let bound = address.withSockAddr { pointer, size in Glibc.bind(fd, pointer, socklen_t(size)) }
        guard bound == 0, listen(fd, 64) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "cannot listen for metrics on \(text): \(reason)")
        }
        return MetricsListener(descriptor: fd, address: text)
    }
}

/// Serves `GET /metrics` (Prometheus' text format) on a `MetricsListener` until graceful
/// shutdown. One request per connection; other paths get 404, other methods 405. A client
/// that sends nothing for 10 seconds is closed, and NIO's parser bounds the request head.
package final class MetricsServer: Service {
    private let listener: MetricsListener
    private let metrics: GatewayMetrics
    private let group: any EventLoopGroup

    package init(listener: MetricsListener, metrics: GatewayMetrics, group: any EventLoopGroup) {
        self.listener = listener
        self.metrics = metrics
        self.group = group
    }

    /// Serves until graceful shutdown (or cancellation), then closes the socket.
    package func run() async throws {
        let metrics = self.metrics
        let bootstrap = ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: .seconds(10)))
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
                    try sync.addHandler(MetricsRequestHandler(metrics: metrics))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.withBoundSocket(listener.descriptor).get()
        } catch {
            close(listener.descriptor)
            throw MetricsListener.Failure(description: "cannot serve metrics on \(listener.address): \(error)")
        }
        try? await gracefulShutdown()
        try? await channel.close()
    }
}

/// Answers one request on a metrics connection, then closes it.
final class MetricsRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: GatewayMetrics
    private var head: HTTPRequestHead?

    init(metrics: GatewayMetrics) {
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            switch (head.method, path) {
            case (.GET, "/metrics"), (.HEAD, "/metrics"):
                respond(context: context, status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8",
                        body: metrics.exposition(), includeBody: head.method == .GET)
            case (_, "/metrics"):
                respond(context: context, status: .methodNotAllowed, contentType: "text/plain; charset=utf-8",
                        body: "only GET /metrics is served\n", includeBody: head.method != .HEAD)
            default:
                respond(context: context, status: .notFound, contentType: "text/plain; charset=utf-8",
                        body: "only GET /metrics is served\n", includeBody: head.method != .HEAD)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, contentType: String, body: String, includeBody: Bool) {
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(buffer.readableBytes))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if includeBody { context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }
}
