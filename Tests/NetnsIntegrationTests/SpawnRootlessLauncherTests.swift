import Foundation
import XCTest
import TestSupport
@testable import Netns

/// The rootless launcher, as root in-process and as an unprivileged user through the binary.
final class SpawnRootlessLauncherTests: XCTestCase {
    override func setUpWithError() throws {
        try RootTier.require()
    }

    /// Runs `script` under the launcher; its fd 3 is a pipe whose content is returned.
    private func launch(_ script: String, extra: [Int32] = []) throws -> (output: String, status: ExitStatus) {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let pid = try RootlessLauncher.start(
            executable: "/bin/sh", arguments: ["-c", script], environment: ["PATH=/usr/bin:/bin"], passing: [fds[1]] + extra)
        close(fds[1])
        let reader = PipeReader(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (reader.finish(), ExitStatus(waitStatus: status))
    }

    func testChildHasMappedIdsAmbientCapabilitiesAndPassedDescriptors() throws {
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(devNull) }
        let result = try launch(
            "cat /proc/self/uid_map /proc/self/gid_map >&3; cat /proc/self/setgroups >&3; grep -E '^Cap(Eff|Amb):' /proc/self/status >&3; readlink /proc/self/fd/4 >&3; ls /proc/self/fd | sort -n | tr '\\n' ' ' >&3",
            extra: [devNull])
        XCTAssertEqual(result.status, .exited(0), result.output)
        let lines = result.output.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") }
        XCTAssertEqual(lines.first, "0 0 1", "root maps to itself")
        XCTAssertEqual(lines.dropFirst().first, "0 0 1")
        XCTAssertEqual(lines.dropFirst(2).first, "deny")
        let expected = RootlessLauncher.sandboxBuilderCapabilities.reduce(UInt64(0)) { $0 | (1 << UInt64($1.rawValue)) }
        XCTAssertTrue(lines.contains("CapAmb: " + String(format: "%016llx", expected)), result.output)
        XCTAssertTrue(lines.contains("/dev/null"), "fd 4 is the second passed descriptor: \(result.output)")
        XCTAssertEqual(lines.last, "0 1 2 3 4 5", "only stdio, the two passed descriptors and ls's own: \(result.output)")
    }

    func testChildIsInNewNetworkAndMountNamespaces() throws {
        let result = try launch("readlink /proc/self/ns/net /proc/self/ns/mnt /proc/self/ns/user >&3")
        XCTAssertEqual(result.status, .exited(0))
        let mine = ["net", "mnt", "user"].map { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/\($0)")) ?? "" }
        let theirs = result.output.split(separator: "\n").map(String.init)
        XCTAssertEqual(theirs.count, 3)
        for (a, b) in zip(mine, theirs) { XCTAssertNotEqual(a, b) }
    }

    func testMissingExecutableNamesTheStep() {
        XCTAssertThrowsError(try RootlessLauncher.start(executable: "/nonexistent/airlock-builder", arguments: [], environment: [], passing: [])) { error in
            XCTAssertEqual(String(describing: error), "sandbox setup: execute: No such file or directory")
        }
    }

    func testUnprivilegedUserGetsMappedUidAndNetAdminInItsNamespace() throws {
        let user = try SpawnFixture.testUser()
        // A copy the test user can execute, wherever the checkout is (a clone under /root).
        let dir = try TemporaryDirectory(prefix: "airlock-launcher")
        chmod(dir.path, 0o755)
        let binary = try dir.copyOfAirlock()
        let result = try Run.process([
            "setpriv", "--reuid", String(user.uid), "--regid", String(user.gid), "--init-groups", "--",
            binary, "doctor", "--json",
        ], currentDirectory: dir.path)
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let checks = json?["checks"] as? [[String: Any]] ?? []
        let launch = checks.first { $0["name"] as? String == "rootless launch" }
        XCTAssertEqual(launch?["ok"] as? Bool, true, result.description)
        let detail = launch?["detail"] as? String ?? ""
        XCTAssertTrue(detail.hasPrefix("child runs as uid \(user.uid) with "), detail)
        XCTAssertTrue(detail.contains("CAP_NET_ADMIN"), detail)
        XCTAssertTrue(detail.contains("CAP_SYS_ADMIN"), detail)
        XCTAssertFalse(detail.contains("CAP_NET_RAW"), "not kept: \(detail)")
        let root = checks.first { $0["name"] as? String == "root" }
        XCTAssertEqual(root?["ok"] as? Bool, false)
        let verdicts = json?["verdicts"] as? [[String: Any]] ?? []
        XCTAssertEqual(verdicts.first { $0["mode"] as? String == "run (rootless)" }?["ready"] as? Bool, true, result.stdout)
        XCTAssertEqual(verdicts.first { $0["mode"] as? String == "run (as root)" }?["ready"] as? Bool, false)
    }
}
