#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The gateway's control socket: a Unix socket, mode 0600, speaking `ControlRequest` /
/// `ControlResponse` lines, for `airlock session create|list|revoke`.
///
/// Only peers whose uid (from `SO_PEERCRED`) is 0 or the uid that started the gateway are
/// served; any other peer gets one refusal line, an audit line, and the connection closes.
/// The socket lives in `/run/airlock/NAME/`, which is not mounted in the sandbox, and the
/// sandbox cannot route to the host namespace, so it never sees the socket.
///
/// Binding happens in `bind` (while the gateway still has its privileges); `run` serves
/// until graceful shutdown, expiring idle sessions every 30 seconds, then closes the socket.
package final class ControlServer: Service {
    /// The control socket of sandbox `name` under `runDirectory`.
    package static func socketPath(sandbox name: String, runDirectory: String = "/run/airlock") -> String {
        "\(runDirectory)/\(name)/control.sock"
    }

    /// Longest request line accepted.
    package static let maxLineBytes = 64 * 1024

    package let path: String
    private let channel: any Channel
    private let sessions: SessionStore

    private init(path: String, channel: any Channel, sessions: SessionStore) {
        self.path = path
        self.channel = channel
        self.sessions = sessions
    }

    /// Binds the control socket at `path` (replacing a stale socket file), mode 0600.
    /// - Parameters:
    ///   - allowedUIDs: peers served besides uid 0 (normally the uid that started the gateway).
    /// - Throws: `ControlServerError` naming the path and the system's reason.
    /// - Requires: write access to the socket's directory (root for `/run/airlock/NAME`).
    package static func bind(
        path: String, responder: ControlResponder, allowedUIDs: Set<UInt32>, audit: AuditLog, group: any EventLoopGroup
    ) async throws -> ControlServer {
        var dirInfo = stat()
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        guard !directory.isEmpty, stat(directory, &dirInfo) == 0 else {
            throw ControlServerError(description: "cannot open control socket \(path): \(directory.isEmpty ? "no directory" : String(cString: strerror(errno)))")
        }
        var existing = stat()
        if lstat(path, &existing) == 0, (existing.st_mode & S_IFMT) != S_IFSOCK {
            throw ControlServerError(description: "cannot open control socket \(path): a file that is not a socket is in the way")
        }
        let allowed = allowedUIDs.union([0])
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ControlConnectionHandler(responder: responder, allowedUIDs: allowed, audit: audit))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        } catch {
            throw ControlServerError(description: "cannot open control socket \(path): \(error)")
        }
        guard chmod(path, 0o600) == 0 else {
            let reason = String(cString: strerror(errno))
            try? await channel.close()
            throw ControlServerError(description: "cannot set mode 0600 on control socket \(path): \(reason)")
        }
        return ControlServer(path: path, channel: channel, sessions: responder.sessions)
    }

    /// Serves until graceful shutdown (or cancellation), then closes the socket.
    package func run() async throws {
        let sessions = self.sessions
        let sweep = channel.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(30), delay: .seconds(30)) { _ in
            sessions.sweep()
        }
        try? await gracefulShutdown()
        sweep.cancel()
        try? await channel.close()
        unlink(path)
    }
}

/// The control socket could not be opened; one line naming the path.
package struct ControlServerError: Error, CustomStringConvertible {
    package let description: String
}

/// One control connection: checks the peer, then answers request lines one by one.
final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let responder: ControlResponder
    private let allowedUIDs: Set<UInt32>
    private let audit: AuditLog
    private var buffer: ByteBuffer?
    private var peerChecked = false
    private var pending: [ByteBuffer] = []

    init(responder: ControlResponder, allowedUIDs: Set<UInt32>, audit: AuditLog) {
        self.responder = responder
        self.allowedUIDs = allowedUIDs
        self.audit = audit
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        guard let provider = channel as? any SocketOptionProvider else {
            refuse(context: context, reason: "control socket: cannot read peer credentials")
            return
        }
        Self.peerUID(provider).whenComplete { result in
            let (handler, context) = loopBound.value
            switch result {
            case let .success(uid):
                guard handler.allowedUIDs.contains(uid) else {
                    handler.refuse(context: context, reason: "control socket: peer uid \(uid) refused (only uid \(handler.allowedUIDs.sorted().map(String.init).joined(separator: ", ")) may use it)")
                    return
                }
                handler.peerChecked = true
                for chunk in handler.pending { handler.consume(context: context, chunk) }
                handler.pending = []
            case .failure:
                handler.refuse(context: context, reason: "control socket: cannot read peer credentials")
            }
        }
        context.fireChannelActive()
    }

    private static func peerUID(_ provider: any SocketOptionProvider) -> EventLoopFuture<UInt32> {
        let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return future.map { $0.uid }
    }

    /// `struct ucred` from `<sys/socket.h>` (hidden behind `_GNU_SOURCE`, so spelled out here):
    /// three 32-bit fields, pid, uid, gid.
    struct PeerCredentials: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    private func refuse(context: ChannelHandlerContext, reason: String) {
        audit.record(AuditEvent(.gitDeny, via: .control, reason: reason))
        let line = (try? ControlResponse.failure("permission denied: \(reason)").jsonLine()) ?? "{\"ok\":false}"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: line + "\n"))).whenComplete { _ in context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let chunk = unwrapInboundIn(data)
        guard peerChecked else {
            if pending.reduce(0, { $0 + $1.readableBytes }) + chunk.readableBytes > ControlServer.maxLineBytes {
                context.close(promise: nil)
                return
            }
            pending.append(chunk)
            return
        }
        consume(context: context, chunk)
    }

    private func consume(context: ChannelHandlerContext, _ chunk: ByteBuffer) {
        var chunk = chunk
        if buffer == nil { buffer = chunk } else { buffer!.writeBuffer(&chunk) }
        while let newline = buffer!.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - buffer!.readerIndex
            let line = buffer!.readBytes(length: length)!
            buffer!.moveReaderIndex(forwardBy: 1)
            answer(context: context, line)
        }
        if buffer!.readableBytes > ControlServer.maxLineBytes {
            let line = (try? ControlResponse.failure("control request longer than \(ControlServer.maxLineBytes) bytes").jsonLine()) ?? "{\"ok\":false}"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: line + "\n"))).whenComplete { _ in context.close(promise: nil) }
            buffer = nil
            return
        }
        buffer!.discardReadBytes()
    }

    private func answer(context: ChannelHandlerContext, _ line: [UInt8]) {
        let response: ControlResponse
        do {
            response = responder.respond(to: try ControlRequest(jsonLine: line))
        } catch {
            response = .failure(String(describing: error))
        }
        let text = (try? response.jsonLine()) ?? "{\"ok\":false,\"error\":\"cannot encode the answer\"}"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text + "\n")), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
