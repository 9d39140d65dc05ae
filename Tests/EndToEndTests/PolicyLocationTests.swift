import Foundation
import TestSupport
import XCTest

/// The default policy locations as root: `/etc/airlock/policy` plus
/// `/etc/airlock/policy.d/*.conf`, read the same way by `run` and `gateway serve` when
/// `--policy` is not given. Root tier only: `/etc` is an overlay of the throwaway namespace,
/// so writing `/etc/airlock` there never reaches the host.
final class PolicyLocationTests: XCTestCase {
    let etc = "/etc/airlock"
    var dropIns: String { etc + "/policy.d" }

    override func tearDown() {
        if getuid() == 0 && ProcessInfo.processInfo.environment["AIRLOCK_THROWAWAY_NS"] == "1" {
            try? FileManager.default.removeItem(atPath: etc)
        }
    }

    /// A fresh `/etc/airlock` with a main file and the given drop-ins (name → text), 0644.
    func writeEtc(main: String, dropIns files: [String: String]) throws {
        try? FileManager.default.removeItem(atPath: etc)
        try FileManager.default.createDirectory(atPath: dropIns, withIntermediateDirectories: true)
        chmod(etc, 0o755)
        chmod(dropIns, 0o755)
        try write(main, to: etc + "/policy")
        for (name, text) in files { try write(text, to: dropIns + "/" + name) }
    }

