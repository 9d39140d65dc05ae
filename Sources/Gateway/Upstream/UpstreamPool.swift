import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import GatewayCore

/// Idle upstream connections kept alive between exchanges (HTTP/1.1 keep-alive, usually
/// over TLS), so that the git and credential routes do not dial and handshake again for
/// every request.
///
/// A connection is kept under a `Key`: its target (scheme, host, port, pinned address,
/// TLS context and server name), the event loop it lives on, and the policy generation it
/// was dialled under. A policy reload (`policyChanged()`) starts a new generation and
/// closes every idle connection, so nothing dialled under an old policy is used again.
/// The forwarder parks a connection only after a clean exchange (see
/// `HTTPForwardingStateMachine`); the pool bounds how many wait (per key and in total)
/// and for how long (`Limits.idleTimeout`, below common servers' keep-alive). An idle
/// connection that the upstream closes, or that says anything while idle, is closed and
/// forgotten. The request's credential travels in each request, never in the connection,
/// so any request of this gateway may reuse a connection to the same target: the key
/// holds no credential, and neither does its description.
///
/// Thread-safe; each connection is taken and parked on its own event loop.
package final class UpstreamPool: Sendable {
    /// How many idle connections are kept and for how long.
    package struct Limits: Sendable {
        /// Idle connections kept per key.
        package var perKey: Int
        /// Idle connections kept in all.
        package var total: Int
        /// How long a connection waits idle before it is closed.
        package var idleTimeout: TimeAmount

        /// Creates limits; the defaults are 4 per key, 64 in all, 30 s idle.
        package init(perKey: Int = 4, total: Int = 64, idleTimeout: TimeAmount = .seconds(30)) {
            self.perKey = perKey
            self.total = total
            self.idleTimeout = idleTimeout
        }
    }

    /// How long a closing upstream TLS connection waits for the peer's `close_notify`
    /// before it closes the socket anyway (set on the upstreams' TLS contexts).
    package static let tlsShutdownTimeout: TimeAmount = .milliseconds(250)

    /// Closes an idle connection at once: its socket, without TLS's `close_notify`
    /// exchange, which nothing needs on a connection with no exchange in flight. (Waiting
    /// for the upstream's `close_notify` is what a TLS close does, and an upstream that
    /// only closes its socket in answer, as many do, is then waited for until the TLS
    /// shutdown timeout: at every policy reload, and when the gateway stops, at the end
    /// of every `airlock run`.) Uses the connection's `ImmediateCloser`, if it has one.
    package static func discard(_ channel: any Channel) {
        func close() {
            if let closer = try? channel.pipeline.syncOperations.handler(type: ImmediateCloser.self) {
                closer.close()
            } else {
                channel.close(promise: nil)
            }
        }
        if channel.eventLoop.inEventLoop { close() } else { channel.eventLoop.execute { close() } }
    }

    /// What an idle connection is kept under: two requests may share a connection only
    /// when their keys are equal. Holds no credential.
    package struct Key: Hashable, Sendable, CustomStringConvertible {
        package let host: String
        package let port: Int
        /// The pinned address, if the target had one.
        package let address: SocketAddress?
        /// The TLS client context, compared by identity; `nil` for plain TCP.
        package let tls: UpstreamTLS?
        /// The TLS server name sent (none for an IP literal).
        package let serverName: String?
        /// The policy generation the connection was dialled under.
        package let generation: UInt64
        /// The event loop the connection lives on.
        let loop: ObjectIdentifier

        package static func == (lhs: Key, rhs: Key) -> Bool {
            lhs.host == rhs.host && lhs.port == rhs.port && lhs.address == rhs.address && lhs.tls === rhs.tls
                && lhs.serverName == rhs.serverName && lhs.generation == rhs.generation && lhs.loop == rhs.loop
        }

        package func hash(into hasher: inout Hasher) {
            hasher.combine(host)
            hasher.combine(port)
            hasher.combine(address)
            hasher.combine(tls.map { ObjectIdentifier($0) })
            hasher.combine(serverName)
            hasher.combine(generation)
            hasher.combine(loop)
        }

        /// `https://host:port (policy generation N)`.
        package var description: String {
            "\(tls == nil ? "http" : "https")://\(host.contains(":") ? "[\(host)]" : host):\(port) (policy generation \(generation))"
        }
    }

    private struct Idle {
        let channel: any Channel
        let id: ObjectIdentifier
        let expiry: Scheduled<Void>
    }

    private struct State {
        var generation: UInt64 = 0
        var idle: [Key: [Idle]] = [:]
        var count = 0
        /// Connections whose close is watched (parked at least once, not yet closed).
        var watched: Set<ObjectIdentifier> = []
    }

    private let limits: Limits
    private let state = NIOLockedValueBox(State())

    /// Creates an empty pool.
    package init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// The policy generation new connections are dialled under.
    package var generation: UInt64 {
        state.withLockedValue { $0.generation }
    }

    /// Idle connections kept now.
    package var idleCount: Int {
        state.withLockedValue { $0.count }
    }

    /// The key for a connection to `target` on `eventLoop` dialled now.
    package func key(for target: UpstreamTarget, on eventLoop: any EventLoop) -> Key {
        Key(host: target.host, port: target.port, address: target.address, tls: target.tls,
            serverName: target.tls == nil || HostLiteral.parse(target.host) != nil ? nil : target.host,
            generation: generation, loop: ObjectIdentifier(eventLoop))
    }

    /// An idle connection for `key`, most recently parked first, if one is open; it is no
    /// longer idle. Call on `key`'s event loop.
    package func take(_ key: Key) -> (any Channel)? {
        while let idle = state.withLockedValue({ state -> Idle? in
            guard key.generation == state.generation, var list = state.idle[key], let last = list.popLast() else { return nil }
            state.idle[key] = list.isEmpty ? nil : list
            state.count -= 1
            return last
        }) {
            idle.expiry.cancel()
            if idle.channel.isActive { return idle.channel }
        }
        return nil
    }

    /// Keeps `channel` idle under `key`, unless the key's policy generation is over or a
    /// bound is reached: then `false`, and the caller closes it.
    package func park(_ channel: any Channel, as key: Key) -> Bool {
        guard channel.isActive else { return false }
        let id = ObjectIdentifier(channel)
        let (parked, watch) = state.withLockedValue { state -> (Bool, Bool) in
            guard key.generation == state.generation, state.count < limits.total,
                  state.idle[key, default: []].count < limits.perKey else { return (false, false) }
            let expiry = channel.eventLoop.scheduleTask(in: limits.idleTimeout) { [weak self] () -> Void in
                self?.expire(id, key: key)
            }
            state.idle[key, default: []].append(Idle(channel: channel, id: id, expiry: expiry))
            state.count += 1
            return (true, state.watched.insert(id).inserted)
        }
        if watch {
            channel.closeFuture.whenComplete { [weak self] _ in self?.closed(id, key: key) }
        }
        return parked
    }

    /// Starts a new policy generation: every idle connection is closed, and connections in
    /// use are closed instead of parked when their exchange ends.
    package func policyChanged() {
        closeAll(newGeneration: true)
    }

    /// Closes every idle connection (the gateway is stopping).
    package func closeAll() {
        closeAll(newGeneration: false)
    }

    private func closeAll(newGeneration: Bool) {
        let dropped = state.withLockedValue { state -> [Idle] in
            if newGeneration { state.generation &+= 1 }
            let all = state.idle.values.flatMap { $0 }
            state.idle = [:]
            state.count = 0
            return all
        }
        for idle in dropped {
            idle.expiry.cancel()
            Self.discard(idle.channel)
        }
    }

    /// The idle timeout of one connection ran out.
    private func expire(_ id: ObjectIdentifier, key: Key) {
        remove(id, key: key).map(Self.discard)
    }

    /// A watched connection closed: forgotten if idle.
    private func closed(_ id: ObjectIdentifier, key: Key) {
        state.withLockedValue { _ = $0.watched.remove(id) }
        remove(id, key: key)
    }

    @discardableResult
    private func remove(_ id: ObjectIdentifier, key: Key) -> (any Channel)? {
        let removed = state.withLockedValue { state -> Idle? in
            guard var list = state.idle[key], let index = list.firstIndex(where: { $0.id == id }) else { return nil }
            let idle = list.remove(at: index)
            state.idle[key] = list.isEmpty ? nil : list
            state.count -= 1
            return idle
        }
        removed?.expiry.cancel()
        return removed?.channel
    }
}

/// The first handler of a connection the pool may keep: closes its socket directly,
/// ahead of TLS (`UpstreamPool.discard`).
package final class ImmediateCloser: ChannelOutboundHandler, RemovableChannelHandler {
    package typealias OutboundIn = NIOAny
    private var context: ChannelHandlerContext?

    /// Creates the handler; add it first in the pipeline.
    package init() {}

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Closes the channel from the front of its pipeline, past every handler. Call on
    /// the channel's event loop.
    func close() {
        context?.close(promise: nil)
    }
}
