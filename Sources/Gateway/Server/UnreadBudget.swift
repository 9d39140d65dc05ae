import Synchronization

/// The bytes a sandbox's tunnels may leave waiting for a reader that stopped reading, summed
/// over the gateway's socket loops.
///
/// A tunnel whose reader never reads (a client that opens a download and sleeps, an upstream
/// that stops taking an upload) holds what the gateway already read for it: the direction's
/// pipe (up to 1 MiB) and the unsent queue of its socket. Without a bound, the sandbox's
/// connection limit times that is kernel memory one sandbox can pin until the idle timeout.
/// A direction counts once its reader has taken nothing for two seconds (a reader that keeps
/// reading never counts, however much is in flight); once a second, a loop over the budget
/// closes its tunnels whose reader has taken nothing for longest until it is under again.
///
/// What it counts is what the gateway holds; the reader's own receive buffer is the
/// reader's (inside the sandbox, or the upstream's host).
package final class UnreadBudget: Sendable {
    /// The bound, in bytes.
    package let limit: Int
    private let held = Atomic<Int>(0)

    /// - Parameter limit: bytes; `Int.max` bounds nothing.
    package init(limit: Int) {
        self.limit = limit
    }

    /// Bytes held now by blocked tunnel directions of every loop sharing this budget.
    package var bytes: Int { held.load(ordering: .relaxed) }

    /// Adds `delta` (negative when bytes left) and returns the new sum.
    @discardableResult
    func add(_ delta: Int) -> Int {
        held.add(delta, ordering: .relaxed).newValue
    }
}
