import Foundation
import XCTest
import TestSupport
@testable import Netns

/// `SandboxProcess.spawn` for real: namespaces, mounts, privilege drop, exit statuses.
/// Root tier: runs only inside scripts/in-throwaway-ns.
final class SpawnIntegrationTests: XCTestCase {
    var namespace: SpawnFixture.Namespace!
    var user: SandboxUser!

    override func setUpWithError() throws {
        try RootTier.require()
        user = try SpawnFixture.testUser()
        namespace = try SpawnFixture.Namespace()
    }

    override func tearDown() {
        namespace?.remove()
    }

    func testRunsAsTheUserWithNoCapabilitiesAndNoNewPrivs() throws {
        let outcome = try SpawnFixture.run(
            ["sh", "-c", "id -u; id -g; id -G; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status"],
            user: user, namespace: namespace)
        XCTAssertEqual(outcome.status, .exited(0), outcome.output)
        let lines = outcome.output.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, String(user.uid))
        XCTAssertEqual(lines.dropFirst().first, String(user.gid))
        XCTAssertEqual(Set(lines[2].split(separator: " ").map(String.init)), Set(user.groups.map(String.init)))
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            XCTAssertTrue(lines.contains("\(set):\t0000000000000000"), "\(set) not empty in:\n\(outcome.output)")
        }
        XCTAssertTrue(lines.contains("NoNewPrivs:\t1"), outcome.output)
    }

    func testRootUserStillHasNoCapabilities() throws {
        let root = try Users.lookup("root")
        let outcome = try SpawnFixture.run(
            ["sh", "-c", "id -u; grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status; mount -t tmpfs x /mnt 2>&1; echo mount=$?"],
            user: root, namespace: namespace)
        XCTAssertEqual(outcome.status, .exited(0), outcome.output)
        XCTAssertTrue(outcome.output.hasPrefix("0\n"), outcome.output)
        XCTAssertTrue(outcome.output.contains("CapEff:\t0000000000000000"), outcome.output)
        XCTAssertTrue(outcome.output.contains("CapBnd:\t0000000000000000"), outcome.output)
        XCTAssertFalse(outcome.output.contains("mount=0"), "uid 0 without capabilities must not mount:\n\(outcome.output)")
    }

    func testMasksHideDirectoriesAndFiles() throws {
        // Under /home (an overlay in the throwaway namespace): /tmp inside is a fresh one.
        let base = "/home/airlock-mask-\(getpid())"
        try FileManager.default.createDirectory(atPath: base + "/dir", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(atPath: base) }
        chmod(base, 0o755)
        XCTAssertTrue(FileManager.default.createFile(atPath: base + "/dir/id_ed25519", contents: Data("PRIVATE KEY".utf8), attributes: [.posixPermissions: 0o644]))
        XCTAssertTrue(FileManager.default.createFile(atPath: base + "/netrc", contents: Data("machine x password y".utf8), attributes: [.posixPermissions: 0o644]))
        let masks = Masks.resolve([base + "/dir", base + "/netrc", base + "/missing"])
        XCTAssertEqual(masks.map(\.kind), [.directory, .file])
        let outcome = try SpawnFixture.run(
            ["sh", "-c", "echo dir:$(ls -A \(base)/dir | wc -l); echo file:$(wc -c < \(base)/netrc); echo x > \(base)/dir/new 2>/dev/null; echo write=$?"],
            user: user, namespace: namespace, masks: masks)
        XCTAssertEqual(outcome.status, .exited(0), outcome.output)
        XCTAssertTrue(outcome.output.contains("dir:0\n"), outcome.output)
        XCTAssertTrue(outcome.output.contains("file:0\n"), outcome.output)
        XCTAssertTrue(outcome.output.contains("write=1") || outcome.output.contains("write=2"), outcome.output)
        // Outside the sandbox nothing changed.
        XCTAssertEqual(try String(contentsOfFile: base + "/netrc", encoding: .utf8), "machine x password y")
    }

    func testProcShowsOnlySandboxProcesses() throws {
        let outcome = try SpawnFixture.run(
            ["sh", "-c", "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; cat /proc/1/net/tcp | wc -l"],
            user: user, namespace: namespace)
        XCTAssertEqual(outcome.status, .exited(0), outcome.output)
        let lines = outcome.output.split(separator: "\n")
        let pids = lines.first.map { $0.split(separator: " ").compactMap { Int($0) } } ?? []
        XCTAssertEqual(pids.first, 1, outcome.output)
        XCTAssertLessThanOrEqual(pids.count, 6, "only the init, sh and its pipeline: \(pids)")
        XCTAssertTrue(pids.allSatisfy { $0 <= 10 }, "only PIDs of the new namespace, none of the host's: \(pids)")
        XCTAssertEqual(lines.last, "1", "only the header line: no sockets in the sandbox namespace\n\(outcome.output)")
    }

    func testSysShowsOnlyTheSandboxInterfaces() throws {
        let host = Set((try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/net")) ?? [])
        let outcome = try SpawnFixture.run(
            ["sh", "-c", "ls /sys/class/net | sort | tr '\\n' ' '; echo; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '"],
            user: user, namespace: namespace)
        XCTAssertEqual(outcome.status, .exited(0), outcome.output)
        let lines = outcome.output.split(separator: "\n", omittingEmptySubsequences: false).map { Set($0.split(separator: " ").map(String.init)) }
        XCTAssertGreaterThanOrEqual(lines.count, 2, outcome.output)
        let inSys = lines.first ?? []
        let inNamespace = lines.dropFirst().first ?? []
        XCTAssertEqual(inSys, inNamespace, "/sys/class/net lists the sandbox's own interfaces: \(outcome.output)")
        XCTAssertTrue(host.subtracting(inNamespace).isDisjoint(with: inSys), "none of the host's: host \(host), sandbox \(inSys)")
        XCTAssertNotEqual(host, inNamespace, "the test needs a host with interfaces the sandbox does not have")
    }

    func testResolvConfHostsAndFreshRun() throws {
        let outcome = try SpawnFixture.run(
            ["sh", "-c", "cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; ls -A /run; echo ---; ls -A /var/run"],
            user: user, namespace: namespace, gateway: "169.254.77.1")
        XCTAssertEqual(outcome.status, .exited(0), outcome.output)
        let parts = outcome.output.components(separatedBy: "---\n")
        XCTAssertEqual(parts.first, "nameserver 169.254.77.1\n")
        XCTAssertEqual(parts.dropFirst().first, "127.0.0.1 localhost\n::1 localhost\n169.254.77.1 airlock.internal\n")
        let runEntries = Set((parts.count > 2 ? parts[2] : "").split(separator: "\n").map(String.init))
        let hostRun = Set((try? FileManager.default.contentsOfDirectory(atPath: "/run")) ?? [])
        XCTAssertFalse(hostRun.isEmpty)
        XCTAssertTrue(runEntries.isSubset(of: ["airlock-sandbox", "systemd", "resolvconf", "NetworkManager"]), "unexpected in /run: \(runEntries)")
        XCTAssertTrue(runEntries.intersection(hostRun.subtracting(["systemd", "resolvconf", "NetworkManager"])).isEmpty)
    }

    func testExitCodesArePreserved() throws {
        XCTAssertEqual(try SpawnFixture.run(["true"], user: user, namespace: namespace).status, .exited(0))
        XCTAssertEqual(try SpawnFixture.run(["sh", "-c", "exit 7"], user: user, namespace: namespace).status, .exited(7))
        let killed = try SpawnFixture.run(["sh", "-c", "kill -TERM $$"], user: user, namespace: namespace)
        XCTAssertEqual(killed.status, .signaled(SIGTERM))
        XCTAssertEqual(killed.status.shellCode, 143)
    }

    func testSignalsAreForwardedToTheCommand() throws {
        let outcome = try SpawnFixture.run(
            ["sh", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done"],
            user: user, namespace: namespace,
            whileRunning: { process, output in
                XCTAssertTrue(Wait.until(timeout: 20) { output().contains("ready") }, "command did not start: \(output())")
                try process.signal(SIGTERM)
            })
        XCTAssertEqual(outcome.status, .exited(42), outcome.output)
        XCTAssertTrue(outcome.output.contains("got-term"), outcome.output)
    }

    func testKillingTheInitEndsTheWholeSandbox() throws {
        let outcome = try SpawnFixture.run(
            ["sh", "-c", "echo ready; exec sleep 300"], user: user, namespace: namespace,
            whileRunning: { process, output in
                XCTAssertTrue(Wait.until(timeout: 20) { output().contains("ready") })
                try process.signal(SIGKILL)
            })
        XCTAssertEqual(outcome.status, .signaled(SIGKILL))
    }

    func testCommandNotFoundExits127WithMessage() throws {
        let outcome = try SpawnFixture.run(["no-such-airlock-command"], user: user, namespace: namespace)
        XCTAssertEqual(outcome.status, .exited(127))
        XCTAssertEqual(outcome.output, "airlock: no-such-airlock-command: command not found\n")
    }

    func testNotExecutableExits126() throws {
        let outcome = try SpawnFixture.run(["/etc/hostname"], user: user, namespace: namespace)
        XCTAssertEqual(outcome.status, .exited(126))
        XCTAssertEqual(outcome.output, "airlock: /etc/hostname: permission denied\n")
    }

    func testSetupFailureNamesTheStep() throws {
        XCTAssertThrowsError(try SpawnFixture.run(["true"], user: user, namespace: namespace, cwd: "/nonexistent-airlock-dir")) { error in
            XCTAssertEqual(String(describing: error), "sandbox setup: change directory to /nonexistent-airlock-dir as \(self.user.name): No such file or directory; /nonexistent-airlock-dir does not exist in the sandbox; pass --cwd DIR")
        }
    }

    func testNotANamespaceIsRefusedAtSetns() throws {
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(devNull) }
        let spec = SandboxProcessSpec(argv: ["true"], environment: [:], user: user, networkNamespace: devNull, gatewayAddress: "169.254.200.1", masks: [])
        XCTAssertThrowsError(try SandboxProcess.spawn(spec)) { error in
            XCTAssertEqual(String(describing: error), "sandbox setup: join the sandbox network namespace: Invalid argument")
        }
    }

    func testNoAirlockDescriptorLeaksIntoTheCommand() throws {
        let outcome = try SpawnFixture.run(["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '"], user: user, namespace: namespace)
        XCTAssertEqual(outcome.status, .exited(0))
        // 0, 1, 2 and the descriptor ls itself opens for the directory.
        let fds = outcome.output.split(separator: " ").compactMap { Int($0) }
        XCTAssertEqual(fds.filter { $0 > 2 }.count, 1, "descriptors: \(outcome.output)")
    }

    func testOnlyTheSandboxNetworkIsVisible() throws {
        let outcome = try SpawnFixture.run(["sh", "-c", "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"], user: user, namespace: namespace)
        XCTAssertEqual(outcome.status, .exited(0))
        XCTAssertEqual(outcome.output, "lo\n")
    }

    // MARK: prepared (gated) sandboxes: `airlock run` sets the sandbox up while its gateway
    // starts, and the command must not start before the gateway serves.

    func testAPreparedSandboxStartsTheCommandOnlyWhenTold() throws {
        let (pending, reader) = try prepare(["sh", "-c", "echo started"])
        try waitAtTheGate(pending.pid)
        // Set up, and waiting: no command yet.
        XCTAssertEqual(children(of: pending.pid), [])
        XCTAssertEqual(reader.snapshot(), "")
        let process = try pending.start()
        XCTAssertEqual(process.wait(), .exited(0))
        XCTAssertEqual(reader.finish(), "started\n")
    }

    /// `airlock run` learns how the command ended from the init's report, and reaps the
    /// init (whose teardown of the sandbox overlaps the gateway's drain) only afterwards.
    func testTheCommandStatusIsKnownBeforeTheInitIsReaped() throws {
        let (pending, reader) = try prepare(["sh", "-c", "exit 7"])
        let process = try pending.start()
        XCTAssertEqual(process.commandStatus(), .exited(7))
        XCTAssertEqual(kill(process.pid, 0), 0, "the init was reaped before wait()")
        XCTAssertEqual(process.wait(), .exited(7))
        XCTAssertEqual(kill(process.pid, 0), -1, "wait() did not reap the init")
        XCTAssertEqual(errno, ESRCH)
        XCTAssertEqual(process.commandStatus(), .exited(7))
        XCTAssertEqual(reader.finish(), "")

        // An init killed before it could report: its own status, once it is reaped.
        let (second, secondReader) = try prepare(["sh", "-c", "echo ready; exec sleep 300"])
        let killed = try second.start()
        XCTAssertTrue(Wait.until(timeout: 20) { secondReader.snapshot().contains("ready") })
        XCTAssertEqual(kill(killed.pid, SIGKILL), 0)
        XCTAssertEqual(killed.commandStatus(), .signaled(SIGKILL))
        XCTAssertEqual(kill(killed.pid, 0), -1, "an init that did not report is reaped")
        _ = secondReader.finish()
    }

    /// The init lives as long as the sandbox: it keeps its own pipes and the command's
    /// standard streams, and nothing it inherited (the network namespace it joined, airlock's
    /// sockets and pipes).
    func testTheInitHoldsOnlyItsOwnDescriptors() throws {
        let (pending, reader) = try prepare(["sh", "-c", "echo ready; exec sleep 30"])
        let process = try pending.start()
        defer {
            try? process.signal(SIGKILL)
            _ = process.wait()
            _ = reader.finish()
        }
        XCTAssertTrue(Wait.until(timeout: 20) { reader.snapshot().contains("ready") })
        let directory = "/proc/\(process.pid)/fd"
        let held = try FileManager.default.contentsOfDirectory(atPath: directory).map {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\($0)")) ?? "gone"
        }
        XCTAssertFalse(held.isEmpty)
        XCTAssertFalse(held.contains { $0.hasPrefix("net:[") || $0.hasPrefix("/run/netns/") }, "the init holds a network namespace: \(held)")
        XCTAssertFalse(held.contains { $0.hasPrefix("socket:[") }, "the init holds a socket: \(held)")
        XCTAssertLessThanOrEqual(held.count, 6, "stdio, the command's streams and the status pipe at most: \(held)")
    }

    func testACancelledSandboxStartsNothingAndLeavesNothing() throws {
        let (pending, reader) = try prepare(["sh", "-c", "echo started"])
        let pid = pending.pid
        try waitAtTheGate(pid)
        pending.cancel()
        XCTAssertEqual(reader.finish(), "", "the command ran although the run was given up")
        XCTAssertEqual(kill(pid, 0), -1, "the sandbox init is still there")
        XCTAssertEqual(errno, ESRCH)
    }

    func testAPreparedSandboxReportsItsSetUpFailureWhenStarted() throws {
        // The init fails before the gate and is gone: opening the gate must not raise
        // SIGPIPE (it would kill airlock), and the step is reported.
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(devNull) }
        let (pending, reader) = try prepare(["sh", "-c", "echo started"], networkNamespace: devNull)
        let pid = pending.pid
        XCTAssertTrue(Wait.until(timeout: 20) {
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            return stat.split(separator: ")").last?.hasPrefix(" Z") == true
        }, "the init did not end at its failed step")
        XCTAssertThrowsError(try pending.start()) { error in
            XCTAssertEqual(String(describing: error), "sandbox setup: join the sandbox network namespace: Invalid argument")
        }
        XCTAssertEqual(reader.finish(), "")
        // Failing after the gate (in the command's own set-up) is reported the same way.
        let (late, lateReader) = try prepare(["true"], cwd: "/nonexistent-airlock-dir")
        XCTAssertThrowsError(try late.start()) { error in
            XCTAssertEqual(String(describing: error), "sandbox setup: change directory to /nonexistent-airlock-dir as \(self.user.name): No such file or directory; /nonexistent-airlock-dir does not exist in the sandbox; pass --cwd DIR")
        }
        XCTAssertEqual(lateReader.finish(), "")
    }

    private func prepare(_ argv: [String], cwd: String = "/", networkNamespace: Int32? = nil) throws -> (SandboxProcess.Pending, PipeReader) {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var spec = SandboxProcessSpec(
            argv: argv, environment: ["PATH": "/usr/bin:/bin"], user: user, networkNamespace: networkNamespace ?? namespace.descriptor,
            gatewayAddress: "169.254.200.1", masks: [], workingDirectory: cwd)
        spec.standardStreams = (-1, fds[1], fds[1])
        defer { close(fds[1]) }
        do {
            return (try SandboxProcess.prepare(spec), PipeReader(fds[0]))
        } catch {
            close(fds[0])
            throw error
        }
    }

    /// Waits until the init is blocked reading its gate (`read`, syscall 0 on x86_64): its
    /// set-up is done.
    private func waitAtTheGate(_ pid: pid_t) throws {
        var last = ""
        let blocked = Wait.until(timeout: 20) {
            last = (try? String(contentsOfFile: "/proc/\(pid)/syscall", encoding: .utf8)) ?? ""
            return last.hasPrefix("0 ")
        }
        XCTAssertTrue(blocked, "the init is not waiting at the gate: /proc/\(pid)/syscall: \(last)")
    }

    private func children(of pid: pid_t) -> [String] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? "?"
        return text.split(separator: " ").map(String.init)
    }
}
