#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// The gateway's `TunnelSink` for one accepted connection. It knows the connection's
/// descriptor, so that once a tunnel is established (a `CONNECT` answered, a ClientHello
/// routed) the connection can leave NIO and be spliced by the socket loop: the bytes of an
/// established tunnel then never pass through user space.
///
/// Upstreams are dialled as bare sockets (`TunnelSocketDialer.dialSocket`, the same checks
/// as `dial`), connected through the same socket loop.
package final class TunnelHandoff: TunnelSink {
    /// The socket loop that splices handed-off tunnels and dials their upstreams.
    package let loop: SocketLoop
    private let descriptor: CInt
    private let tracker: ConnectionTracker?
    private let idleTimeout: TimeAmount
    private let dialer: any TunnelSocketDialer
    private let unread: UnreadBudget?
    private var handedOff = false

    /// - Parameters:
    ///   - descriptor: the connection's socket, as accepted (NIO's channel owns it).
    ///   - loop: the loop that will splice the tunnel.
    ///   - tracker: counts the tunnel in place of the channel, so limits and draining see it.
    ///   - idleTimeout: how long a spliced tunnel may move no byte at all.
    ///   - dialer: connects the tunnel's upstream socket.
    ///   - unread: the sandbox's unread-tunnel budget; nil for the loop's own.
    package init(descriptor: CInt, loop: SocketLoop, tracker: ConnectionTracker?, idleTimeout: TimeAmount,
                 dialer: any TunnelSocketDialer, unread: UnreadBudget? = nil) {
        self.unread = unread
        self.descriptor = descriptor
        self.loop = loop
        self.tracker = tracker
        self.idleTimeout = idleTimeout
        self.dialer = dialer
    }

    package func connect(to target: UpstreamTarget, on eventLoop: any EventLoop) -> EventLoopFuture<any TunnelUpstream> {
        dialer.dialSocket(target, loop: loop, on: eventLoop).map { fd in
            SplicedUpstream(descriptor: fd, handoff: self)
        }
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
                    idleTimeout: idleTimeout, unread: unread) { totals in
            tracker?.release(handle)
            completion(totals)
        }
        return true
    }
}

/// A bare connected upstream socket, spliced by the socket loop once handed off.
private final class SplicedUpstream: TunnelUpstream {
    private var descriptor: CInt?
    private let handoff: TunnelHandoff

    init(descriptor: CInt, handoff: TunnelHandoff) {
        self.descriptor = descriptor
        self.handoff = handoff
    }

    func splice(_ channel: any Channel, toClient: [UInt8], toUpstream: [UInt8],
                completion: @escaping @Sendable (SocketLoop.Totals) -> Void) {
        guard let descriptor else { return }
        self.descriptor = nil
        handoff.handOff(channel, upstream: descriptor, toClient: toClient, toUpstream: toUpstream, completion: completion)
    }

    func close() {
        guard let descriptor else { return }
        self.descriptor = nil
        _ = Glibc.close(descriptor)
    }

    deinit {
        close()
    }
}

/// A dialer that can also return a bare connected socket, for tunnels the socket loop splices.
package protocol TunnelSocketDialer: UpstreamDialer {
    /// Resolves and checks `target` exactly as `dial` does, then connects a bare socket
    /// through `loop`. The descriptor is the caller's.
    func dialSocket(_ target: UpstreamTarget, loop: SocketLoop, on eventLoop: any EventLoop) -> EventLoopFuture<CInt>

    /// Dials `target` from `loop`'s own thread (call there) when that needs no name
    /// lookup: the same checks as `dialSocket`, then `then` runs on that thread, at once or
    /// when the connect completes.
    /// - Returns: false, with nothing done and `then` never called, when the name must go
    ///   to the resolver first.
    func dialHere(_ target: UpstreamTarget, loop: SocketLoop, then: @escaping (Result<CInt, DialError>) -> Void) -> Bool
}

extension TunnelSocketDialer {
    /// Without a loop-thread dial of its own, a dialer leaves every tunnel to `dialSocket`.
    package func dialHere(_ target: UpstreamTarget, loop: SocketLoop, then: @escaping (Result<CInt, DialError>) -> Void) -> Bool {
        false
    }
}
