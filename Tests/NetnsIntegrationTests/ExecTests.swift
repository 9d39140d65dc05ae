import Foundation
import XCTest
import TestSupport
@testable import Netns

/// `airlock netns exec` through the built binary, against a sandbox made by `airlock netns create`.
/// Root tier: runs only inside scripts/in-throwaway-ns.
final class ExecTests: XCTestCase {
    var sandbox = ""
    var user: SandboxUser!

    override func setUpWithError() throws {
        try RootTier.require()
        guard FileManager.default.isExecutableFile(atPath: TestPaths.airlock) else { throw Precondition.unmet("airlock binary not built") }
        user = try SpawnFixture.testUser()
        sandbox = "ex\(getpid() % 10000)\(Int.random(in: 10...99))"
        let created = try Run.airlock(["netns", "create", sandbox, "--gateway-address", "169.254.201.1/30", "--sandbox-address", "169.254.201.2/30"])
        XCTAssertEqual(created.status, 0, created.description)
    }

    override func tearDown() {
        if !sandbox.isEmpty { _ = try? Run.airlock(["netns", "destroy", sandbox]) }
    }

    /// The environment of a sudo call by the test user.
    private var sudoEnvironment: [String: String] {
        ["PATH": "/usr/bin:/bin", "SUDO_UID": String(user.uid), "SUDO_GID": String(user.gid), "LANG": "C"]
    }

    private func exec(_ command: [String], options: [String] = [], environment: [String: String]? = nil) throws -> ProcessResult {
        try Run.airlock(["netns", "exec", sandbox] + options + ["--cwd", "/", "--"] + command, environment: environment ?? sudoEnvironment)
    }

