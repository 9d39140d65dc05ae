import NIOConcurrencyHelpers
import NIOCore

/// Counts a sandbox's open connections across its listeners, enforces the limit, and
/// closes what is left when the gateway shuts down.
package final class ConnectionTracker: Sendable {
    private let limit: Int
    private let state = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

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
            open[id] = channel
            return true
        }
        if admitted {
            channel.closeFuture.whenComplete { _ in
                self.state.withLockedValue { _ = $0.removeValue(forKey: id) }
            }
        }
        return admitted
    }

    /// Connections open now.
    package var count: Int {
        state.withLockedValue { $0.count }
    }

    /// Closes every open connection.
    package func closeAll() {
        let channels = state.withLockedValue { Array($0.values) }
        for channel in channels { channel.close(promise: nil) }
    }
}
