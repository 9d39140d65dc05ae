#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// Process attributes the gateway and the sandbox builder set on themselves.
package enum ProcessControl {
    /// Makes this process non-dumpable: a same-uid process can then neither ptrace it nor
    /// read its memory or `/proc/PID/environ`. The gateway holds tokens; it calls this first.
    package static func forbidDumping() {
        _ = cnl_set_dumpable(0)
    }

    /// Asks for `signal` when the thread that started this process exits, and reports
    /// whether that parent is still the one expected (it may have died before the call).
    package static func dieWithParent(expectedParent: pid_t, signal: Int32 = SIGKILL) -> Bool {
        _ = cnl_set_parent_death_signal(signal)
        return getppid() == expectedParent
    }
}
