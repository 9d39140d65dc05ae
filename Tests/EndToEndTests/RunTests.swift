import Foundation
import TestSupport
import XCTest

/// `airlock run` end to end: the built binary, as root (`--user nobody`) and rootless (as
/// uid 65534 through setpriv), against local stand-ins for github.com and a package index
/// on the throwaway namespace's 127.0.0.1.
///
/// Every test asserts what a user sees: exit codes, git and curl output, audit lines.
final class RunTests: XCTestCase {
    /// Shared by every test of the class: the CA, the git and web stand-ins, a copy of the
    /// binary an unprivileged user can execute.
    final class Rig {
        /// New for every test run, so no log of an earlier run can hold it.
        static let realToken = "ghp_RUN" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        let dir: TemporaryDirectory
        let ca: TestCA
        let git: GitUpstream
        let https: WebUpstream
        let http: WebUpstream
        let binary: String

        init() throws {
            dir = try TemporaryDirectory(prefix: "airlock-run-e2e")
            chmod(dir.path, 0o755)
            ca = try TestCA(in: dir.path, names: ["localhost", "127.0.0.1", "pypi.org", "files.pythonhosted.org", "denied.example"])
            git = try GitUpstream(in: dir.path, ca: ca, repositories: ["owner/app", "owner/secret"], realToken: Self.realToken)
            https = try WebUpstream(port: 443, tls: ca)
            http = try WebUpstream(port: 80)
            binary = try dir.copyOfAirlock()
        }

        /// A fresh directory the sandboxed user (uid 65534) can write.
        func workDirectory() throws -> String {
            try dir.workDirectory()
        }
    }

    static let shared = SharedRig<Rig>("run rig")

    override class func setUp() {
        super.setUp()
        shared.setUp { try Rig() }
    }

    override class func tearDown() {
        shared.tearDown()
        super.tearDown()
    }

    typealias Mode = RunMode

    var rig: Rig {
        get throws { try Self.shared.get() }
    }

    /// The flags that point the git gateway at the stand-in and let names reach 127.0.0.1.
    func standInFlags(_ rig: Rig) -> [String] {
        [
            "--git-upstream", rig.git.mapping(), "--upstream-ca", rig.ca.caFile,
            "--allow-private", "127.0.0.0/8",
            "--resolve", "pypi.org=127.0.0.1",
        ]
    }

    /// Runs `airlock run FLAGS -- /bin/sh -c SCRIPT` in `mode`; the real token is in
    /// `GH_TOKEN` of airlock's environment.
    func airlockRun(
        _ mode: Mode, _ flags: [String], script: String, audit: String? = nil, timeout: TimeInterval = 120
    ) throws -> ProcessResult {
        let rig = try rig
        var argv = runArgv(mode, rig)
        argv += flags
        if let audit { argv += ["--audit-log", audit] }
        argv += ["--", "/bin/sh", "-c", script]
        let environment = [
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/nonexistent", "GH_TOKEN": Rig.realToken,
            "GIT_AUTHOR_NAME": "sandbox", "GIT_AUTHOR_EMAIL": "sandbox@example.com",
            "GIT_COMMITTER_NAME": "sandbox", "GIT_COMMITTER_EMAIL": "sandbox@example.com", "LANG": "C",
        ]
        // Started from the rig's directory, as a user starts airlock from a project: the
        // sandbox's /tmp is a fresh one, with this working directory bound back in.
        return try Run.process(argv, environment: environment, currentDirectory: rig.dir.path, timeout: timeout)
    }

    /// `airlock run` as root for uid 65534 (`--user nobody`), or rootless as uid 65534.
    func runArgv(_ mode: Mode, _ rig: Rig) -> [String] {
        switch mode {
        case .root: [rig.binary, "run", "--user", "nobody"]
        case .rootless: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", rig.binary, "run"]
        }
    }

