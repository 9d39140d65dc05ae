#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import ServiceLifecycle
import GatewayCore

/// The gateway's control socket: a Unix socket, mode 0600, speaking `ControlRequest` /
/// `ControlResponse` lines, for `airlock session create|list|revoke`.
///
/// Only peers whose uid (from `SO_PEERCRED`) is 0 or the uid that started the gateway are
/// served; any other peer gets one refusal line, an audit line, and the connection closes.
/// The socket lives in `/run/airlock/NAME/`, which is not mounted in the sandbox, and the
/// sandbox cannot route to the host namespace, so it never sees the socket.
///
/// The socket is bound beforehand by `ControlSocket` (plain syscalls, no thread), while the
/// gateway still has its privileges; `run` hands it to NIO and serves until graceful
/// shutdown, expiring sessions every 30 seconds, then closes it. A socket file left behind (the gateway cannot unlink it after dropping privileges)
/// is replaced by the next gateway.
package final class ControlServer: Service {
    /// The control socket of sandbox `name` under `runDirectory`.
    package static func socketPath(sandbox name: String, runDirectory: String = "/run/airlock") -> String {
        ControlSocket.path(sandbox: name, runDirectory: runDirectory)
    }

    /// Longest request line accepted.
    package static let maxLineBytes = 64 * 1024

    package let path: String
    private let descriptor: CInt
    private let responder: ControlResponder
    private let allowedUIDs: Set<UInt32>
    private let audit: AuditLog
    private let group: any EventLoopGroup

    /// Serves `socket` on `group`.
    /// - Parameters:
    ///   - allowedUIDs: peers served besides uid 0 (normally the uid that started the gateway).
    package init(socket: ControlSocket, responder: ControlResponder, allowedUIDs: Set<UInt32>, audit: AuditLog, group: any EventLoopGroup) {
        self.path = socket.path
        self.descriptor = socket.descriptor
        self.responder = responder
        self.allowedUIDs = allowedUIDs.union([0])
        self.audit = audit
        self.group = group
    }

    /// Serves until graceful shutdown (or cancellation), then closes the socket.
    /// - Throws: `ControlServerError` when NIO cannot adopt the socket.
    package func run() async throws {
        let responder = self.responder, allowed = allowedUIDs, audit = self.audit
        let bootstrap = ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ControlConnectionHandler(responder: responder, allowedUIDs: allowed, audit: audit))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.withBoundSocket(descriptor).get()
        } catch {
            close(descriptor)
            throw ControlServerError(description: "cannot serve control socket \(path): \(error)")
        }
        let sessions = responder.sessions
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

/// `struct ucred` from `<sys/socket.h>` (hidden behind `_GNU_SOURCE`, so spelled out here):
/// three 32-bit fields, pid, uid, gid; what `SO_PEERCRED` gives for a Unix socket's peer.
/// The control sockets, the daemon's socket and the user socket read it.
package struct PeerCredentials: Sendable {
    package var pid: Int32 = 0
    package var uid: UInt32 = 0
    package var gid: UInt32 = 0

    package init() {}
}
