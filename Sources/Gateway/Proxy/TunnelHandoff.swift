#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// The first handler of every connection the gateway accepts. It knows the connection's
/// descriptor, so that once a tunnel is established (a `CONNECT` answered, a ClientHello
/// routed) the connection can leave NIO and be spliced by the socket loop: the bytes of an
/// established tunnel then never pass through user space.
///
/// The handler itself passes everything on; `handOff` is what the proxies call.
package final class TunnelHandoff: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = NIOAny

    /// The socket loop that splices handed-off tunnels and dials their upstreams.
    package let loop: SocketLoop
    private let descriptor: CInt
    private let tracker: ConnectionTracker?
    private let idleTimeout: TimeAmount
    private var handedOff = false

    /// - Parameters:
    ///   - descriptor: the connection's socket, as accepted (NIO's channel owns it).
    ///   - loop: the loop that will splice the tunnel.
    ///   - tracker: counts the tunnel in place of the channel, so limits and draining see it.
    ///   - idleTimeout: how long a spliced tunnel may move no byte at all.
    package init(descriptor: CInt, loop: SocketLoop, tracker: ConnectionTracker?, idleTimeout: TimeAmount) {
        self.descriptor = descriptor
        self.loop = loop
        self.tracker = tracker
        self.idleTimeout = idleTimeout
    }

    /// Takes the connection out of NIO and has the socket loop splice it with `upstream`.
    ///
    /// Call on the channel's event loop once nothing more will be read through the
    /// pipeline (reads parked, any buffered bytes collected into `toUpstream`). The channel
    /// is closed here; the socket lives on in the loop, which owns `upstream` from now on.
    ///
    /// - Parameters:
    ///   - toClient: the gateway's own bytes for the client first (a `CONNECT` answer).
    ///   - toUpstream: bytes the client already sent, replayed to the upstream first.
    ///   - completion: the tunnel's totals when it is gone (on the loop's thread).
    ///   `completion` runs in every case: with what moved, or (nothing moved) with why the
    ///   tunnel never started.
    /// - Returns: false (`upstream` and the channel closed) when the client is gone or its
    ///   descriptor cannot be duplicated.
    @discardableResult
    package func handOff(
        _ channel: any Channel, upstream: CInt, toClient: [UInt8], toUpstream: [UInt8],
        completion: @escaping @Sendable (SocketLoop.Totals) -> Void
    ) -> Bool {
        channel.eventLoop.assertInEventLoop()
        guard !handedOff, channel.isActive else {
            close(upstream)
            completion(SocketLoop.Totals(up: 0, down: 0, ending: "the sandbox closed the connection"))
            return false
        }
        // A second descriptor for the same socket: closing NIO's one below then neither
        // shuts the connection down nor resets it.
        let own = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
        guard own >= 0 else {
            let reason = String(cString: strerror(errno))
            close(upstream)
            channel.close(promise: nil)
            completion(SocketLoop.Totals(up: 0, down: 0, ending: "cannot take over the connection: \(reason)"))
            return false
        }
        handedOff = true
        let handle = loop.makeHandle()
        let tracker = self.tracker
        tracker?.transfer(channel, to: handle)
        channel.close(promise: nil)
        loop.splice(handle, client: own, upstream: upstream, toClient: toClient, toUpstream: toUpstream,
                    idleTimeout: idleTimeout) { totals in
            tracker?.release(handle)
            completion(totals)
        }
        return true
    }
}

/// An upstream connection for a tunnel: a NIO channel (glued byte for byte) or, when the
/// connection can be handed off, a bare connected socket for the socket loop.
package enum TunnelUpstream {
    case channel(any Channel)
    case socket(CInt)

    /// Dials `target` for a tunnel whose client is served by `pipeline`: a bare socket
    /// when the connection can be handed off and the dialer can make one, else a channel.
    package static func dial(
        _ target: UpstreamTarget, dialer: any UpstreamDialer, pipeline: ChannelPipeline, on eventLoop: any EventLoop
    ) -> EventLoopFuture<TunnelUpstream> {
        if target.tls == nil, let socketDialer = dialer as? any TunnelSocketDialer,
           let handoff = try? pipeline.syncOperations.handler(type: TunnelHandoff.self) {
            return socketDialer.dialSocket(target, loop: handoff.loop, on: eventLoop).map { .socket($0) }
        }
        return dialer.dial(target, on: eventLoop).map { .channel($0) }
    }

    /// Closes the connection unused.
    package func close() {
        switch self {
        case .channel(let channel): channel.close(promise: nil)
        case .socket(let fd): _ = Glibc.close(fd)
        }
    }
}

/// A dialer that can also return a bare connected socket, for tunnels the socket loop splices.
package protocol TunnelSocketDialer: UpstreamDialer {
    /// Resolves and checks `target` exactly as `dial` does, then connects a bare socket
    /// through `loop`. The descriptor is the caller's.
    func dialSocket(_ target: UpstreamTarget, loop: SocketLoop, on eventLoop: any EventLoop) -> EventLoopFuture<CInt>
}

/// Collects the bytes that reach the end of a pipeline while a tunnel is being handed off
/// (bytes the client sent right after its `CONNECT`, released by the HTTP decoder).
package final class LeftoverBytes: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package private(set) var bytes: [UInt8] = []

    package init() {}

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if let read = buffer.readBytes(length: buffer.readableBytes) { bytes += read }
    }
}
