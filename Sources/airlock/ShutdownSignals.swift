#if canImport(Glibc)
import Glibc
#endif

/// The signals that stop a long-running gateway (`gateway serve`, `gateway serve --all`),
/// held from the process's first moment until its service group watches them.
///
/// The service group learns of SIGTERM and SIGINT through signal sources it registers only
/// once it runs, after the sockets are bound, the helpers forked and the privileges dropped.
/// Unheld, a SIGTERM in that window (a service manager stopping a unit it has just started)
/// killed the process by the default action, before it could clean up. Blocked from the
/// start, such a signal stays pending and the service group's source takes it as soon as it
/// is registered (dispatch reads signals through a `signalfd`, which sees blocked ones);
/// every thread started later inherits the block, so no thread can die of it either.
enum ShutdownSignals {
    /// Blocks SIGTERM and SIGINT on the calling thread: call it while the process has one
    /// thread, before anything another process can see (a socket, a ready line) exists.
    static func hold() {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
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
