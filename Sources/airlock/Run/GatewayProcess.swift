#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Gateway
import Netns
import SystemCalls
import GatewayCore

/// The gateway of a root `airlock run`, in a process of its own that gives up root before
/// it reads a byte from the sandbox.
///
/// The parent keeps root for what needs it (building the sandbox, starting the command
/// inside it, forwarding signals, waiting) and never reads sandbox input. The child, forked
/// before any thread exists, drops to an unprivileged account with no capabilities and
/// starts its event loop and socket loops while the parent builds the
/// sandbox; it then takes the listening sockets the parent bound in G (`serve(listeners:)`),
/// serves until the parent closes its end of the stop pipe, drains, releases the held audit
/// lines, sends its count of refusals back over a pipe and exits. It dies with the parent (`PR_SET_PDEATHSIG`), so a SIGKILL of
/// airlock still leaves nothing behind.
final class GatewayProcess {
    let pid: pid_t
    /// The read end of the pipe the child writes its `RefusalTally.Summary` to, as JSON.
    private let refusals: CInt
    /// The read end of the pipe the child writes one byte to once every listener serves.
    private let readyPipe: CInt
    /// The write end of the pipe whose closing tells the child to drain and stop.
    private let stopPipe: CInt
    /// Carries the listeners to the child; nil once they are sent.
    private var channel: DescriptorChannel?
    private var stopped = false

    private init(pid: pid_t, refusals: CInt, readyPipe: CInt, stopPipe: CInt, channel: DescriptorChannel) {
        self.pid = pid
        self.refusals = refusals
        self.readyPipe = readyPipe
        self.stopPipe = stopPipe
        self.channel = channel
    }

    /// The most the parent reads of the child's summary (a thousand entries are far less).
    static let summaryLimit = 4 << 20

    /// The summary when nothing was refused (most runs): no JSON coder to start on either
    /// side. Not a JSON object, so it cannot be mistaken for a summary.
    private static let nothingRefused: [UInt8] = Array("0".utf8)

    /// What the parent sends with the listening sockets.
    private static let listenersMessage = "listeners"

    /// Forks the gateway, which drops its privileges and starts its threads; it serves once
    /// given its listeners (`serve(listeners:)`).
    /// - Parameters:
    ///   - user: the account the gateway drops to.
    ///   - heldAudit: audit lines to write to stderr when the gateway ends.
    ///   - tally: the runtime's count of refusals, sent back when the gateway ends.
    /// - Throws: `CLIError` when the process cannot start.
    static func start(
        runtime: GatewayRuntime, user: SandboxUser, heldAudit: HeldAuditSink?, tally: RefusalTally, readyTimeout: Double
    ) throws -> GatewayProcess {
        try ForkSafety.waitUntilSingleThreaded(toStart: "the gateway process")
        let (channel, childChannel) = try DescriptorChannel.pair()
        var ends: [CInt] = [-1, -1]
        guard closeOnExecPipe(&ends) else {
            let code = errno
            close(childChannel)
            throw CLIError("start the gateway process: pipe: \(String(cString: strerror(code)))")
        }
        var summaryEnds: [CInt] = [-1, -1]
        guard closeOnExecPipe(&summaryEnds) else {
            let code = errno
            for end in ends + [childChannel] { close(end) }
            throw CLIError("start the gateway process: pipe: \(String(cString: strerror(code)))")
        }
        var stopEnds: [CInt] = [-1, -1]
        guard closeOnExecPipe(&stopEnds) else {
            let code = errno
            for end in ends + summaryEnds + [childChannel] { close(end) }
            throw CLIError("start the gateway process: pipe: \(String(cString: strerror(code)))")
        }
        let parent = getpid()
        let pid = fork()
        if pid < 0 {
            let code = errno
            for end in ends + summaryEnds + stopEnds + [childChannel] { close(end) }
            throw CLIError("start the gateway process: fork: \(String(cString: strerror(code)))")
        }
        if pid == 0 {
            channel.close()
            close(ends[0])
            close(summaryEnds[0])
            close(stopEnds[1])
            serve(runtime: runtime, channel: DescriptorChannel(adopting: childChannel), user: user, heldAudit: heldAudit,
                  tally: tally, readyTimeout: readyTimeout, readyPipe: ends[1], summaryPipe: summaryEnds[1],
                  stopPipe: stopEnds[0], parent: parent)
        }
        close(childChannel)
        close(ends[1])
        close(summaryEnds[1])
        close(stopEnds[0])
        return GatewayProcess(pid: pid, refusals: summaryEnds[0], readyPipe: ends[0], stopPipe: stopEnds[1], channel: channel)
    }

    /// Hands the gateway its listening sockets (in `GatewaySockets.all` order); the caller
    /// closes its own copies.
    /// - Throws: `CLIError` when the gateway is gone.
    func serve(listeners: [CInt]) throws {
        guard let channel else { return }
        self.channel = nil
        defer { channel.close() }
        do {
            try channel.send(Self.listenersMessage, descriptors: listeners)
        } catch {
            throw CLIError("the gateway stopped before it was ready")
        }
    }

