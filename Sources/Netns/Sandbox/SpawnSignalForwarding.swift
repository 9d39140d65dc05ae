import CNetlink

/// Forwards INT, TERM and HUP that airlock receives to a sandbox init.
///
/// Signals the terminal generates are not forwarded: the sandbox is in airlock's process
/// group and receives them itself. Process-wide; one target at a time.
package enum SignalForwarding {
    /// Starts forwarding to `pid`.
    /// - Throws: `SandboxSetupError` when the handlers cannot be installed.
    package static func start(to pid: Int32) throws {
        let r = cnl_forward_signals(pid)
        if r < 0 { throw SandboxSetupError(step: "install signal forwarding", code: -r) }
    }

    /// Restores the default handlers.
    package static func stop() {
        _ = cnl_forward_signals(0)
    }
}