    func write(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, mode)
    }

    /// A host named only in a drop-in is reachable from `run` and from a sandbox of
    /// `gateway serve`; a name in a file that is not `*.conf` is not; `gateway serve` takes
    /// a drop-in added while it runs without a restart or SIGHUP, and refuses, keeping the
    /// old policy, one that another account could change.
    func testRunAndServeReadTheDropInsAndServeTakesANewOne() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-policy-d")
        chmod(dir.path, 0o755)
        let http = try WebUpstream(port: 80)
        defer { http.stop() }
        try writeEtc(main: "# the main file names no host\nallow-private 127.0.0.1/32\n", dropIns: [
            "10-web.conf": "dropin.test\nresolve dropin.test=127.0.0.1\n",
            "notes.txt": "ignored.test\nresolve ignored.test=127.0.0.1\n",
        ])

        // run: reads the set once.
        let run = try Run.process(
            [TestPaths.airlock, "run", "--user", "nobody", "--", "/bin/sh", "-c",
             "curl -sS --max-time 10 http://dropin.test/run; echo; curl -sS --max-time 10 http://ignored.test/x; echo"],
            environment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C"],
            currentDirectory: dir.path, timeout: 120)
        XCTAssertEqual(run.status, 0, "\(run)")
        XCTAssertTrue(run.stdout.contains("host=dropin.test path=/run"), "\(run)")
        XCTAssertTrue(run.stdout.contains("airlock: ignored.test is not on the allowlist; add it to /etc/airlock/policy or pass --allow ignored.test"), "\(run)")

        // gateway serve: the same set, watched.
        let audit = dir.file("audit.jsonl")
        let name = "pold\(getpid() % 10000)"
        XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        let gateway = try BackgroundProcess([TestPaths.airlock, "gateway", "serve", name, "--audit-log", audit])
        defer { gateway.stop() }
        XCTAssertTrue(Wait.until(timeout: 30) {
            (try? self.inside(name, cwd: dir.path, "curl -sS --max-time 2 http://airlock.internal/healthz").stdout)?.hasPrefix("ok") == true
        }, "the gateway answers its health endpoint")
        let before = try inside(name, cwd: dir.path, """
            curl -sS --max-time 10 -x http://169.254.200.1:3128 http://dropin.test/serve; echo
            curl -sS --max-time 10 -x http://169.254.200.1:3128 http://later.test/; echo
            """)
        XCTAssertTrue(before.stdout.contains("host=dropin.test path=/serve"), "\(before)")
        XCTAssertTrue(before.stdout.contains("airlock: later.test is not on the allowlist"), "\(before)")

        // A new drop-in, no SIGHUP: taken once it held still.
        try write("later.test\nresolve later.test=127.0.0.1\n", to: dropIns + "/20-later.conf")
        XCTAssertTrue(Wait.until(timeout: 15) {
            (try? self.inside(name, cwd: dir.path, "curl -sS --max-time 5 -x http://169.254.200.1:3128 http://later.test/new").stdout)?
                .contains("host=later.test path=/new") == true
        }, "a drop-in added while serving is taken: \(auditLines(audit))")
        XCTAssertTrue(auditLines(audit).contains { $0.contains(#""event":"policy_reload""#) && $0.contains(#""ok":true"#) })

        // A drop-in any account could write: the reload is refused, the old policy stays.
        try write("open.test\n", to: dropIns + "/30-open.conf", mode: 0o666)
        XCTAssertTrue(Wait.until(timeout: 15) {
            self.auditLines(audit).contains {
                $0.contains(#""ok":false"#)
                    && $0.contains("/etc/airlock/policy.d/30-open.conf: /etc/airlock/policy.d/30-open.conf can be changed by an account other than root")
            }
        }, "\(auditLines(audit))")
        let kept = try inside(name, cwd: dir.path, "curl -sS --max-time 10 -x http://169.254.200.1:3128 http://later.test/kept; echo")
        XCTAssertTrue(kept.stdout.contains("host=later.test path=/kept"), "the old policy stays: \(kept)")

        // Removing a drop-in is a change too.
        try FileManager.default.removeItem(atPath: dropIns + "/30-open.conf")
        try FileManager.default.removeItem(atPath: dropIns + "/20-later.conf")
        XCTAssertTrue(Wait.until(timeout: 15) {
            (try? self.inside(name, cwd: dir.path, "curl -sS --max-time 5 -x http://169.254.200.1:3128 http://later.test/gone").stdout)?
                .contains("later.test is not on the allowlist") == true
        }, "a removed drop-in's hosts are gone: \(auditLines(audit))")
    }

    /// At start, both commands refuse a drop-in or a `policy.d` another account could change
    /// (one line naming the path), and a drop-in that does not parse (`FILE:LINE: problem`):
    /// `run` exits 125, `gateway serve` 1, before anything is built.
    func testRunAndServeRefuseAWritableOrBadDropIn() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-policy-d")
        chmod(dir.path, 0o755)
        let name = "polr\(getpid() % 10000)"
        XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        let marker = dir.file("ran")

        func both(_ expected: (run: String, serve: String), _ why: String) throws {
            let run = try Run.process(
                [TestPaths.airlock, "run", "--user", "nobody", "--", "/bin/touch", marker],
                environment: ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent"], currentDirectory: dir.path, timeout: 60)
            XCTAssertEqual(run.status, 125, "\(why): \(run)")
            XCTAssertEqual(run.stderr, "airlock: error: " + expected.run + "\n", "\(why): \(run)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "\(why): the command never ran")
            let serve = try Run.airlock(["gateway", "serve", name], timeout: 30)
            XCTAssertEqual(serve.status, 1, "\(why): \(serve)")
            XCTAssertEqual(serve.stderr, "airlock: error: " + expected.serve + "\n", "\(why): \(serve)")
        }

        try writeEtc(main: "", dropIns: ["10-open.conf": "open.test\n"])
        chmod(dropIns + "/10-open.conf", 0o666)
        let file = "policy /etc/airlock/policy.d/10-open.conf: /etc/airlock/policy.d/10-open.conf can be changed by an account other than root"
        let fix = "; make the file and its directories root-owned and not group- or world-writable"
        try both((file + fix, file + ", and the gateway reloads the policy from it" + fix), "a world-writable drop-in")

        try writeEtc(main: "", dropIns: [:])
        chmod(dropIns, 0o777)
        let directory = "policy /etc/airlock/policy.d: /etc/airlock/policy.d can be changed by an account other than root"
        try both((directory + fix, directory + ", and the gateway reloads the policy from it" + fix), "a world-writable, empty policy.d")

        try writeEtc(main: "pypi.org\n", dropIns: ["10-ok.conf": "crates.io\n", "20-bad.conf": "example.org\n@pipy\n"])
        let bad = "/etc/airlock/policy.d/20-bad.conf:2: unknown preset @pipy (known: @anthropic-api, @cargo, @debian, @gemini-api, @github, @github-api, @go, @maven, @npm, @openai-api, @pypi, @rubygems)"
        try both((bad, bad), "a drop-in that does not parse")
    }

    /// Runs `script` inside the sandbox `name` as nobody.
    func inside(_ name: String, cwd: String, _ script: String) throws -> ProcessResult {
        try Run.airlock(["netns", "exec", name, "--user", "nobody", "--cwd", cwd, "--", "/bin/sh", "-c", script], timeout: 60)
    }

    func auditLines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
}
