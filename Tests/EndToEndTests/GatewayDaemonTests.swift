import Foundation
import TestSupport
import XCTest

/// `airlock gateway serve --all`: one daemon serving two sandboxes made by `airlock netns
/// create`, each with its own policy, sessions and audit lines, managed through the
/// daemon socket (`airlock gateway request …`).
final class GatewayDaemonTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var names: [String] = []

    override func setUpWithError() throws {
        try RootTier.require()
        dir = try TemporaryDirectory(prefix: "airlock-daemon-e2e")
        chmod(dir.path, 0o755)
        let base = getpid() % 10000
        names = ["da\(base)", "db\(base)"]
        for name in names {
            XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        }
    }

    override func tearDownWithError() throws {
        for name in names { _ = try? Run.airlock(["netns", "destroy", name]) }
    }

    /// A policy allowing `host` (resolved to the local stand-in upstream).
    private func writePolicy(_ path: String, allowing host: String) throws {
        try "\(host)\nresolve \(host)=127.0.0.1\nallow-private 127.0.0.1/32\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
    }

    /// Starts the daemon with `policies/NAME.policy` for each sandbox; waits until both serve.
    private func startDaemon(audit: String) throws -> BackgroundProcess {
        let daemon = try BackgroundProcess([TestPaths.airlock, "gateway", "serve", "--all", "--policy-dir", dir.file("policies"),
                                            "--audit-log", audit])
        XCTAssertTrue(Wait.until(timeout: 30) {
            let list = try? Run.airlock(["gateway", "request", "list"])
            return list?.stdout.split(separator: "\n").count == 2
        }, "the daemon serves both sandboxes")
        return daemon
    }

    private func fetch(_ name: String, _ host: String) throws -> String {
        // --cwd /: nobody may not be able to enter the directory the tests run from (a checkout under /root).
        let r = try Run.airlock(["netns", "exec", name, "--user", "nobody", "--cwd", "/", "--", "/bin/sh", "-c",
                                 "curl -sS --max-time 10 -x http://169.254.200.1:3128 http://\(host)/p; echo"], timeout: 60)
        return r.stdout + r.stderr
    }

    private func auditEvents(_ path: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Each sandbox allows what its own policy allows and refuses the other's; a session made
    /// on one sandbox's control socket is unknown to the other; audit lines name the sandbox.
    func testEachSandboxKeepsItsOwnPolicySessionsAndAudit() throws {
        let (a, b) = (names[0], names[1])
        mkdir(dir.file("policies"), 0o755)
        try writePolicy(dir.file("policies/\(a).policy"), allowing: "a.test")
        try writePolicy(dir.file("policies/\(b).policy"), allowing: "b.test")
        let upstream = try WebUpstream(port: 80)
        defer { upstream.stop() }
        let audit = dir.file("audit.jsonl")
        let daemon = try startDaemon(audit: audit)
        defer { daemon.stop() }

        let list = try Run.airlock(["gateway", "request", "list"])
        XCTAssertEqual(list.stdout, "\(a) 169.254.200.1 \(dir.file("policies/\(a).policy"))\n\(b) 169.254.200.1 \(dir.file("policies/\(b).policy"))\n")

        XCTAssertEqual(try fetch(a, "a.test"), "host=a.test path=/p\n")
        XCTAssertTrue(try fetch(a, "b.test").contains("airlock: b.test is not on the allowlist"))
        XCTAssertEqual(try fetch(b, "b.test"), "host=b.test path=/p\n")
        XCTAssertTrue(try fetch(b, "a.test").contains("airlock: a.test is not on the allowlist"))

        let created = try Run.airlock(["session", "create", a, "--repo", "github.com/owner/repo"], stdin: "real-token\n")
        XCTAssertEqual(created.status, 0, "\(created)")
        let token = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(token.hasPrefix("airlock_s_"))
        XCTAssertEqual(try Run.airlock(["session", "list", b]).stderr, "airlock: no live sessions for \(b)\n")
        // The token goes in as git would send it (a file here: exec keeps credential-looking
        // variables out of the sandbox).
        try token.write(toFile: dir.file("token"), atomically: true, encoding: .utf8)
        chmod(dir.file("token"), 0o644)
        let onB = try Run.airlock(["netns", "exec", b, "--user", "nobody", "--cwd", dir.path, "--", "/bin/sh", "-c",
                                   "curl -sS --max-time 10 -u x-access-token:$(cat token) 'http://airlock.internal/git/github.com/owner/repo.git/info/refs?service=git-upload-pack' -w ' %{http_code}'"])
        XCTAssertTrue(onB.stdout.hasSuffix("airlock: the session token is not known to this gateway\n 401"), "\(onB)")
        XCTAssertEqual(try Run.airlock(["session", "list", a]).stdout.split(separator: "\n").count, 2, "the session lives on \(a)")

        let events = auditEvents(audit)
        let allowed = events.filter { $0["event"] as? String == "egress_allow" }
        XCTAssertEqual(Set(allowed.map { "\($0["sandbox"] ?? "") \($0["host"] ?? "")" }), ["\(a) a.test", "\(b) b.test"], "\(allowed)")
        let denied = events.filter { $0["event"] as? String == "egress_deny" }
        XCTAssertEqual(Set(denied.map { "\($0["sandbox"] ?? "") \($0["host"] ?? "")" }), ["\(a) b.test", "\(b) a.test"], "\(denied)")
        XCTAssertEqual(events.first { $0["event"] as? String == "session_create" }?["sandbox"] as? String, a)

        // SIGTERM drains every sandbox, then the daemon exits cleanly.
        let stopped = daemon.stop()
        XCTAssertEqual(stopped.status, 0, "\(stopped.stderr)")
        XCTAssertTrue(stopped.stderr.contains("gateway for \(a): draining") && stopped.stderr.contains("gateway for \(b): draining"),
                      stopped.stderr)
        XCTAssertFalse(try fetch(a, "a.test").contains("host=a.test"), "nothing serves \(a) after the daemon stopped")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/airlock/gateway.sock"),
                       "a daemon that stopped cleanly leaves no socket behind")
    }

    /// A SIGTERM the moment the daemon's socket appears (a service manager stopping a unit it
    /// has just started) is taken once the daemon watches for it: a clean exit, status 0,
    /// with its socket removed, never a death by the signal's default action. A SIGHUP then
    /// (a reload just after a start) does not kill it either.
    func testAStopAsSoonAsTheSocketAppearsIsClean() throws {
        mkdir(dir.file("policies"), 0o755)
        for name in names { try writePolicy(dir.file("policies/\(name).policy"), allowing: "\(name).test") }
        let socket = "/run/airlock/gateway.sock"
        unlink(socket)
        for round in 0..<3 {
            let daemon = try BackgroundProcess([TestPaths.airlock, "gateway", "serve", "--all", "--policy-dir", dir.file("policies")])
            let deadline = Date().addingTimeInterval(20)
            while access(socket, F_OK) != 0 && daemon.isRunning && Date() < deadline { usleep(100) }
            XCTAssertEqual(access(socket, F_OK), 0, "round \(round): the daemon made its socket")
            let stopped = daemon.stop()
            XCTAssertEqual(daemon.process.terminationReason, .exit, "round \(round): \(stopped)")
            XCTAssertEqual(stopped.status, 0, "round \(round): \(stopped)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "round \(round): the socket was removed")
        }
        let daemon = try BackgroundProcess([TestPaths.airlock, "gateway", "serve", "--all", "--policy-dir", dir.file("policies")])
        let deadline = Date().addingTimeInterval(20)
        while access(socket, F_OK) != 0 && daemon.isRunning && Date() < deadline { usleep(100) }
        kill(daemon.pid, SIGHUP)
        XCTAssertTrue(Wait.until(timeout: 30) { (try? Run.airlock(["gateway", "request", "list"]))?.stdout.split(separator: "\n").count == 2 },
                      "the daemon lived through an early SIGHUP and serves both sandboxes")
        let stopped = daemon.stop()
        XCTAssertEqual(daemon.process.terminationReason, .exit, "\(stopped)")
        XCTAssertEqual(stopped.status, 0, "\(stopped)")
    }

    /// The daemon socket: stop leaves the other sandbox serving and the sandbox can be served
    /// again; refusals (unknown sandbox, a policy other accounts could change, a missing
    /// policy, a non-root caller) come back as one line and change nothing; a policy that
    /// does not parse keeps the old one; every request is audited with the caller.
    func testDaemonRequestsAndRefusals() throws {
        let (a, b) = (names[0], names[1])
        mkdir(dir.file("policies"), 0o755)
        try writePolicy(dir.file("policies/\(a).policy"), allowing: "a.test")
        try writePolicy(dir.file("policies/\(b).policy"), allowing: "b.test")
        let upstream = try WebUpstream(port: 80)
        defer { upstream.stop() }
        let audit = dir.file("audit.jsonl")
        let daemon = try startDaemon(audit: audit)
        defer { daemon.stop() }

        // The helper that opens sandboxes keeps uid 0 with CAP_SYS_ADMIN and CAP_NET_BIND_SERVICE alone.
        let helper = try Run.process(["pgrep", "-P", String(daemon.pid)]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let status = try String(contentsOfFile: "/proc/\(helper)/status", encoding: .utf8)
        for line in ["CapEff:\t0000000000200400", "CapPrm:\t0000000000200400", "CapBnd:\t0000000000200400", "NoNewPrivs:\t1"] {
            XCTAssertTrue(status.contains(line + "\n"), "helper \(helper): \(line) in \(status)")
        }
        XCTAssertTrue(try String(contentsOfFile: "/proc/\(daemon.pid)/status", encoding: .utf8).contains("CapEff:\t0000000000000000\n"),
                      "the daemon itself has no capability")

        let unknown = try Run.airlock(["gateway", "request", "serve", "nosuch"])
        XCTAssertEqual(unknown.status, 1)
        XCTAssertEqual(unknown.stderr, "airlock: error: no sandbox named \"nosuch\"\n")
        let weak = dir.file("weak.policy")
        try writePolicy(weak, allowing: "b.test")
        chmod(weak, 0o666)
        XCTAssertEqual(try Run.airlock(["gateway", "request", "stop", b]).status, 0)
        let refusedPolicy = try Run.airlock(["gateway", "request", "serve", b, "--policy", weak])
        XCTAssertEqual(refusedPolicy.stderr, "airlock: error: policy \(weak): \(weak) can be changed by an account other than root, and the gateway reloads the policy from it; make the file and its directories root-owned and not group- or world-writable\n", "\(refusedPolicy)")
        let missing = try Run.airlock(["gateway", "request", "serve", b, "--policy", dir.file("missing.policy")])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.hasPrefix("airlock: error: "), "\(missing)")
        XCTAssertEqual(try Run.airlock(["gateway", "request", "list"]).stdout, "\(a) 169.254.200.1 \(dir.file("policies/\(a).policy"))\n",
                       "refused requests changed nothing")

        // The opener enters a sandbox's gateway namespace from /run/netns/NAME.gw only, even
        // when its state file names another (here a's).
        let stateFile = "/run/airlock/\(b)/state.json"
        let state = try String(contentsOfFile: stateFile, encoding: .utf8)
        let tampered = state.replacingOccurrences(of: "\(b).gw", with: "\(a).gw")
        XCTAssertNotEqual(tampered, state)
        try tampered.write(toFile: stateFile, atomically: true, encoding: .utf8)
        let elsewhere = try Run.airlock(["gateway", "request", "serve", b])
        try state.write(toFile: stateFile, atomically: true, encoding: .utf8)
        XCTAssertEqual(elsewhere.stderr, "airlock: error: sandbox \(b): its gateway namespace is recorded at /run/netns/\(a).gw, not /run/netns/\(b).gw\n", "\(elsewhere)")

        // Stopping b left a serving; b comes back with the policy named in the request.
        XCTAssertEqual(try fetch(a, "a.test"), "host=a.test path=/p\n")
        XCTAssertNotEqual(try fetch(b, "b.test"), "host=b.test path=/p\n", "b is not served after stop")
        try writePolicy(dir.file("b-now.policy"), allowing: "b.test")
        // A relative --policy is the caller's: the client makes it absolute.
        let relative = try Run.process(["/bin/sh", "-c", "cd \(dir.path) && exec \(TestPaths.airlock) gateway request serve \(b) --policy b-now.policy"])
        XCTAssertEqual(relative.status, 0, "\(relative)")
        XCTAssertTrue(try Run.airlock(["gateway", "request", "list"]).stdout.contains("\(b) 169.254.200.1 \(dir.file("b-now.policy"))\n"))
        XCTAssertEqual(try fetch(b, "b.test"), "host=b.test path=/p\n")
        XCTAssertEqual(try Run.airlock(["gateway", "request", "stop", "nosuch"]).status, 0, "stopping what is not served is done already")

        // A reload that does not parse keeps the old policy, and says why.
        try "a.test\nthis is not a rule\n".write(toFile: dir.file("policies/\(a).policy"), atomically: true, encoding: .utf8)
        let badReload = try Run.airlock(["gateway", "request", "reload", a])
        XCTAssertEqual(badReload.status, 1)
        XCTAssertTrue(badReload.stderr.hasPrefix("airlock: error: sandbox \(a): ") && badReload.stderr.hasSuffix("; keeping the previous policy\n"), "\(badReload)")
        XCTAssertEqual(try fetch(a, "a.test"), "host=a.test path=/p\n")
        try writePolicy(dir.file("policies/\(a).policy"), allowing: "c.test")
        XCTAssertEqual(try Run.airlock(["gateway", "request", "reload", a]).status, 0)
        XCTAssertEqual(try fetch(a, "c.test"), "host=c.test path=/p\n")

        // A caller other than root is refused by the daemon itself (SO_PEERCRED), even when
        // the socket's mode would let it connect.
        chmod("/run/airlock/gateway.sock", 0o666)
        let nobody = try Run.process(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                                      TestPaths.airlock, "gateway", "request", "stop", a])
        XCTAssertEqual(nobody.stderr, "airlock: error: permission denied: uid 65534 may not use the gateway daemon (root only)\n", "\(nobody)")
        XCTAssertEqual(try fetch(a, "c.test"), "host=c.test path=/p\n", "the refused stop changed nothing")

        // Lines the sandbox's own parts write without a name (policy reloads) are its.
        let reloads = auditEvents(audit).filter { $0["event"] as? String == "policy_reload" }
        XCTAssertEqual(reloads.map { $0["sandbox"] as? String }, [a, a], "\(reloads)")
        XCTAssertEqual(reloads.map { $0["ok"] as? Bool }, [false, true])

        let requests = auditEvents(audit).filter { $0["event"] as? String == "daemon_request" }
        let refusedCaller = requests.first { $0["uid"] as? Int == 65534 }
        XCTAssertEqual(refusedCaller?["ok"] as? Bool, false)
        XCTAssertEqual(refusedCaller?["reason"] as? String, "permission denied: uid 65534 may not use the gateway daemon (root only)")
        XCTAssertNotNil(refusedCaller?["pid"] as? Int)
        let served = requests.first { $0["op"] as? String == "serve" && $0["ok"] as? Bool == true }
        XCTAssertEqual(served?["sandbox"] as? String, b)
        XCTAssertEqual(served?["uid"] as? Int, 0)
        XCTAssertEqual(requests.first { $0["op"] as? String == "serve" && $0["sandbox"] as? String == "nosuch" }?["reason"] as? String,
                       "no sandbox named \"nosuch\"")
    }
}