    func testRunsAsTheSudoUserWithNothingPrivileged() throws {
        let result = try exec(["sh", "-c", "id -u; id -g; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status"])
        XCTAssertEqual(result.status, 0, result.description)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(Array(lines.prefix(2)), [String(user.uid), String(user.gid)])
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            XCTAssertTrue(lines.contains("\(set):\t0000000000000000"), "\(set): \(result.stdout)")
        }
        XCTAssertTrue(lines.contains("NoNewPrivs:\t1"))
    }

    func testSandboxSeesItsGatewayAndOnlyItsProcesses() throws {
        let result = try exec(["sh", "-c", "cat /etc/resolv.conf; grep airlock.internal /etc/hosts; ls /proc | grep -cE '^[0-9]+$'; ip -o -4 addr show 2>/dev/null | grep -c 169.254.201.2 || cat /proc/net/dev | grep -c :"])
        XCTAssertEqual(result.status, 0, result.description)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "nameserver 169.254.201.1")
        XCTAssertEqual(lines.dropFirst().first, "169.254.201.1 airlock.internal")
        XCTAssertLessThanOrEqual(Int(lines.dropFirst(2).first ?? "") ?? 99, 5, "only sandbox PIDs: \(result.stdout)")
    }

    func testDefaultMasksAreAppliedAndListed() throws {
        let ssh = user.home + "/.ssh"
        try FileManager.default.createDirectory(atPath: ssh, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: ssh + "/id_ed25519", contents: Data("KEY".utf8))
        FileManager.default.createFile(atPath: user.home + "/.netrc", contents: Data("machine m password p".utf8))
        chown(ssh, user.uid, user.gid)
        defer {
            try? FileManager.default.removeItem(atPath: ssh)
            try? FileManager.default.removeItem(atPath: user.home + "/.netrc")
        }
        let result = try exec(["sh", "-c", "ls -A ~/.ssh | wc -l; wc -c < ~/.netrc"])
        XCTAssertEqual(result.status, 0, result.description)
        XCTAssertEqual(result.stdout, "0\n0\n")
        let masked = result.stderr.split(separator: "\n").first { $0.hasPrefix("airlock: masked ") }.map(String.init) ?? ""
        XCTAssertTrue(masked.contains(ssh), result.stderr)
        XCTAssertTrue(masked.contains("\(user.home)/.netrc"), result.stderr)
    }

    func testExtraMaskAndRelativeMaskRefused() throws {
        // Under /home (an overlay in the throwaway namespace): /tmp inside is a fresh one.
        let dir = "/home/airlock-exec-mask-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/secret", contents: Data("s".utf8))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir, 0o755)
        let result = try exec(["ls", "-A", dir], options: ["--mask", dir])
        XCTAssertEqual(result.status, 0, result.description)
        XCTAssertEqual(result.stdout, "")
        let refused = try exec(["true"], options: ["--mask", "relative/path"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertEqual(refused.stderr, "airlock: error: mask path 'relative/path' is not absolute\n")
    }

    func testCredentialVariablesAreDroppedByNameOnly() throws {
        var environment = sudoEnvironment
        environment["GH_TOKEN"] = "ghp_exec_test_value"
        environment["AWS_SECRET_ACCESS_KEY"] = "aws_exec_test_value"
        let result = try exec(["env"], options: ["--env", "EXTRA=1"], environment: environment)
        XCTAssertEqual(result.status, 0, result.description)
        XCTAssertTrue(result.stderr.contains("airlock: not passed to the sandbox (credential-looking): AWS_SECRET_ACCESS_KEY, GH_TOKEN\n"), result.stderr)
        for output in [result.stdout, result.stderr] {
            XCTAssertFalse(output.contains("ghp_exec_test_value"))
            XCTAssertFalse(output.contains("aws_exec_test_value"))
        }
        XCTAssertTrue(result.stdout.contains("EXTRA=1\n"))
        XCTAssertTrue(result.stdout.contains("HTTPS_PROXY=http://airlock.internal:3128\n"))
        XCTAssertTrue(result.stdout.contains("HOME=\(user.home)\n"))
    }

    func testExitStatusesLikeAShell() throws {
        XCTAssertEqual(try exec(["true"]).status, 0)
        XCTAssertEqual(try exec(["sh", "-c", "exit 7"]).status, 7)
        XCTAssertEqual(try exec(["sh", "-c", "kill -TERM $$"]).status, 128 + SIGTERM)
        let missing = try exec(["no-such-airlock-command"])
        XCTAssertEqual(missing.status, 127)
        XCTAssertTrue(missing.stderr.hasSuffix("airlock: no-such-airlock-command: command not found\n"), missing.stderr)
    }

    func testSignalToAirlockIsForwarded() throws {
        // timeout(1) sends SIGTERM to airlock once the command has run for 3 s and, with
        // --preserve-status, exits with airlock's status: 42 only if the trap in the
        // sandbox got the TERM that airlock forwarded. --foreground: to airlock alone;
        // without it timeout also signals its whole process group, which the sandbox is
        // in, so the command would get the TERM whether airlock forwarded it or not (and,
        // racing with the forwarded one, twice).
        let result = try Run.process(
            ["timeout", "--foreground", "--preserve-status", "-s", "TERM", "3", TestPaths.airlock, "netns", "exec", sandbox, "--cwd", "/", "--",
             "sh", "-c", "trap 'echo got-term; exit 42' TERM; while :; do sleep 0.05; done"],
            environment: sudoEnvironment, timeout: 60)
        XCTAssertEqual(result.status, 42, result.description)
        XCTAssertEqual(result.stdout, "got-term\n")
    }

    func testRootWithoutSudoMustNameTheUser() throws {
        let result = try exec(["true"], environment: ["PATH": "/usr/bin:/bin"])
        XCTAssertEqual(result.status, 125)
        XCTAssertEqual(result.stderr, "airlock: error: no user to run as: pass --user USER (an ordinary account; airlock never runs sandboxed commands as the host's root)\n")
        let asRoot = try exec(["id", "-u"], options: ["--user", "root"], environment: ["PATH": "/usr/bin:/bin"])
        XCTAssertEqual(asRoot.status, 125, asRoot.description)
        XCTAssertEqual(asRoot.stdout, "", "nothing ran")
        XCTAssertTrue(asRoot.stderr.hasPrefix("airlock: error: --user root: uid 0 is the host's root"), asRoot.stderr)
    }

    func testUnknownUserAndMissingSandboxAreClearErrors() throws {
        let unknown = try exec(["true"], options: ["--user", "no-such-airlock-user"])
        XCTAssertEqual(unknown.status, 125)
        XCTAssertEqual(unknown.stderr, "airlock: error: unknown user 'no-such-airlock-user'\n")
        let missing = try Run.airlock(["netns", "exec", "nosuchsbx", "--", "true"], environment: sudoEnvironment)
        XCTAssertEqual(missing.status, 125, missing.description)
        XCTAssertTrue(missing.stderr.hasPrefix("airlock: error: "), missing.stderr)
        XCTAssertTrue(missing.stderr.contains("nosuchsbx"), missing.stderr)
    }
}
