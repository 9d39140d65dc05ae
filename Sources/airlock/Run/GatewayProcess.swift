#if canImport(Glibc)
import Glibc
#endif
import Gateway
import Netns
import SystemCalls

/// The gateway of a root `airlock run`, in a process of its own that gives up root before
/// it reads a byte from the sandbox.
///
/// The parent keeps root for what needs it (starting the command inside the sandbox,
/// forwarding signals, waiting) and never reads sandbox input. The child, forked before
/// any thread exists, drops to an unprivileged account with no capabilities, serves until
/// SIGTERM, releases the held audit lines and exits. It dies with the parent
/// (`PR_SET_PDEATHSIG`), so a SIGKILL of airlock still leaves nothing behind.
struct GatewayProcess {
    let pid: pid_t

    /// Forks the gateway; returns once every listener serves.
    /// - Parameters:
    ///   - user: the account the gateway drops to.
    ///   - heldAudit: audit lines to write to stderr when the gateway ends.
    /// - Throws: `CLIError` when the process cannot start or stops before it is ready.
    static func start(
        runtime: GatewayRuntime, listeners: [CInt], user: SandboxUser, heldAudit: HeldAuditSink?, readyTimeout: Double
    ) throws -> GatewayProcess {
        try waitUntilSingleThreaded()
        var ends: [CInt] = [-1, -1]
        guard pipe(&ends) == 0, fcntl(ends[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(ends[1], F_SETFD, FD_CLOEXEC) == 0 else {
            throw CLIError("start the gateway process: pipe: \(String(cString: strerror(errno)))")
        }
        let parent = getpid()
        let pid = fork()
        if pid < 0 {
            let code = errno
            close(ends[0])
            close(ends[1])
            throw CLIError("start the gateway process: fork: \(String(cString: strerror(code)))")
        }
        if pid == 0 {
            close(ends[0])
            serve(runtime: runtime, listeners: listeners, user: user, heldAudit: heldAudit, readyTimeout: readyTimeout,
                  readyPipe: ends[1], parent: parent)
        }
        close(ends[1])
        for listener in listeners { close(listener) }
        var byte: UInt8 = 0
        let count = retryingInterrupted { read(ends[0], &byte, 1) }
        close(ends[0])
        let process = GatewayProcess(pid: pid)
        guard count == 1 else {
            _ = process.wait()
            throw CLIError("the gateway stopped before it was ready")
        }
        return process
    }

    /// The child: drop, serve, release the audit, exit. Never returns.
    private static func serve(
        runtime: GatewayRuntime, listeners: [CInt], user: SandboxUser, heldAudit: HeldAuditSink?, readyTimeout: Double,
        readyPipe: CInt, parent: pid_t
    ) -> Never {
        guard ProcessControl.dieWithParent(expectedParent: parent, signal: SIGKILL) else { _exit(125) }
        // The terminal's signals reach the whole process group; the command gets them, the
        // gateway drains when the parent says so.
        signal(SIGINT, SIG_IGN)
        signal(SIGQUIT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        var status: Int32 = 0
        do {
            // Threads start only after the drop: setuid reaches every thread, capabilities
            // only the calling one.
            try Privileges.dropProcessPrivileges(to: user)
            runtime.start(listeners: GatewayListeners(ordered: listeners), shutdownSignals: [.sigterm], eventLoops: 1)
            try runtime.awaitReady(timeout: readyTimeout)
            var byte: UInt8 = 1
            _ = write(readyPipe, &byte, 1)
            close(readyPipe)
            try runtime.wait()
        } catch {
            printError(String(describing: error))
            status = 125
        }
        heldAudit?.release(to: 2)
        _exit(status)
    }

    /// Asks the gateway to drain and stop, and waits for it.
    func stop() {
        _ = kill(pid, SIGTERM)
        _ = wait()
    }

    private func wait() -> Int32 {
        var status: Int32 = 0
        return retryingInterrupted { waitpid(pid, &status, 0) } < 0 ? -1 : status
    }

    /// fork copies only the calling thread: nothing may run on another one. Threads used
    /// before (the namespace builders' dedicated threads) have been joined; the kernel
    /// may take a moment to remove them from /proc/self/task.
    private static func waitUntilSingleThreaded() throws {
        var threads = 0
        for _ in 0..<200 {
            threads = taskCount()
            if threads == 1 { return }
            usleep(1000)
        }
        throw CLIError("start the gateway process: airlock runs \(threads) threads, and fork copies only one")
    }

    private static func taskCount() -> Int {
        guard let directory = opendir("/proc/self/task") else { return -1 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { count += 1 }
        }
        return count
    }
}
