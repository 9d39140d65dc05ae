import Foundation
import TestSupport
import XCTest

/// The gateway daemon's user socket (`airlock gateway serve --all --users users`): an
/// account in the group makes, uses and destroys its own sandboxes without root, and runs
/// `airlock run` through it; other accounts cannot touch them; every request is audited with
/// the caller's uid. The callers are real accounts (nobody, and daemon as a second member of
/// the group) switched to with setpriv, running an installed copy of the binary.
final class UserSandboxTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var airlock = ""
    private var names: [String] = []
    private var daemon: BackgroundProcess?
    private var upstream: WebUpstream?
    /// The group the daemon serves: `users` (gid 100) is on every Debian host.
    private let group = "100"

    override func setUpWithError() throws {
        try RootTier.require()
        dir = try TemporaryDirectory(prefix: "airlock-users-e2e")
        chmod(dir.path, 0o755)
        airlock = try dir.copyOfAirlock()
        let base = getpid() % 10000
        names = ["ua\(base)", "ub\(base)", "uc\(base)"]
        upstream = try WebUpstream(port: 80)
        let started = try BackgroundProcess([TestPaths.airlock, "gateway", "serve", "--all", "--users", "users", "--audit-log", auditPath])
        daemon = started
        // Answering, not merely there: a socket file can outlive the daemon of a test before.
        // Asked as root, so the callers' audited requests are the tests' own.
        XCTAssertTrue(Wait.until(timeout: 30) { (try? Run.airlock(["sandbox", "list"]).status) == 0 },
                      "the daemon answers on the user socket")
    }

    override func tearDownWithError() throws {
        for name in names { _ = try? Run.airlock(["netns", "destroy", name]) }
        _ = daemon?.stop()
        upstream?.stop()
        XCTAssertTrue(Wait.until(timeout: 10) { !FileManager.default.fileExists(atPath: "/run/airlock/users.sock") },
                      "the stopped daemon's broker removes its socket")
    }

    private var auditPath: String { dir.file("audit.jsonl") }

    /// `airlock ARGS` as `uid` with `groups` (supplementary), from the temporary directory,
    /// with the temporary directory as its home (no policy of its own there).
    private func asUser(_ uid: Int, groups: [String], _ arguments: [String], stdin: String? = nil) throws -> ProcessResult {
        let groupArguments = groups.isEmpty ? ["--clear-groups"] : ["--groups", groups.joined(separator: ",")]
        return try Run.process(
            ["/usr/bin/setpriv", "--reuid", String(uid), "--regid", String(uid)] + groupArguments + ["--", airlock] + arguments,
            environment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": dir.path, "LANG": "C.UTF-8"], stdin: stdin,
            currentDirectory: dir.path, timeout: 60)
    }

    /// `argv` (not airlock) as `uid` with `groups`.
    private func asUserRaw(_ uid: Int, groups: [String], _ argv: [String]) throws -> ProcessResult {
        try Run.process(
            ["/usr/bin/setpriv", "--reuid", String(uid), "--regid", String(uid), "--groups", groups.joined(separator: ","), "--"] + argv,
            environment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": dir.path], currentDirectory: dir.path, timeout: 60)
    }

    private func asNobody(_ arguments: [String], stdin: String? = nil) throws -> ProcessResult {
        try asUser(65534, groups: [group], arguments, stdin: stdin)
    }

    /// A policy allowing `host`, resolved to the local stand-in upstream, readable by every account.
    private func writePolicy(_ name: String, allowing host: String) throws -> String {
        let path = dir.file(name)
        try "\(host)\nresolve \(host)=127.0.0.1\nallow-private 127.0.0.1/32 for \(host)\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        return path
    }

    private func userRequests() -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: auditPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["event"] as? String == "user_request" }
    }

    /// The broker keeps root's uid but only the capabilities its work needs (none of, say,
    /// CAP_SYS_MODULE or CAP_SYS_PTRACE), no_new_privs, and not dumpable; the daemon none.
    func testTheBrokerKeepsOnlyTheCapabilitiesItNeeds() throws {
        let daemonPID = try XCTUnwrap(daemon?.pid)
        let children = try Run.process(["/usr/bin/pgrep", "-P", String(daemonPID)]).stdout.split(separator: "\n").map(String.init)
        let statuses = try children.map { try String(contentsOfFile: "/proc/\($0)/status", encoding: .utf8) }
        // The opener keeps CAP_SYS_ADMIN and CAP_NET_BIND_SERVICE; the broker the set below.
        let broker = try XCTUnwrap(statuses.first { !$0.contains("CapEff:\t0000000000200400\n") }, "\(statuses)")
        for line in ["Uid:\t0\t0\t0\t0", "CapEff:\t00000000002011ef", "CapPrm:\t00000000002011ef", "CapBnd:\t00000000002011ef",
                     "CapAmb:\t0000000000000000", "NoNewPrivs:\t1"] {
            XCTAssertTrue(broker.contains(line + "\n"), "\(line) in \(broker)")
        }
        XCTAssertEqual(statuses.count, 2, "the opener and the broker")
    }

    /// nobody makes a sandbox with its own policy, runs commands in it as itself (not root,
    /// without the socket's group), reaches what the policy allows and nothing else, gets
    /// the command's status back, asks its gateway for a session through the daemon, and
    /// destroys it; the daemon serves it with the policy it was given, kept root-owned.
    func testAnAccountInTheGroupMakesUsesAndDestroysItsOwnSandbox() throws {
        let name = names[0]
        let policy = try writePolicy("a.policy", allowing: "a.test")
        let created = try asNobody(["sandbox", "create", name, "--policy", policy])
        XCTAssertEqual(created.status, 0, "\(created)")
        XCTAssertEqual(created.stdout, "created \(name)\n")
        XCTAssertEqual(try asNobody(["sandbox", "list"]).stdout,
                       "NAME          OWNER   GATEWAY\n" + name.padding(toLength: 14, withPad: " ", startingAt: 0) + "65534   169.254.200.1\n")
        XCTAssertEqual(try Run.airlock(["gateway", "request", "list"]).stdout, "\(name) 169.254.200.1 /run/airlock/\(name)/policy\n")
        var kept = stat()
        XCTAssertEqual(lstat("/run/airlock/\(name)/policy", &kept), 0)
        XCTAssertEqual(kept.st_uid, 0, "the kept policy is root's")
        XCTAssertEqual(kept.st_mode & 0o777, 0o640)

        let identity = try asNobody(["sandbox", "exec", name, "--", "/bin/sh", "-c", "id -u; id -G; exit 3"])
        XCTAssertEqual(identity.status, 3, "the command's status comes back: \(identity)")
        XCTAssertEqual(identity.stdout, "65534\n65534\n", "runs as the caller, without the socket's group")
        let piped = try asNobody(["sandbox", "exec", name, "--", "/bin/sh", "-c", "tr a-z A-Z; echo to-stderr >&2"], stdin: "from the caller\n")
        XCTAssertEqual(piped.stdout, "FROM THE CALLER\n", "the caller's own standard input and output")
        XCTAssertEqual(piped.stderr, "to-stderr\n")

        let fetch = ["sandbox", "exec", name, "--", "/bin/sh", "-c",
                     "curl -sS --max-time 10 -x http://169.254.200.1:3128 http://$0/p; echo"]
        XCTAssertEqual(try asNobody(fetch + ["a.test"]).stdout, "host=a.test path=/p\n")
        let refused = try asNobody(fetch + ["b.test"])
        XCTAssertTrue(refused.stdout.contains("airlock: b.test is not on the allowlist"), "\(refused)")

        let session = try asNobody(["session", "create", name, "--repo", "owner/repo"], stdin: "upstream-token\n")
        XCTAssertEqual(session.status, 0, "\(session)")
        XCTAssertTrue(session.stdout.hasPrefix("airlock_s_"), "\(session)")
        let sessions = try asNobody(["session", "list", name])
        XCTAssertTrue(sessions.stdout.contains("github.com/owner/repo:read"), "\(sessions)")

        let destroyed = try asNobody(["sandbox", "destroy", name])
        XCTAssertEqual(destroyed.stdout, "destroyed \(name)\n", "\(destroyed)")
        XCTAssertFalse(try Run.airlock(["netns", "list"]).stdout.contains(name))
        XCTAssertEqual(try Run.airlock(["gateway", "request", "list"]).stdout, "")
        XCTAssertEqual(try asNobody(["sandbox", "list"]).stdout, "no sandboxes\n")

        let requests = userRequests().filter { $0["uid"] as? Int == 65534 }
        XCTAssertEqual(requests.filter { $0["ok"] as? Bool == true }.compactMap { $0["op"] as? String },
                       ["create", "list", "exec", "exec", "exec", "exec", "control", "control", "destroy", "list"], "\(requests)")
        XCTAssertTrue(requests.allSatisfy { $0["pid"] is Int })
        let text = (try? String(contentsOfFile: auditPath, encoding: .utf8)) ?? ""
        XCTAssertFalse(text.contains("upstream-token"), "no token in the audit log")
    }

    /// Another member of the group cannot use, ask or destroy nobody's sandbox, nor see it;
    /// an account outside the group is turned away at the socket; root's own sandboxes are
    /// nobody's to use; a policy that does not parse, a name in use and a ninth sandbox are
    /// refused and make nothing. Every refusal is audited with the caller's uid.
    func testOtherAccountsAndBadRequestsAreRefused() throws {
        let (mine, admins, spare) = (names[0], names[1], names[2])
        XCTAssertEqual(try asNobody(["sandbox", "create", mine, "--allow", "a.test"]).status, 0)
        XCTAssertEqual(try Run.airlock(["netns", "create", admins]).status, 0)

        // uid 1 (daemon), also in the group.
        let notYours = "airlock: error: sandbox \(mine): no sandbox of yours by that name (`airlock sandbox list` shows yours)\n"
        let exec = try asUser(1, groups: [group], ["sandbox", "exec", mine, "--", "/bin/true"])
        XCTAssertEqual(exec.stderr, notYours)
        XCTAssertEqual(exec.status, 125)
        XCTAssertEqual(try asUser(1, groups: [group], ["sandbox", "destroy", mine]).stderr, notYours)
        XCTAssertEqual(try asUser(1, groups: [group], ["session", "list", mine]).stderr, notYours)
        XCTAssertEqual(try asUser(1, groups: [group], ["sandbox", "list"]).stdout, "no sandboxes\n")
        XCTAssertEqual(try asNobody(["sandbox", "exec", admins, "--", "/bin/true"]).stderr,
                       "airlock: error: sandbox \(admins): no sandbox of yours by that name (`airlock sandbox list` shows yours)\n")
        XCTAssertEqual(try asNobody(["sandbox", "destroy", admins]).status, 1)
        XCTAssertTrue(try Run.airlock(["netns", "list"]).stdout.contains(admins), "root's sandbox stays")

        // Outside the group: the socket's mode turns it away; so does the daemon when the
        // mode would not (it reads the caller's groups from the kernel).
        let outside = try asUser(65534, groups: [], ["sandbox", "list"])
        XCTAssertEqual(outside.status, 4)
        XCTAssertEqual(outside.stderr, "airlock: error: permission denied on /run/airlock/users.sock: you are not in the group the gateway daemon serves; ask an admin to add you (then log in again)\n")
        chmod("/run/airlock/users.sock", 0o666)
        let past = try asUser(65534, groups: [], ["sandbox", "exec", mine, "--", "/bin/true"])
        chmod("/run/airlock/users.sock", 0o660)
        XCTAssertEqual(past.stderr, "airlock: error: permission denied: uid 65534 is not in group users, which may use the gateway daemon's user socket; ask an admin to add you\n")
        XCTAssertEqual(past.status, 125)

        // A member that connects and says nothing is answered and let go.
        let silent = try asUserRaw(65534, groups: [group], ["/usr/bin/python3", "-c",
            "import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect('/run/airlock/users.sock'); print(s.recv(65536).decode())"])
        XCTAssertTrue(silent.stdout.contains("\"error\":\"no request within 10 s"), "\(silent)")
        XCTAssertTrue(silent.stdout.contains("\"ok\":false"), "\(silent)")

        // One account holds at most 16 connections; another still gets in meanwhile.
        let hog = try BackgroundProcess(
            ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--groups", group, "--", "/usr/bin/python3", "-c", """
            import socket, time
            def connect():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.connect('/run/airlock/users.sock')
                return s
            held = [connect() for _ in range(16)]
            time.sleep(0.5)
            print(connect().recv(65536).decode(), flush=True)
            time.sleep(5)
            """], environment: ["PATH": "/usr/bin:/bin"], currentDirectory: dir.path)
        XCTAssertTrue(Wait.until(timeout: 10) { hog.output.contains("\n") }, "the seventeenth is answered at once: \(hog.output)")
        XCTAssertTrue(hog.output.contains("you have 16 connections open to the gateway daemon's user socket, the most one account may hold; end some first"),
                      hog.output)
        XCTAssertEqual(try asUser(1, groups: [group], ["sandbox", "list"]).stdout, "no sandboxes\n", "another account is served")
        hog.stop()

        // Bad requests make nothing.
        try "a.test\nthis is not a rule\n".write(toFile: dir.file("bad.policy"), atomically: true, encoding: .utf8)
        chmod(dir.file("bad.policy"), 0o644)
        let bad = try asNobody(["sandbox", "create", spare, "--policy", dir.file("bad.policy")])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.hasPrefix("airlock: error: ") && bad.stderr.contains("this is not a rule"), "\(bad)")
        let taken = try asNobody(["sandbox", "create", admins])
        XCTAssertEqual(taken.stderr, "airlock: error: sandbox \(admins) exists already; choose another name\n")
        XCTAssertFalse(try Run.airlock(["netns", "list"]).stdout.contains(spare), "nothing was made for the refused requests")

        // Eight sandboxes an account; a ninth is refused, another account's count is its own.
        let more = (1...7).map { "uk\(getpid() % 10000)\($0)" }
        names += more + [spare]
        for name in more { XCTAssertEqual(try asNobody(["sandbox", "create", name]).status, 0) }
        let ninth = try asNobody(["sandbox", "create", spare])
        XCTAssertEqual(ninth.stderr, "airlock: error: you have 8 sandboxes, the most one account may hold; destroy one first (`airlock sandbox destroy NAME`)\n")
        XCTAssertFalse(try Run.airlock(["netns", "list"]).stdout.contains(spare))
        XCTAssertEqual(try asUser(1, groups: [group], ["sandbox", "create", spare]).status, 0, "uid 1 has none yet")

        let refusals = userRequests().filter { $0["ok"] as? Bool == false }
        XCTAssertEqual(Set(refusals.compactMap { $0["uid"] as? Int }), [1, 65534])
        XCTAssertTrue(refusals.contains { $0["uid"] as? Int == 1 && $0["op"] as? String == "destroy" && $0["sandbox"] as? String == mine })
        XCTAssertTrue(refusals.contains { ($0["reason"] as? String)?.hasPrefix("permission denied: uid 65534 is not in group users") == true })
    }

    /// Where user namespaces cannot be made (here: a user namespace whose
    /// user.max_user_namespaces is 0, as inside a locked-down container), a plain `airlock
    /// run` goes through the daemon on its own and says why; CMD runs as the caller's host
    /// account, not as the namespace's root.
    func testRunGoesThroughTheDaemonWhereUserNamespacesAreUnavailable() throws {
        let policy = try writePolicy("run.policy", allowing: "a.test")
        let script = "echo 0 > /proc/sys/user/max_user_namespaces && exec \(airlock) run --policy \(policy) -- /bin/sh -c "
            + "'curl -sS --max-time 10 -x http://169.254.200.1:3128 http://a.test/p; echo; id -u; exit 6'"
        let run = try Run.process(
            ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--groups", group, "--",
             "/usr/bin/unshare", "--user", "--map-root-user", "/bin/sh", "-c", script],
            environment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": dir.path], currentDirectory: dir.path, timeout: 60)
        XCTAssertEqual(run.status, 6, "\(run)")
        XCTAssertEqual(run.stdout, "host=a.test path=/p\n65534\n")
        XCTAssertTrue(run.stderr.hasPrefix("airlock: user namespaces are unavailable here (sandbox setup: create user, network and mount namespaces: No space left on device); running through the gateway daemon (/run/airlock/users.sock) in sandbox run-"),
                      "\(run)")
        XCTAssertEqual(userRequests().filter { $0["op"] as? String == "exec" }.compactMap { $0["uid"] as? Int }, [65534])

        // doctor, in the same place, tells the same story.
        let doctor = try Run.process(
            ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--groups", group, "--",
             "/usr/bin/unshare", "--user", "--map-root-user", "/bin/sh", "-c", "echo 0 > /proc/sys/user/max_user_namespaces && exec \(airlock) doctor"],
            environment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": dir.path], currentDirectory: dir.path, timeout: 60)
        XCTAssertEqual(doctor.status, 0, "a mode is ready: \(doctor)")
        XCTAssertTrue(doctor.stdout.contains("run (rootless): not ready\n"), doctor.stdout)
        // (Inside the namespace the socket's group is not mapped: it shows as the overflow group.)
        XCTAssertTrue(doctor.stdout.contains("ok   user socket: /run/airlock/users.sock (group "), doctor.stdout)
        XCTAssertTrue(doctor.stdout.contains("run (through the gateway daemon): ready\n"), doctor.stdout)
        let outside = try asUser(65534, groups: [], ["doctor"])
        XCTAssertTrue(outside.stdout.contains("no   user socket: /run/airlock/users.sock (group users): not open to this account\n      fix: ask an admin to add you to group users, then log in again\n"), outside.stdout)
    }

    /// The daemon as `docs/user-access.md`'s systemd drop-in runs it: the bounding set
    /// the drop-in names (read from the document, so the test follows it) and
    /// no_new_privs (the unit's `NoNewPrivileges=yes`), which setpriv applies as systemd
    /// would. Within them an account in the group makes a sandbox, reaches what its policy
    /// allows from a command in it, runs `airlock run` through it and destroys it.
    func testTheDaemonServesUsersWithinTheDocumentedDropInsCapabilities() throws {
        let guide = try String(contentsOf: TestPaths.packageRoot.appendingPathComponent("docs/user-access.md"), encoding: .utf8)
        let line = try XCTUnwrap(guide.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=CAP_") },
                                 "the drop-in names its bounding set")
        let caps = line.dropFirst("CapabilityBoundingSet=".count).split(separator: " ")
            .map { "+" + $0.dropFirst("CAP_".count).lowercased() }
        XCTAssertGreaterThan(caps.count, 5)
        let first = daemon?.stop()
        XCTAssertTrue(Wait.until(timeout: 10) { !FileManager.default.fileExists(atPath: "/run/airlock/users.sock") },
                      "the stopped daemon's broker removes the socket: \(first?.stderr ?? "")")
        let confined = try BackgroundProcess(
            ["/usr/bin/setpriv", "--bounding-set", (["-all"] + caps).joined(separator: ","), "--no-new-privs", "--",
             TestPaths.airlock, "gateway", "serve", "--all", "--users", "users", "--audit-log", auditPath])
        daemon = confined
        guard Wait.until(timeout: 30, { (try? Run.airlock(["sandbox", "list"]).status) == 0 }) else {
            return XCTFail("the confined daemon offers no user socket: \(confined.stop().stderr)")
        }
        let status = try String(contentsOfFile: "/proc/\(confined.pid)/status", encoding: .utf8)
        XCTAssertTrue(status.contains("NoNewPrivs:\t1\n"), status)

        let name = names[0]
        let policy = try writePolicy("d.policy", allowing: "a.test")
        let created = try asNobody(["sandbox", "create", name, "--policy", policy])
        XCTAssertEqual(created.stdout, "created \(name)\n", "\(created)")
        let fetched = try asNobody(["sandbox", "exec", name, "--", "/bin/sh", "-c",
                                    "curl -sS --max-time 10 -x http://169.254.200.1:3128 http://a.test/p; echo; id -u"])
        XCTAssertEqual(fetched.stdout, "host=a.test path=/p\n65534\n", "\(fetched)")
        XCTAssertEqual(try asNobody(["sandbox", "destroy", name]).stdout, "destroyed \(name)\n")
        let run = try asNobody(["run", "--via-daemon", "--policy", policy, "--", "/bin/sh", "-c",
                                "curl -sS --max-time 10 -x http://169.254.200.1:3128 http://a.test/r; echo"])
        XCTAssertEqual(run.status, 0, "\(run)")
        XCTAssertEqual(run.stdout, "host=a.test path=/r\n")
        XCTAssertEqual(try Run.airlock(["gateway", "request", "list"]).stdout, "", "nothing left served")
    }

    /// A daemon killed while a run through it is going takes the command with it (the
    /// caller is told), and its next start removes the run's sandbox rather than serving it.
    func testARunLeftByADaemonThatDiedIsRemovedAtTheNextStart() throws {
        let client = try BackgroundProcess(
            ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--groups", group, "--", airlock,
             "run", "--via-daemon", "--allow", "a.test", "--", "/bin/sleep", "31.7"],
            environment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": dir.path], currentDirectory: dir.path)
        // A duration no other process uses: the command is found by its command line alone.
        let command = ["/usr/bin/pgrep", "-f", "^/bin/sleep 31.7$"]
        XCTAssertTrue(Wait.until(timeout: 20) { (try? Run.process(command).status) == 0 }, "the command runs")
        let runName = "run-\(client.pid)"
        XCTAssertTrue(try Run.airlock(["netns", "list"]).stdout.contains(runName))

        _ = daemon?.stop(signal: SIGKILL)
        let ended = client.stop(signal: 0, timeout: 20)
        XCTAssertEqual(ended.status, 125)
        XCTAssertTrue(ended.stderr.hasSuffix("airlock: error: the gateway daemon went away while the command ran; it was stopped with it\n"), ended.stderr)
        XCTAssertTrue(Wait.until(timeout: 10) { (try? Run.process(command).status) == 1 }, "the command died with it")
        XCTAssertTrue(try Run.airlock(["netns", "list"]).stdout.contains(runName), "left until the next start")

        let restarted = try BackgroundProcess([TestPaths.airlock, "gateway", "serve", "--all", "--users", "users", "--audit-log", auditPath])
        daemon = restarted
        XCTAssertTrue(Wait.until(timeout: 30) { (try? Run.airlock(["netns", "list"]).stdout.contains(runName)) == false },
                      "the next start removes it")
        XCTAssertFalse(try Run.airlock(["gateway", "request", "list"]).stdout.contains(runName), "and does not serve it")
        let log = restarted.stop()
        XCTAssertTrue(log.stderr.contains("airlock: removed \(runName), left by a run through the daemon that ended with it\n"), log.stderr)
    }

    /// `airlock run --via-daemon`: the run goes through the daemon, says so, reaches what
    /// its --policy and --allow allow, exits with the command's status, and leaves no
    /// sandbox behind; options the daemon cannot honour are refused before anything is made.
    func testRunThroughTheDaemon() throws {
        let policy = try writePolicy("run.policy", allowing: "a.test")
        let run = try asNobody(["run", "--via-daemon", "--policy", policy, "--", "/bin/sh", "-c",
                                "curl -sS --max-time 10 -x http://169.254.200.1:3128 http://a.test/p; echo; id -u; exit 5"])
        XCTAssertEqual(run.status, 5, "\(run)")
        XCTAssertEqual(run.stdout, "host=a.test path=/p\n65534\n")
        XCTAssertTrue(run.stderr.hasPrefix("airlock: --via-daemon; running through the gateway daemon (/run/airlock/users.sock) in sandbox run-"),
                      "\(run)")
        XCTAssertTrue(Wait.until(timeout: 10) { (try? Run.airlock(["netns", "list"]).stdout.contains("run-")) == false },
                      "the run's sandbox is gone")

        let refused = try asNobody(["run", "--via-daemon", "--audit-log", dir.file("mine.jsonl"), "--", "/bin/true"])
        XCTAssertEqual(refused.status, 125)
        XCTAssertEqual(refused.stderr, "airlock: error: not offered when running through the gateway daemon: --audit-log (the daemon's audit log records the run)\n")
        XCTAssertFalse(try Run.airlock(["netns", "list"]).stdout.contains("run-"), "the refused run made nothing")
    }
}
