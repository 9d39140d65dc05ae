import XCTest
@testable import Netns

final class SpawnTests: XCTestCase {
    func testCommandWithSlashIsTriedAsGiven() {
        XCTAssertEqual(ExecutableSearch.candidates(for: "./run.sh", path: "/usr/bin:/bin"), ["./run.sh"])
        XCTAssertEqual(ExecutableSearch.candidates(for: "/bin/true", path: "/usr/bin"), ["/bin/true"])
    }

    func testBareCommandIsSearchedInPathOrder() {
        XCTAssertEqual(
            ExecutableSearch.candidates(for: "git", path: "/usr/local/bin:/usr/bin/:/bin"),
            ["/usr/local/bin/git", "/usr/bin/git", "/bin/git"])
    }

    func testEmptyPathEntryMeansCurrentDirectory() {
        XCTAssertEqual(ExecutableSearch.candidates(for: "tool", path: ":/bin"), ["./tool", "/bin/tool"])
        XCTAssertEqual(ExecutableSearch.candidates(for: "tool", path: "/bin:"), ["/bin/tool", "./tool"])
    }

    func testUnsetPathFallsBackToStandardDirectories() {
        XCTAssertEqual(ExecutableSearch.candidates(for: "ls", path: nil), ["/usr/local/bin/ls", "/usr/bin/ls", "/bin/ls"])
    }

    func testEmptyCommandHasNoCandidates() {
        XCTAssertEqual(ExecutableSearch.candidates(for: "", path: "/bin"), [])
    }

    func testExitStatusFromWaitStatus() {
        XCTAssertEqual(ExitStatus(waitStatus: 0), .exited(0))
        XCTAssertEqual(ExitStatus(waitStatus: 7 << 8), .exited(7))
        XCTAssertEqual(ExitStatus(waitStatus: 127 << 8), .exited(127))
        XCTAssertEqual(ExitStatus(waitStatus: SIGTERM), .signaled(SIGTERM))
        XCTAssertEqual(ExitStatus(waitStatus: SIGKILL | 0x80), .signaled(SIGKILL), "core-dump bit is not part of the signal")
    }

    func testShellCodeIsCodeOr128PlusSignal() {
        XCTAssertEqual(ExitStatus.exited(0).shellCode, 0)
        XCTAssertEqual(ExitStatus.exited(7).shellCode, 7)
        XCTAssertEqual(ExitStatus.signaled(SIGTERM).shellCode, 143)
        XCTAssertEqual(ExitStatus.signaled(SIGKILL).shellCode, 137)
    }

    func testEmptyCommandIsRefusedBeforeAnythingStarts() {
        let user = SandboxUser(uid: 65534, gid: 65534, groups: [], home: "/nonexistent", name: "nobody")
        let spec = SandboxProcessSpec(argv: [], environment: [:], user: user, networkNamespace: -1, gatewayAddress: "169.254.200.1", masks: [])
        XCTAssertThrowsError(try SandboxProcess.spawn(spec)) { error in
            XCTAssertEqual(error as? SandboxProcess.SpawnError, .emptyCommand)
            XCTAssertEqual(String(describing: error), "no command to run")
        }
    }

    /// What the kernel would cut or split differently is refused before anything starts: a
    /// NUL in an argument or a variable, an `=` in a variable's name, even when a combining
    /// mark follows it and makes one character of the two.
    func testStringsTheKernelWouldReadOtherwiseAreRefused() {
        let user = SandboxUser(uid: 65534, gid: 65534, groups: [], home: "/nonexistent", name: "nobody")
        let cases: [([String], [String: String], String)] = [
            (["true", "a\0b"], [:], "argument 'a\0b'"),
            (["true"], ["A": "x\0y"], "environment variable 'A'"),
            (["true"], ["A\0B": "x"], "environment variable 'A\0B'"),
            (["true"], ["A=\u{301}B": "x"], "environment variable 'A=\u{301}B'"),
        ]
        for (argv, environment, what) in cases {
            let spec = SandboxProcessSpec(argv: argv, environment: environment, user: user, networkNamespace: -1, gatewayAddress: "169.254.200.1", masks: [])
            XCTAssertThrowsError(try SandboxProcess.spawn(spec), "\(argv) \(environment)") { error in
                XCTAssertEqual(error as? SandboxProcess.SpawnError, .invalidString(what))
            }
        }
    }

