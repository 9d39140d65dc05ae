import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The threads blocking name lookups (`getaddrinfo`) run on, started by the first lookup.
///
/// A gateway whose sandbox never dials an upstream never starts them: `run -- true` spent
/// half a millisecond of its gateway's start on two threads it did not use
/// (docs/benchmarks.md). The first lookup starts them under a lock (its event loop waits
/// for that, once: far less than the lookup and the connection it serves), and any other
/// lookup meanwhile waits for them too.
package final class LookupThreads: Sendable {
    private enum State { case idle, running, stopped }

    private let pool: NIOThreadPool
    private let state = NIOLockedValueBox(State.idle)

    package init(numberOfThreads: Int = 2) {
        pool = NIOThreadPool(numberOfThreads: numberOfThreads)
    }

    /// Starts the threads now, if they are not running yet.
    package func start() {
        _ = startIfIdle()
    }

    /// Whether the threads run (or were started); false once stopped.
    private func startIfIdle() -> Bool {
        state.withLockedValue { state in
            switch state {
            case .idle:
                pool.start()
                state = .running
                return true
            case .running:
                return true
            case .stopped:
                return false
            }
        }
    }

    /// Whether the threads were ever started (tests).
    package var started: Bool { state.withLockedValue { $0 != .idle } }

    /// Runs `body` on one of the threads (starting them first if needed); its result
    /// completes on `eventLoop`. Fails once `shutdown` has run.
    package func run<Value: Sendable>(on eventLoop: any EventLoop, _ body: @escaping @Sendable () throws -> Value) -> EventLoopFuture<Value> {
        guard startIfIdle() else { return eventLoop.makeFailedFuture(NIOThreadPoolError.ThreadPoolInactive()) }
        return pool.runIfActive(eventLoop: eventLoop, body)
    }

    /// Stops the threads, if they were started, after the lookups in progress.
    package func shutdown() {
        let wasRunning = state.withLockedValue { state -> Bool in
            defer { state = .stopped }
            return state == .running
        }
        if wasRunning { try? pool.syncShutdownGracefully() }
    }
}
