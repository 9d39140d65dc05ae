#if canImport(Glibc)
import Glibc
#endif

/// The signals a long-running gateway (`gateway serve`, `gateway serve --all`) acts on,
/// SIGTERM and SIGINT (stop) and SIGHUP (reload), held from the process's first moment
/// until it watches them.
///
/// The service group learns of SIGTERM and SIGINT through signal sources it registers only
/// once it runs, after the sockets are bound, the helpers forked and the privileges dropped.
/// Unheld, a SIGTERM in that window (a service manager stopping a unit it has just started)
/// killed the process by the default action, before it could clean up. Blocked from the
/// start, such a signal stays pending and the service group's source takes it as soon as it
/// is registered (dispatch reads signals through a `signalfd`, which sees blocked ones);
/// every thread started later inherits the block, so no thread can die of it either.
/// A SIGHUP held that way is dropped when the policy store starts watching (it sets SIGHUP
/// to ignored, which discards a pending one): a reload asked for before the policy was
/// being watched has nothing to add, since the store has just read the files and its
/// watch sees any later change.
enum ShutdownSignals {
    /// Blocks SIGTERM, SIGINT and SIGHUP on the calling thread: call it while the process has one
    /// thread, before anything another process can see (a socket, a ready line) exists.
    static func hold() {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGHUP)
        sigprocmask(SIG_BLOCK, &signals, nil)
    }

    /// In a helper just forked: no signal blocked, as if it had been started afresh (a
    /// fork keeps the parent's mask, never its pending signals).
    static func clearInChild() {
        var none = sigset_t()
        sigemptyset(&none)
        sigprocmask(SIG_SETMASK, &none, nil)
    }
}