    func testExtraEnvironmentIsMergedLast() {
        let user = SandboxUser(uid: 1000, gid: 1000, groups: [], home: "/home/u", name: "u")
        var spec = SandboxProcessSpec(argv: ["true"], environment: ["A": "1", "B": "2"], user: user, networkNamespace: -1, gatewayAddress: "169.254.200.1", masks: [])
        spec.extraEnvironment = ["B": "session", "GIT_CONFIG_COUNT": "1"]
        XCTAssertEqual(spec.finalEnvironment, ["A": "1", "B": "session", "GIT_CONFIG_COUNT": "1"])
    }

    func testEtcFilesContent() {
        let files = SandboxEtcFiles(gateway: "169.254.200.1", etc: "/nonexistent-etc")
        XCTAssertEqual(files.resolvConf, "nameserver 169.254.200.1\n")
        XCTAssertEqual(files.hosts, "127.0.0.1 localhost\n::1 localhost\n169.254.200.1 airlock.internal\n")
        XCTAssertNil(files.resolvConfTarget)
    }

    func testResolvConfLinkIntoRunIsFollowed() {
        XCTAssertEqual(SandboxEtcFiles.runTarget(link: "../run/systemd/resolve/stub-resolv.conf", directory: "/etc"), "/run/systemd/resolve/stub-resolv.conf")
        XCTAssertEqual(SandboxEtcFiles.runTarget(link: "/run/resolvconf/resolv.conf", directory: "/etc"), "/run/resolvconf/resolv.conf")
        XCTAssertEqual(SandboxEtcFiles.runTarget(link: "/var/run/NetworkManager/resolv.conf", directory: "/etc"), "/var/run/NetworkManager/resolv.conf")
        XCTAssertNil(SandboxEtcFiles.runTarget(link: "/usr/lib/systemd/resolv.conf", directory: "/etc"))
        XCTAssertNil(SandboxEtcFiles.runTarget(link: "/run", directory: "/etc"), "the tmpfs root itself is not a file")
    }

    func testRealSymlinksAreReadRelativeToTheirDirectory() throws {
        let dir = try TemporaryDirectoryForSpawn()
        // /tmp/airlock-spawn.X/../run/… is /tmp/run/…: not under /run, so it is bound over instead.
        XCTAssertEqual(symlink("../run/systemd/resolve/stub-resolv.conf", dir.path + "/resolv.conf"), 0)
        XCTAssertEqual(symlink("/run/airlock-test/hosts", dir.path + "/hosts"), 0)
        let files = SandboxEtcFiles(gateway: "10.0.0.1", etc: dir.path)
        XCTAssertNil(files.resolvConfTarget)
        XCTAssertEqual(files.hostsTarget, "/run/airlock-test/hosts")
    }

    func testSetupErrorNamesTheStep() {
        let error = SandboxSetupError(step: "mount proc on /proc", code: EPERM)
        XCTAssertEqual(error.description, "sandbox setup: mount proc on /proc: Operation not permitted")
    }
}

/// A directory under /tmp at depth one, so relative links from it resolve predictably.
final class TemporaryDirectoryForSpawn {
    let path: String
    init() throws {
        var template = Array("/tmp/airlock-spawn.XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = String(cString: p)
    }
    deinit {
        _ = unlink(path + "/resolv.conf")
        _ = unlink(path + "/hosts")
        _ = rmdir(path)
    }
}
