#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import Synchronization
import SystemPackage
import SystemCalls

/// Binds listening TCP sockets inside the gateway namespace G for a gateway that has
/// dropped its privileges: `gateway serve` starts one before the drop, so that a policy
/// reload can open listeners on ports it adds.
///
/// A forked helper process (no exec) that enters G, drops to the gateway's account with
/// `CAP_NET_BIND_SERVICE` alone (for ports below 1024), not dumpable and `no_new_privs`,
/// and closes every descriptor it inherited but its end of a `SOCK_SEQPACKET` pair. It
/// answers one request at a time: a port in, a listening socket on the gateway address
/// out (`SCM_RIGHTS`). It can bind nothing else, and exits when the gateway closes its end
/// or dies. `stop` closes the pair and reaps it; it is idempotent.
package final class PortBinder: Sendable {
    private struct State {
        var socket: CInt
        var pid: pid_t
    }

    private let state: Mutex<State?>
    /// The address every socket is bound on.
    package let address: IPv4Address

    private init(socket: CInt, pid: pid_t, address: IPv4Address) {
        state = Mutex(State(socket: socket, pid: pid))
        self.address = address
    }

    /// Forks the binder; returns once it entered G and dropped to `user`.
    /// - Parameters:
    ///   - gatewayNamespace: G, entered by the helper (the caller stays where it is).
    ///   - address: the gateway address every socket is bound on.
    ///   - user: the account the helper runs as.
    /// - Throws: `SystemCallError` naming the step that failed.
    /// - Requires: CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID and CAP_SETPCAP; call it while the
    ///   process has one thread (fork copies only the caller).
    package static func start(in gatewayNamespace: FileDescriptor, address: IPv4Address, user: SandboxUser) throws -> PortBinder {
        var pid: pid_t = 0
        let socket = user.groups.withUnsafeBufferPointer { groups in
            cnl_binder_start(gatewayNamespace.rawValue, address.networkOrder, ListenerSockets.backlog,
                             user.uid, user.gid, groups.baseAddress, groups.count, &pid)
        }
        guard socket >= 0 else { throw SystemCallError("start the port binder for \(address)", code: -socket) }
        return PortBinder(socket: socket, pid: pid, address: address)
    }

    /// A listening TCP socket on `address`:`port` inside G, owned by the caller
    /// (close-on-exec). Blocks until the helper answers; requests are taken one at a time.
    /// - Throws: `SystemCallError` with the helper's errno for binding (`Address already in
    ///   use`), or `EPIPE` when the binder has stopped.
    package func bind(port: UInt16) throws -> FileDescriptor {
        try state.withLock { state in
            let what = "bind tcp \(address):\(port)"
            guard let state else { throw SystemCallError(what, code: EPIPE) }
            let fd = cnl_binder_bind(state.socket, port)
            guard fd >= 0 else { throw SystemCallError(what, code: -fd) }
            return FileDescriptor(rawValue: fd)
        }
    }

    /// The helper's process id, while it runs.
    package var pid: pid_t? {
        state.withLock { $0?.pid }
    }

    /// Closes the pair, so the helper exits, and reaps it. Idempotent.
    package func stop() {
        guard let stopped = state.withLock({ state -> State? in
            defer { state = nil }
            return state
        }) else { return }
        close(stopped.socket)
        var status: Int32 = 0
        while waitpid(stopped.pid, &status, 0) < 0 && errno == EINTR {}
    }

    deinit {
        stop()
    }
}