    /// Returns once every listener serves.
    /// - Throws: `CLIError` when the gateway stopped before it was ready.
    func awaitReady() throws {
        var byte: UInt8 = 0
        let count = retryingInterrupted { read(readyPipe, &byte, 1) }
        guard count == 1 else { throw CLIError("the gateway stopped before it was ready") }
    }

    /// The child: drop, start the threads, take the listeners, serve, release the audit,
    /// exit. Never returns.
    private static func serve(
        runtime: GatewayRuntime, channel: DescriptorChannel, user: SandboxUser, heldAudit: HeldAuditSink?, tally: RefusalTally,
        readyTimeout: Double, readyPipe: CInt, summaryPipe: CInt, stopPipe: CInt, parent: pid_t
    ) -> Never {
        guard ProcessControl.dieWithParent(expectedParent: parent, signal: SIGKILL) else { _exit(125) }
        // The terminal's signals, and a TERM sent to airlock's process group, reach the
        // gateway too; the command gets them (the parent forwards them), and the gateway
        // drains only when the parent says so, by closing the stop pipe.
        signal(SIGINT, SIG_IGN)
        signal(SIGQUIT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        var status: Int32 = 0
        do {
            // Threads start only after the drop: setuid reaches every thread, capabilities
            // only the calling one.
            try Privileges.dropProcessPrivileges(to: user)
            GatewayRuntime.raiseOpenFileLimit()
            // Started while the parent builds the sandbox: the event loop and socket loops
            // are ready when the listeners come.
            let serving = try SharedServing.start(eventLoops: 1)
            // No listeners: the parent gave up (it said why).
            guard let (message, listeners) = try channel.receive(), message == listenersMessage,
                  listeners.count == GatewayListeners.standardCount + runtime.listenerPorts.count
            else { _exit(125) }
            channel.close()
            // No signal sources: a stop pipe read by a thread of its own costs less to
            // start than the dispatch sources that would watch for TERM.
            runtime.start(listeners: GatewayListeners(ordered: listeners, ports: runtime.listenerPorts), shutdownSignals: [],
                          shared: serving)
            try runtime.awaitReady(timeout: readyTimeout)
            // The stop pipe's end of file (the parent's `stop`, or its death) starts the
            // drain. Watched before the gateway says it is ready: without the watch it
            // fails now, before the command starts.
            guard DetachedThread.start({
                var byte: UInt8 = 0
                while retryingInterrupted({ read(stopPipe, &byte, 1) }) > 0 {}
                runtime.shutdown()
            }) else {
                throw CLIError("the gateway could not start the thread that waits for its stop")
            }
            var byte: UInt8 = 1
            _ = write(readyPipe, &byte, 1)
            close(readyPipe)
            // The process exits next: its threads end with it.
            try runtime.wait(stopThreads: false)
        } catch {
            printError(String(describing: error))
            status = 125
        }
        heldAudit?.release(to: 2)
        let summary = tally.summary
        if let encoded = summary.isEmpty ? Self.nothingRefused : (try? JSONEncoder().encode(summary)).map({ [UInt8]($0) }) {
            var bytes = encoded[...]
            while !bytes.isEmpty {
                let n = retryingInterrupted { bytes.withUnsafeBytes { write(summaryPipe, $0.baseAddress, $0.count) } }
                if n <= 0 { break }
                bytes = bytes.dropFirst(n)
            }
        }
        close(summaryPipe)
        _exit(status)
    }

    /// Asks the gateway to drain and stop (closes the stop pipe), and waits for its summary.
    /// - Returns: its count of refusals; nil if it ended without sending one.
    /// Repeated calls return nil.
    @discardableResult
    func stop() -> RefusalTally.Summary? {
        guard !stopped else { return nil }
        stopped = true
        channel?.close()
        channel = nil
        close(readyPipe)
        close(stopPipe)
        // Read to the end: the child blocks on a full pipe until it is read, and closes it
        // last, just before it exits.
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)  // the summary is a few bytes ("0") unless something was refused
        while data.count <= Self.summaryLimit {
            let n = retryingInterrupted { buffer.withUnsafeMutableBytes { read(refusals, $0.baseAddress, $0.count) } }
            if n <= 0 { break }
            data += buffer[..<n]
        }
        close(refusals)
        // The summary's end of file is the gateway's last act before _exit: what is left is
        // the kernel's teardown of its threads and memory (most of a millisecond), which
        // the run does not wait for. The gateway is reaped here if it has ended, else by
        // init once airlock, which returns next, has exited.
        var status: Int32 = 0
        _ = retryingInterrupted { waitpid(pid, &status, WNOHANG) }
        if data == Self.nothingRefused { return RefusalTally.Summary() }
        return try? JSONDecoder().decode(RefusalTally.Summary.self, from: Data(data))
    }

    /// A pipe whose ends close on exec.
    private static func closeOnExecPipe(_ ends: inout [CInt]) -> Bool {
        guard pipe(&ends) == 0 else { return false }
        guard fcntl(ends[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(ends[1], F_SETFD, FD_CLOEXEC) == 0 else {
            let code = errno
            close(ends[0])
            close(ends[1])
            errno = code
            return false
        }
        return true
    }
}
