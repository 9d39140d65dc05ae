import NIOConcurrencyHelpers
import NIOCore

/// Counts a sandbox's open connections across its listeners, enforces the limit, and
/// closes what is left when the gateway shuts down.
///
/// A connection is a NIO channel until its tunnel is handed to the socket loop; from then
/// on the tunnel's handle holds its place.
package final class ConnectionTracker: Sendable {
    private enum Connection {
        case channel(any Channel)
        case tunnel(SocketLoop.Handle)

        func close() {
            switch self {
            case .channel(let channel): channel.close(promise: nil)
            case .tunnel(let handle): handle.close()
            }
        }
    }

    private let limit: Int
    private let state = NIOLockedValueBox<[ObjectIdentifier: Connection]>([:])

    /// - Parameter limit: the most connections open at once.
    package init(limit: Int) {
        self.limit = limit
    }

    /// Registers `channel` if there is room; it is forgotten when it closes.
    /// - Returns: false when the limit is reached (the caller closes the channel).
    package func admit(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let admitted = state.withLockedValue { open -> Bool in
            guard open.count < limit else { return false }
            open[id] = .channel(channel)
            return true
        }
        if admitted {
            channel.closeFuture.whenComplete { _ in
                self.state.withLockedValue { _ = $0.removeValue(forKey: id) }
            }
        }
        return admitted
    }

    /// Registers a connection the socket loop serves itself (`LoopConnect`), under the
    /// handle its tunnel will have, if there is room; `release` forgets it.
    /// - Returns: false when the limit is reached.
    package func admit(_ tunnel: SocketLoop.Handle) -> Bool {
        state.withLockedValue { open -> Bool in
            guard open.count < limit else { return false }
            open[ObjectIdentifier(tunnel)] = .tunnel(tunnel)
            return true
        }
    }

    /// Moves `channel`'s place to `tunnel`, whose bytes the socket loop now moves; the
    /// channel's closing no longer counts. Nothing happens for a channel not counted.
    package func transfer(_ channel: any Channel, to tunnel: SocketLoop.Handle) {
        state.withLockedValue { open in
            guard open.removeValue(forKey: ObjectIdentifier(channel)) != nil else { return }
            open[ObjectIdentifier(tunnel)] = .tunnel(tunnel)
        }
    }

    /// Forgets a tunnel that has ended (or a connection admitted by its handle that went
    /// elsewhere).
    package func release(_ tunnel: SocketLoop.Handle) {
        state.withLockedValue { _ = $0.removeValue(forKey: ObjectIdentifier(tunnel)) }
    }

    /// Connections open now.
    package var count: Int {
        state.withLockedValue { $0.count }
    }

    /// Connections open now, and how many of them are tunnels.
    package var counts: (connections: Int, tunnels: Int) {
        state.withLockedValue { open in
            (open.count, open.values.reduce(0) { count, connection in
                if case .tunnel = connection { return count + 1 }
                return count
            })
        }
    }

    /// Closes every open connection.
    package func closeAll() {
        let connections = state.withLockedValue { Array($0.values) }
        for connection in connections { connection.close() }
    }
}