    /// An audit log file the gateway can create and the command's account cannot change:
    /// as root, in the root-owned rig directory (a directory uid 65534 could write is
    /// refused); rootless, the gateway is uid 65534 itself, and the file is hidden inside.
    func auditFile(_ mode: Mode) throws -> String {
        switch mode {
        case .root: try rig.dir.file("audit-\(UUID().uuidString.prefix(8)).jsonl")
        case .rootless: try rig.workDirectory() + "/audit.jsonl"
        }
    }

    func auditLines(_ path: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    // MARK: - In scope

    func testCloneAndPushInScope() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            let audit = try auditFile(mode)
            let result = try airlockRun(mode, standInFlags(rig) + ["--repo", "owner/app:rw", "--token-env", "GH_TOKEN"], script: """
                set -e
                cd \(work)
                git clone -q https://github.com/owner/app
                cd app
                echo "\(mode)" > from-sandbox.txt
                git add from-sandbox.txt
                git commit -q -m "pushed from the \(mode) sandbox"
                git push -q origin HEAD:agent/\(mode)
                git fetch -q origin
                echo done
                """, audit: audit)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("done"), "\(mode): \(result)")
            XCTAssertTrue(try rig.git.log("owner/app", branch: "agent/\(mode)").contains("pushed from the \(mode) sandbox"), "\(mode)")
            let lines = auditLines(audit)
            let allows = lines.filter { $0["event"] as? String == "git_allow" }
            XCTAssertTrue(allows.contains { $0["service"] as? String == "git-receive-pack" && $0["repo"] as? String == "github.com/owner/app" && $0["status"] as? Int == 200 }, "\(mode): \(lines)")
            XCTAssertTrue(allows.contains { $0["service"] as? String == "git-upload-pack" }, "\(mode): \(lines)")
        }
    }

    func testAllowedSiteThroughProxyAndTransparently() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let audit = try auditFile(mode)
            let result = try airlockRun(mode, standInFlags(rig) + ["--allow", "pypi.org"], script: """
                curl -sS --max-time 20 --cacert \(rig.ca.caFile) https://pypi.org/simple/ && echo
                curl -sS --max-time 20 --noproxy '*' --cacert \(rig.ca.caFile) https://pypi.org/simple/ && echo
                curl -sS --max-time 20 http://pypi.org/plain && echo
                curl -sS --max-time 20 --noproxy '*' http://pypi.org/plain && echo
                """, audit: audit)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            let lines = result.stdout.split(separator: "\n").filter { $0.contains("pypi.org") }
            XCTAssertEqual(lines.count, 4, "\(mode): every fetch answered by the stand-in naming its Host: \(result)")
            let vias = Set(auditLines(audit).filter { $0["event"] as? String == "egress_allow" }.compactMap { $0["via"] as? String })
            XCTAssertEqual(vias, ["connect", "sni", "proxy", "http"], "\(mode): \(auditLines(audit))")
        }
    }

    /// `ws://` through the proxy: the server's `101` and its frames reach the client, as a
    /// WebSocket client that honours `http_proxy` sends them (absolute-form GET with
    /// `Upgrade`), and the exchange is audited as a proxy request with what it moved.
    func testWebSocketUpgradeThroughTheProxy() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            try Self.webSocketClient.write(toFile: work + "/ws-client.py", atomically: true, encoding: .utf8)
            let audit = try auditFile(mode)
            let result = try airlockRun(mode, standInFlags(rig) + ["--allow", "pypi.org"],
                                        script: "python3 \(work)/ws-client.py", audit: audit)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertEqual(result.stdout, "HTTP/1.1 101 Switching Protocols\necho from pypi.org: hello through airlock\n", "\(mode): \(result)")
            let line = auditLines(audit).first { $0["event"] as? String == "egress_allow" && $0["via"] as? String == "proxy" }
            XCTAssertEqual(line?["host"] as? String, "pypi.org", "\(mode): \(auditLines(audit))")
            XCTAssertEqual(line?["port"] as? Int, 80)
            XCTAssertGreaterThan(line?["bytes_down"] as? Int ?? 0, 100, "the 101 and the frame were counted")
        }
    }

    /// A WebSocket client in the shape of those that honour `http_proxy`: one text frame out, one back.
    static let webSocketClient = #"""
import base64, os, socket, sys, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["http_proxy"])
sock = socket.create_connection((proxy.hostname, proxy.port), timeout=20)
key = base64.b64encode(os.urandom(16)).decode()
sock.sendall(("GET http://pypi.org/ws-echo HTTP/1.1\r\nHost: pypi.org\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
head = b""
while b"\r\n\r\n" not in head:
    head += sock.recv(4096)
head, _, rest = head.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode())
payload, mask = b"hello through airlock", os.urandom(4)
sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
while len(rest) < 2 or len(rest) < 2 + rest[1]:
    data = sock.recv(4096)
    if not data:
        break
    rest += data
print(rest[2:2 + rest[1]].decode())
"""#

    // MARK: - Refused

    func testOutOfScopeRepoAndReadOnlyPushRefused() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            let audit = try auditFile(mode)
            let result = try airlockRun(mode, standInFlags(rig) + ["--repo", "owner/app", "--token-env", "GH_TOKEN"], script: """
                cd \(work)
                git clone https://github.com/owner/secret 2>&1; echo "secret-clone=$?"
                git clone -q https://github.com/owner/app 2>&1; echo "app-clone=$?"
                cd app && echo x > x && git add x && git commit -q -m x && git push origin main 2>&1; echo "push=$?"
                """, audit: audit)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("secret-clone=128"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("The requested URL returned error: 403"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("this session does not cover github.com/owner/secret"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("app-clone=0"), "\(mode): \(result)")
            XCTAssertFalse(result.stdout.contains("push=0"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("read-only access to github.com/owner/app"), "\(mode): \(result)")
            let denies = auditLines(audit).filter { $0["event"] as? String == "git_deny" }
            XCTAssertTrue(denies.contains { $0["repo"] as? String == "github.com/owner/secret" && $0["status"] as? Int == 403 }, "\(mode): \(denies)")
            XCTAssertTrue(denies.contains { $0["service"] as? String == "git-receive-pack" && $0["status"] as? Int == 403 }, "\(mode): \(denies)")
        }
    }

    /// A user rule rewriting github.com to SSH and a system rule sending the owner to a
    /// mirror (both read before airlock's) lose to the run's per-repository rewrites, for
    /// the HTTPS and the SSH spellings.
    func testRewritesBeatHostileUserAndSystemRules() throws {
        let rig = try rig
        let system = rig.dir.file("hostile-system.gitconfig")
        try "[url \"https://mirror.invalid/\"]\n\tinsteadOf = https://github.com/owner/\n"
            .write(toFile: system, atomically: true, encoding: .utf8)
        let xdg = rig.dir.file("hostile-xdg")
        try FileManager.default.createDirectory(atPath: xdg + "/git", withIntermediateDirectories: true)
        try "[url \"git@github.com:\"]\n\tinsteadOf = https://github.com/\n".write(toFile: xdg + "/git/config", atomically: true, encoding: .utf8)
        for mode in Mode.allCases {
            let work = try rig.workDirectory()
            let result = try airlockRun(mode, standInFlags(rig) + ["--repo", "owner/app", "--token-env", "GH_TOKEN"], script: """
                export GIT_CONFIG_SYSTEM=\(system) XDG_CONFIG_HOME=\(xdg)
                cd \(work)
                git clone -q https://github.com/owner/app a && git clone -q ssh://git@github.com:22/owner/app b && echo cloned
                """)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertEqual(result.stdout, "cloned\n", "\(mode): \(result)")
        }
    }

    func testDeniedHostThroughProxySNIAndDNS() throws {
        let rig = try rig
        let audit = try auditFile(.rootless)
        let result = try airlockRun(.rootless, standInFlags(rig) + ["--allow", "pypi.org"], script: """
            curl -sS --max-time 20 http://denied.example/ ; echo "proxy-http=$?"
            curl -sS --max-time 20 --cacert \(rig.ca.caFile) https://denied.example/ 2>&1; echo "proxy-connect=$?"
            curl -sS --max-time 20 --noproxy '*' --resolve denied.example:443:169.254.200.1 --cacert \(rig.ca.caFile) https://denied.example/ 2>&1; echo "sni=$?"
            dig +tries=1 +time=5 denied.example A | grep -o 'status: [A-Z]*'
            dig +tries=1 +time=5 pypi.org A | grep -o 'status: [A-Z]*'
            """, audit: audit)
        XCTAssertEqual(result.status, 0, "\(result)")
        XCTAssertTrue(result.stdout.contains("airlock: denied.example is not on the allowlist"), "\(result)")
        XCTAssertTrue(result.stdout.contains("proxy-http=0"), "curl shows the 403 body: \(result)")
        XCTAssertTrue(result.stdout.contains("CONNECT tunnel failed, response 403"), "\(result)")
        XCTAssertFalse(result.stdout.contains("sni=0"), "\(result)")
        XCTAssertTrue(result.stdout.contains("status: NXDOMAIN"), "\(result)")
        XCTAssertTrue(result.stdout.contains("status: NOERROR"), "\(result)")
        let events = auditLines(audit)
        XCTAssertEqual(Set(events.filter { $0["event"] as? String == "egress_deny" && $0["host"] as? String == "denied.example" }.compactMap { $0["via"] as? String }),
                       ["proxy", "connect", "sni"], "\(events)")
        XCTAssertTrue(events.contains { $0["event"] as? String == "dns_deny" && $0["host"] as? String == "denied.example" }, "\(events)")
    }

    /// Direct addresses fail at once with "Network is unreachable": the sandbox has no route
    /// but the /32 to the gateway. The addresses are documentation ranges (RFC 5737/3849)
    /// and the metadata address; nothing is sent, the kernel refuses before any packet.
    func testDirectAddressesAndIPv6Unreachable() throws {
        for mode in Mode.allCases {
            let result = try airlockRun(mode, [], script: """
                for target in 192.0.2.1/80 198.51.100.53/443 169.254.169.254/80; do
                  bash -c "exec 3<>/dev/tcp/${target}" 2>&1 | tail -1
                done
                curl -sS --max-time 10 --noproxy '*' http://192.0.2.1/ 2>&1; echo "curl=$?"
                curl -sS --max-time 10 -6 --noproxy '*' 'http://[2001:db8::1]/' 2>&1; echo "curl6=$?"
                dig +tries=1 +time=2 @198.51.100.53 example.com 2>&1 | grep -ci unreachable
                /usr/bin/python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)' 2>&1 | tail -1
                """)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertEqual(result.stdout.components(separatedBy: "Network is unreachable").count - 1, 3, "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("curl=7"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("curl6=7"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("PermissionError"), "\(mode): a raw socket needs CAP_NET_RAW: \(result)")
        }
    }

    func testHostServicesInvisible() throws {
        let rig = try rig
        let loopbackPort = TCP.freePort()
        let anyPort = TCP.freePort()
        let listeners = try BackgroundProcess(["/usr/bin/python3", "-c", """
            import socket, time
            a = socket.socket(); a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); a.bind(("127.0.0.1", \(loopbackPort))); a.listen()
            b = socket.socket(); b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); b.bind(("0.0.0.0", \(anyPort))); b.listen()
            time.sleep(120)
            """])
        defer { listeners.stop() }
        XCTAssertTrue(Wait.forTCP(port: anyPort))
        // A Docker-like socket on the host's /run (the throwaway namespace's private /run).
        let dockerSocket = try BackgroundProcess(["/usr/bin/python3", "-c", """
            import socket, time
            s = socket.socket(socket.AF_UNIX); s.bind("/run/docker.sock"); s.listen(); time.sleep(120)
            """])
        defer { dockerSocket.stop(); unlink("/run/docker.sock") }
        XCTAssertTrue(Wait.until { FileManager.default.fileExists(atPath: "/run/docker.sock") })
        _ = rig
        for mode in Mode.allCases {
            let result = try airlockRun(mode, [], script: """
                bash -c "exec 3<>/dev/tcp/127.0.0.1/\(loopbackPort)" 2>&1 | tail -1
                bash -c "exec 3<>/dev/tcp/169.254.200.1/\(anyPort)" 2>&1 | tail -1
                grep -ci ':\(String(format: "%04X", Int(loopbackPort)))\\|:\(String(format: "%04X", Int(anyPort)))' /proc/1/net/tcp
                test -e /run/docker.sock && echo docker-visible
                test -e /var/run/docker.sock && echo var-docker-visible
                ls /run/airlock 2>&1 | tail -1
                echo "sys: $(ls /sys/class/net | sort | tr '\\n' ' ')"
                """)
            XCTAssertEqual(result.stdout.components(separatedBy: "Connection refused").count - 1, 2, "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("\n0\n"), "\(mode): /proc/1/net/tcp shows no host socket: \(result)")
            XCTAssertFalse(result.stdout.contains("docker-visible"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("No such file or directory"), "\(mode): control sockets absent: \(result)")
            XCTAssertTrue(result.stdout.contains("sys: eth0 lo \n"), "\(mode): /sys shows the sandbox's interfaces only: \(result)")
        }
    }

    func testNoTokenAndNoGatewayVisibleInside() throws {
        // The script never holds the token literally (it would be in its own cmdline): it
        // decodes it into a shell variable, which is in no process's environ or cmdline.
        let encoded = Data(Rig.realToken.utf8).base64EncodedString()
        for mode in Mode.allCases {
            let rig = try rig
            let result = try airlockRun(mode, standInFlags(rig) + ["--repo", "owner/app", "--token-env", "GH_TOKEN"], script: """
                token=$(echo \(encoded) | base64 -d)
                env | grep -cF "$token"
                seen=$(mktemp); for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < $f 2>/dev/null; done > $seen; grep -cF "$token" $seen; rm -f $seen
                printf '%s\\n' "$token" | grep -rlsF -f - /run /tmp /etc /var/tmp "$HOME" 2>/dev/null | wc -l
                env | grep -c '^GH_TOKEN='
                ps -e -o comm= | sort | tr '\\n' ' '; echo
                env | grep -c 'GIT_CONFIG_VALUE_.*Authorization: Bearer airlock_s_'
                """, timeout: 60)
            let lines = result.stdout.split(separator: "\n").map(String.init)
            XCTAssertEqual(Array(lines.prefix(4)), ["0", "0", "0", "0"], "\(mode): the real token is nowhere inside: \(result)")
            XCTAssertEqual(lines.count, 6, "\(mode): \(result)")
            XCTAssertEqual(lines.count > 4 ? lines[4].split(separator: " ").filter { $0 != "sandbox-init" && !["ps", "sh", "sort", "tr"].contains($0) } : ["?"], [],
                           "\(mode): only the sandbox's init and the script's processes, no gateway: \(result)")
            XCTAssertEqual(lines.last, "1", "\(mode): the session token is in git's configuration: \(result)")
            XCTAssertTrue(result.stderr.contains("GH_TOKEN"), "\(mode): dropped names are listed: \(result)")
            XCTAssertFalse(result.stderr.contains(Rig.realToken), "\(mode): \(result)")
        }
    }

    // MARK: - Exit codes, signals, cleanup

    func testExitCodes() throws {
        for mode in Mode.allCases {
            XCTAssertEqual(try airlockRun(mode, [], script: "exit 42").status, 42, "\(mode)")
            XCTAssertEqual(try airlockRun(mode, [], script: "kill -TERM $$").status, 143, "\(mode)")
            let rig = try rig
            var argv = runArgv(mode, rig)
            argv += ["--", "no-such-command-airlock"]
            let missing = try Run.process(argv, environment: ["PATH": "/usr/bin:/bin"], currentDirectory: rig.dir.path)
            XCTAssertEqual(missing.status, 127, "\(mode): \(missing)")
            XCTAssertTrue(missing.stderr.contains("no-such-command-airlock: command not found"), "\(mode): \(missing)")
        }
    }

    func testSignalsAreForwarded() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            var argv = runArgv(mode, rig)
            argv += ["--", "/bin/sh", "-c", "trap 'exit 9' TERM; touch \(work)/ready; while :; do sleep 0.1; done"]
            let run = try BackgroundProcess(argv, environment: ["PATH": "/usr/bin:/bin"], currentDirectory: work)
            XCTAssertTrue(Wait.until(timeout: 30) { FileManager.default.fileExists(atPath: work + "/ready") }, "\(mode)")
            let result = run.stop(signal: SIGTERM, timeout: 20)
            XCTAssertEqual(result.status, 9, "\(mode): CMD's trap ran and its status came back: \(result)")
        }
    }

    /// A TERM sent to airlock's whole process group (a CI runner cancelling a job, `timeout`,
    /// a terminal's job control) reaches the gateway process too. The gateway keeps serving
    /// until the command has ended, so a command that cleans up on TERM can still use what
    /// it was allowed.
    func testATermToTheProcessGroupLeavesTheGatewayServingUntilTheCommandEnds() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            var argv = runArgv(mode, rig) + standInFlags(rig) + ["--allow", "pypi.org"]
            argv += ["--", "/bin/sh", "-c", """
                trap 'curl -sS --max-time 20 http://pypi.org/plain; echo "after-term=$?"; exit 9' TERM
                touch \(work)/ready; while :; do sleep 0.1; done
                """]
            let run = try BackgroundProcess(argv, environment: ["PATH": "/usr/bin:/bin"], currentDirectory: work)
            XCTAssertTrue(Wait.until(timeout: 30) { FileManager.default.fileExists(atPath: work + "/ready") }, "\(mode)")
            // Started as the leader of a process group of its own, which the test may signal.
            let group = getpgid(run.pid)
            guard group == run.pid, group != getpgrp() else {
                XCTFail("\(mode): airlock does not lead a process group of its own (\(group))")
                run.stop(signal: SIGKILL)
                continue
            }
            kill(-group, SIGTERM)
            let result = run.stop(signal: SIGCONT, timeout: 30)
            XCTAssertEqual(result.status, 9, "\(mode): CMD's trap ran and its status came back: \(result)")
            XCTAssertTrue(result.stdout.contains("after-term=0"), "\(mode): the gateway still served the trap's request: \(result)")
            XCTAssertTrue(result.stdout.contains("pypi.org"), "\(mode): the stand-in's answer reached the trap: \(result)")
        }
    }

    func testSIGKILLLeavesNothingBehind() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let marker = "airlock-kill-\(UUID().uuidString.prefix(8))"
            let before = try snapshot()
            var argv = runArgv(mode, rig)
            argv += ["--", "/bin/sh", "-c", "sleep 300; : \(marker)"]
            let run = try BackgroundProcess(argv, environment: ["PATH": "/usr/bin:/bin"])
            XCTAssertTrue(Wait.until(timeout: 30) { (try? self.processes(matching: marker).count) ?? 0 > 0 }, "\(mode)")
            run.stop(signal: SIGKILL)
            // The marker is in airlock's own command line too, so this covers the gateway
            // and the rootless builder (a fork of airlock) as well as CMD.
            XCTAssertTrue(Wait.until(timeout: 20) { (try? self.processes(matching: marker).isEmpty) ?? false },
                          "\(mode): CMD died with airlock: \((try? processes(matching: marker)) ?? [])")
            let after = try snapshot()
            XCTAssertEqual(after.links, before.links, "\(mode): no interface left in the host namespace")
            XCTAssertEqual(after.mounts, before.mounts, "\(mode): no mount left")
            XCTAssertTrue(Wait.until(timeout: 20) { ((try? self.snapshot().netns) ?? Int.max) <= before.netns },
                          "\(mode): no network namespace left")
        }
    }

    /// What a leftover would change: links in this namespace, mounts, network namespaces in use.
    func snapshot() throws -> (links: String, mounts: Int, netns: Int) {
        let links = try Run.process(["ip", "-o", "link", "show"]).stdout
            .split(separator: "\n").map { $0.split(separator: ":").dropFirst().first.map(String.init) ?? "" }.joined(separator: ",")
        let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8).split(separator: "\n").count
        let lsns = try Run.process(["lsns", "-n", "-t", "net", "-o", "NS"])
        guard lsns.status == 0, !lsns.stdout.isEmpty else { throw FixtureError("lsns listed no network namespace: \(lsns)") }
        let netns = lsns.stdout.split(separator: "\n").count
        return (links, mounts, netns)
    }

    func processes(matching pattern: String) throws -> [String] {
        let r = try Run.process(["pgrep", "-af", pattern])
        return r.stdout.split(separator: "\n").map(String.init).filter { !$0.contains("pgrep") }
    }

    // MARK: - Clear errors

    func testWithoutUserNamespacesRootlessRunSaysHowToTurnThemOn() throws {
        let rig = try rig
        // A user namespace whose own limit on user namespaces is 0, as on a host that turned
        // them off: the rootless path cannot start, and says why and what to do, in one line.
        let result = try Run.process(["/usr/bin/python3", TestPaths.fixture("without-userns.py"), rig.binary, "run", "--", "true"],
                                     environment: ["PATH": "/usr/bin:/bin"], timeout: 60)
        XCTAssertEqual(result.status, 125, "\(result)")
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line: \(result)")
        XCTAssertTrue(result.stderr.hasPrefix("airlock: error: "), "\(result)")
        XCTAssertTrue(result.stderr.contains("unprivileged user namespaces are not available (see `airlock doctor`)"), "\(result)")
        XCTAssertTrue(result.stderr.contains("sysctl user.max_user_namespaces=15000"), "\(result)")
    }

    func testClearErrorsChangeNothing() throws {
        let rig = try rig
        func run(_ args: [String], env: [String: String] = [:], rootless: Bool = false) throws -> ProcessResult {
            let argv = (rootless ? ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : []) + [rig.binary, "run"] + args
            return try Run.process(argv, environment: ["PATH": "/usr/bin:/bin"].merging(env) { $1 })
        }
        let noUser = try run(["--", "true"])
        XCTAssertNotEqual(noUser.status, 0)
        XCTAssertTrue(noUser.stderr.contains("pass --user USER"), "\(noUser)")
        XCTAssertEqual(noUser.stderr.split(separator: "\n").count, 1, "one line: \(noUser)")

        let drain = try run(["--drain-timeout", "4000", "--", "true"], rootless: true)
        XCTAssertEqual(drain.status, 125, "a usage error of run exits 125, never a status the command could use: \(drain)")
        XCTAssertTrue(drain.stderr.contains("--drain-timeout 4000 is out of range (0…3600 seconds)"), "\(drain)")
        let unread = try run(["--max-unread-bytes", "4096", "--", "true"], rootless: true)
        XCTAssertEqual(unread.status, 125, "\(unread)")
        XCTAssertTrue(unread.stderr.contains("--max-unread-bytes 4096 is out of range (1048576…1099511627776)"), "\(unread)")

        let preset = try run(["--allow", "@pipy", "--", "true"], rootless: true)
        XCTAssertNotEqual(preset.status, 0)
        XCTAssertTrue(preset.stderr.contains("@pipy"), "\(preset)")

        let repo = try run(["--repo", "own er/re..po", "--token-env", "T", "--", "true"], env: ["T": "x"], rootless: true)
        XCTAssertNotEqual(repo.status, 0)
        XCTAssertTrue(repo.stderr.contains("--repo 'own er/re..po'"), "\(repo)")

        let unset = try run(["--repo", "owner/app", "--token-env", "NOPE_UNSET", "--", "true"], rootless: true)
        XCTAssertTrue(unset.stderr.contains("--token-env NOPE_UNSET: the variable is not set"), "\(unset)")
        let empty = try run(["--repo", "owner/app", "--token-env", "T", "--", "true"], env: ["T": " "], rootless: true)
        XCTAssertTrue(empty.stderr.contains("--token-env T: the variable is empty"), "\(empty)")
        XCTAssertFalse(empty.stderr.contains("Run"), "no stack trace: \(empty)")
    }
}
