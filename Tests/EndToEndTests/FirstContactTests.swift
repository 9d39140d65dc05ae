import Foundation
import TestSupport
import XCTest

/// What a new user sees when something is refused in `airlock run`: the report printed when
/// the command ends (stderr, `--json`, GitHub Actions' step summary), and git's own output
/// for a clone in a run given no `--repo`. As root (`--user nobody`) and rootless (as uid
/// 65534), with the built binary and real curl, dig and git. Nothing is dialled: every
/// name asked for is refused by the gateway.
final class FirstContactTests: XCTestCase {
    /// Shared by every test of the class: a copy of the binary an unprivileged user can
    /// run, and an HTTPS stand-in on 127.0.0.1:443 for a package index (`index.test`) whose
    /// files are on a second name (`files.test`), as PyPI's are.
    final class Rig {
        let dir: TemporaryDirectory
        let binary: String
        let ca: TestCA
        let https: WebUpstream

        init() throws {
            dir = try TemporaryDirectory(prefix: "airlock-first-contact")
            chmod(dir.path, 0o755)
            ca = try TestCA(in: dir.path, names: ["index.test", "files.test", "other.test"])
            https = try WebUpstream(port: 443, tls: ca)
            binary = try dir.copyOfAirlock()
        }

        /// A fresh directory uid 65534 can write.
        func workDirectory() throws -> String {
            try dir.workDirectory()
        }
    }

    static let shared = SharedRig<Rig>("first contact rig")

    override class func setUp() {
        super.setUp()
        shared.setUp { try Rig() }
    }

    override class func tearDown() {
        shared.tearDown()
        super.tearDown()
    }

    var rig: Rig {
        get throws { try Self.shared.get() }
    }

    /// Runs `airlock run FLAGS -- /bin/sh -c SCRIPT` in `mode` with `extra` added to
    /// airlock's environment.
    func airlockRun(_ mode: RunMode, _ flags: [String], script: String, extra: [String: String] = [:]) throws -> ProcessResult {
        let rig = try rig
        var argv: [String] = switch mode {
        case .root: [rig.binary, "run", "--user", "nobody"]
        case .rootless: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", rig.binary, "run"]
        }
        argv += flags + ["--", "/bin/sh", "-c", script]
        var environment = ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/nonexistent", "LANG": "C"]
        environment.merge(extra) { $1 }
        return try Run.process(argv, environment: environment, currentDirectory: rig.dir.path, timeout: 120)
    }

    /// The report lists each refused host:port and name with its count, the reason and the
    /// exact flag (and policy line) that would allow it; `--json` carries the same, and
    /// with `GITHUB_STEP_SUMMARY` set it is appended there as a Markdown table.
    func testRunReportSaysWhatWasRefusedAndHowToAllowIt() throws {
        for mode in RunMode.allCases {
            let summary = try rig.workDirectory() + "/step-summary.md"
            try "# earlier step\n".write(toFile: summary, atomically: false, encoding: .utf8)
            chown(summary, 65534, 65534)
            let result = try airlockRun(mode, ["--allow", "pypi.org", "--json"], script: """
                curl -sS --max-time 20 https://denied.example/ 2>&1; echo "connect=$?"
                curl -sS --max-time 20 https://denied.example/ 2>&1; echo "again=$?"
                curl -sS --max-time 20 http://odd.example:8080/; echo "http=$?"
                dig +tries=1 +time=5 nope.example A | grep -o 'status: [A-Z]*'
                """, extra: ["GITHUB_STEP_SUMMARY": summary])
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("CONNECT tunnel failed, response 403"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("airlock: odd.example is not on the allowlist; pass --allow odd.example"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("status: NXDOMAIN"), "\(mode): \(result)")

            let lines = result.stderr.split(separator: "\n").map(String.init)
            let start = try XCTUnwrap(lines.firstIndex(of: "airlock: refused during the run (4 times):"), "\(mode): \(result)")
            XCTAssertEqual(Array(lines[start...].prefix(7)), [
                "airlock: refused during the run (4 times):",
                "  denied.example:443 (2 times): denied.example is not on the allowlist",
                "    to allow: --allow denied.example (policy line: denied.example)",
                "  odd.example:8080 (1 time): odd.example is not on the allowlist",
                "    to allow: --allow odd.example:8080 (policy line: odd.example:8080)",
                "  nope.example (DNS A) (1 time): nope.example is not on the allowlist",
                "    to allow: --allow nope.example (policy line: nope.example)",
            ], "\(mode): \(result)")

            let exit = try XCTUnwrap(lines.last { $0.hasPrefix(#"{"event":"run_exit""#) }, "\(mode): \(result)")
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(exit.utf8)) as? [String: Any], "\(mode): \(exit)")
            let refused = try XCTUnwrap(object["refused"] as? [[String: Any]], "\(mode): \(exit)")
            XCTAssertEqual(refused.compactMap { $0["allow"] as? String },
                           ["--allow denied.example", "--allow odd.example:8080", "--allow nope.example"], "\(mode): \(exit)")
            XCTAssertEqual(refused.compactMap { $0["count"] as? Int }, [2, 1, 1], "\(mode): \(exit)")
            XCTAssertEqual(refused.first?["port"] as? Int, 443, "\(mode): \(exit)")
            XCTAssertEqual(refused.last?["qtypes"] as? [String], ["A"], "\(mode): \(exit)")

            let markdown = try String(contentsOfFile: summary, encoding: .utf8)
            XCTAssertTrue(markdown.hasPrefix("# earlier step\n### airlock: refused during the run (4 times)\n"), "\(mode): appended: \(markdown)")
            XCTAssertTrue(markdown.contains("| `denied.example:443` | 2 | denied.example is not on the allowlist | `--allow denied.example` or the policy line `denied.example` |"),
                          "\(mode): \(markdown)")
            XCTAssertTrue(markdown.contains("| `nope.example (DNS A)` | 1 |"), "\(mode): \(markdown)")
        }
    }

    /// Learn, suggest, enforce: a learn run fetches from the index and its files host (both
    /// on loopback, which only the pins and `allow-private` flags reach); `policy suggest`
    /// turns the learn file into a policy; an enforced run with that policy fetches the same
    /// and is refused a name it never used.
    func testLearnThenSuggestThenEnforce() throws {
        let pins = ["--resolve", "index.test=127.0.0.1", "--resolve", "files.test=127.0.0.1", "--resolve", "other.test=127.0.0.1",
                    "--allow-private", "127.0.0.0/8=index.test", "--allow-private", "127.0.0.0/8=files.test",
                    "--allow-private", "127.0.0.0/8=other.test"]
        for mode in RunMode.allCases {
            let rig = try rig
            let fetch = """
                curl -sS --max-time 20 --cacert \(rig.ca.caFile) https://index.test/simple/demo/ && echo
                curl -sS --max-time 20 --cacert \(rig.ca.caFile) https://files.test/packages/demo-1.0.tar.gz && echo
                """
            // As root the learn file lies where the command's account cannot write; rootless,
            // the gateway is that account, and the file is hidden from the command.
            let learned = mode == .root ? rig.dir.file("learn-\(UUID().uuidString.prefix(8)).jsonl") : try rig.workDirectory() + "/learn.jsonl"
            let learn = try airlockRun(mode, ["--learn", learned] + pins, script: fetch)
            XCTAssertEqual(learn.status, 0, "\(mode): \(learn)")
            XCTAssertEqual(learn.stdout, "host=index.test path=/simple/demo/\nhost=files.test path=/packages/demo-1.0.tar.gz\n", "\(mode): \(learn)")
            XCTAssertTrue(learn.stderr.contains("airlock: learn mode: NOTHING IS ENFORCED: every name is reachable on every port (no IP literals, no private addresses); what is used is recorded in \(learned)"), "\(mode): \(learn)")
            XCTAssertTrue(learn.stderr.contains("airlock: learn mode: nothing was enforced; what was used is in \(learned); turn it into a policy with `airlock policy suggest \(learned)`"), "\(mode): \(learn)")

            let suggest = try Run.process([rig.binary, "policy", "suggest", learned], environment: ["PATH": "/usr/bin:/bin"])
            XCTAssertEqual(suggest.status, 0, "\(mode): \(suggest)")
            let rules = suggest.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }
            XCTAssertEqual(rules, ["index.test", "files.test"], "\(mode): \(suggest)")
            let policy = rig.dir.file("suggested-\(UUID().uuidString.prefix(8)).txt")
            try suggest.stdout.write(toFile: policy, atomically: true, encoding: .utf8)
            chmod(policy, 0o644)

            let enforced = try airlockRun(mode, ["--policy", policy] + pins, script: fetch + "\n" + """
                curl -sS --max-time 20 --cacert \(rig.ca.caFile) https://other.test/ 2>&1; echo "other=$?"
                """)
            XCTAssertEqual(enforced.status, 0, "\(mode): \(enforced)")
            XCTAssertTrue(enforced.stdout.hasPrefix("host=index.test path=/simple/demo/\nhost=files.test path=/packages/demo-1.0.tar.gz\n"), "\(mode): \(enforced)")
            XCTAssertTrue(enforced.stdout.contains("CONNECT tunnel failed, response 403"), "\(mode): \(enforced)")
            XCTAssertFalse(enforced.stderr.contains("learn mode"), "\(mode): \(enforced)")
            XCTAssertTrue(enforced.stderr.contains("  other.test:443 (1 time): other.test is not on the allowlist\n"), "\(mode): \(enforced)")
        }
    }

    /// The learn round trip with a real client: pip installs a package from a local index
    /// stand-in whose files are on a second name, as PyPI's are (index.test and files.test,
    /// both on port 8447), through the proxy variables `run` sets. The learn run records
    /// both names; `policy suggest` turns that into a policy with their port; an enforced
    /// run with that policy installs the same package, and the package imports.
    func testPipInstallLearnThenSuggestThenEnforce() throws {
        let rig = try rig
        let index = try BackgroundProcess([
            "/usr/bin/python3", TestPaths.fixture("index-server.py"), "--port", "8447", "--cert", rig.ca.certificate, "--key", rig.ca.key,
            "--index-host", "index.test", "--files-host", "files.test"])
        defer { index.stop() }
        guard Wait.forTCP(port: 8447, timeout: 20) else { throw FixtureError("index-server.py did not start: \(index.stop().stderr)") }
        let pins = ["--resolve", "index.test=127.0.0.1", "--resolve", "files.test=127.0.0.1",
                    "--allow-private", "127.0.0.0/8=index.test", "--allow-private", "127.0.0.0/8=files.test"]
        for mode in RunMode.allCases {
            let work = try rig.workDirectory()
            let install = { (target: String) in """
                /usr/bin/python3 -m pip install -q --no-cache-dir --disable-pip-version-check --target \(work)/\(target) \\
                    --index-url https://index.test:8447/simple/ --cert \(rig.ca.caFile) airlock-demo 2>&1 || echo "pip failed: $?"
                PYTHONPATH=\(work)/\(target) /usr/bin/python3 -c 'import airlock_demo; print(airlock_demo.GREETING)'
                """ }
            let learned = mode == .root ? rig.dir.file("pip-learn-\(UUID().uuidString.prefix(8)).jsonl") : work + "/learn.jsonl"
            let learn = try airlockRun(mode, ["--learn", learned] + pins, script: install("learned"))
            XCTAssertEqual(learn.status, 0, "\(mode): \(learn)")
            XCTAssertEqual(learn.stdout, "hello from airlock-demo\n", "\(mode): \(learn)")
            XCTAssertTrue(learn.stderr.contains("airlock: learn mode: nothing was enforced; what was used is in \(learned)"), "\(mode): \(learn)")

            let suggest = try Run.process([rig.binary, "policy", "suggest", learned], environment: ["PATH": "/usr/bin:/bin"])
            XCTAssertEqual(suggest.status, 0, "\(mode): \(suggest)")
            let rules = suggest.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }
            XCTAssertEqual(Set(rules), ["index.test:8447", "files.test:8447"], "\(mode): \(suggest)")
            let policy = rig.dir.file("pip-suggested-\(UUID().uuidString.prefix(8)).txt")
            try suggest.stdout.write(toFile: policy, atomically: true, encoding: .utf8)
            chmod(policy, 0o644)

            let enforced = try airlockRun(mode, ["--policy", policy] + pins, script: install("enforced"))
            XCTAssertEqual(enforced.status, 0, "\(mode): \(enforced)")
            XCTAssertEqual(enforced.stdout, "hello from airlock-demo\n", "\(mode): \(enforced)")
            XCTAssertFalse(enforced.stderr.contains("refused during the run"), "\(mode): \(enforced)")
            XCTAssertTrue(enforced.stderr.contains(#""host":"files.test","port":8447,"rule":"files.test:8447""#), "\(mode): \(enforced)")
        }
    }

    /// Nothing refused, nothing said: no report on stderr, an empty `refused` in `--json`,
    /// and the step summary left alone.
    func testRunReportIsQuietWhenNothingWasRefused() throws {
        for mode in RunMode.allCases {
            let summary = try rig.workDirectory() + "/step-summary.md"
            let result = try airlockRun(mode, ["--json"], script: "echo ran", extra: ["GITHUB_STEP_SUMMARY": summary])
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertEqual(result.stdout, "ran\n", "\(mode): \(result)")
            XCTAssertFalse(result.stderr.contains("refused during the run"), "\(mode): \(result)")
            let exit = try XCTUnwrap(result.stderr.split(separator: "\n").last, "\(mode): \(result)")
            XCTAssertTrue(exit.hasPrefix(#"{"event":"run_exit","sandbox":"run-"#) && exit.hasSuffix(#""status":0,"refused":[]}"#), "\(mode): \(result)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: summary), "\(mode): nothing written to the step summary")
        }
    }

    /// `git clone https://HOST/OWNER/REPO` (or its SSH spelling) in a run given no `--repo`
    /// reaches the gateway, which answers with the flag to pass; git prints it as a
    /// `remote:` line, and the report lists the repository with that flag.
    ///
    /// The git host is one named by `--git-upstream` (never dialled): this machine's own
    /// git configuration rewrites `https://github.com/` host-wide, and a rule of the user's
    /// for a whole host is read before airlock's and wins (see docs/git-gateway.md).
    func testGitCloneWithoutRepoSaysWhichRepoToPass() throws {
        for mode in RunMode.allCases {
            let work = try rig.workDirectory()
            let result = try airlockRun(mode, ["--git-upstream", "git.corp.test=https://127.0.0.1:9"], script: """
                cd \(work)
                git clone https://git.corp.test/owner/app 2>&1; echo "https=$?"
                git clone git@git.corp.test:owner/app.git 2>&1; echo "ssh=$?"
                """)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            let remote = "remote: airlock: this run has no --repo for git.corp.test/owner/app; pass --repo git.corp.test/owner/app and the token with --token-env VAR or --token-file FILE"
            XCTAssertEqual(result.stdout.components(separatedBy: remote + "\n").count, 3, "\(mode): both clones show the line: \(result)")
            XCTAssertTrue(result.stdout.contains("https=128") && result.stdout.contains("ssh=128"), "\(mode): \(result)")
            XCTAssertFalse(result.stdout.contains("Could not resolve host"), "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains("""
                  git.corp.test/owner/app (git) (2 times): this run has no --repo for git.corp.test/owner/app
                    to allow: --repo git.corp.test/owner/app

                """), "\(mode): \(result)")
        }
    }

    /// `ssh` and git's SSH spellings that are not rewritten reach port 22 of the gateway,
    /// which answers that SSH is not offered and how to use HTTPS: OpenSSH prints the
    /// disconnect's description, git prints it before its own error, and each connection
    /// is audited as `ssh_deny` and listed in the report.
    func testSSHIsAnsweredWithHowToUseHTTPS() throws {
        let said = "Received disconnect from 169.254.200.1 port 22:7: airlock: SSH is not offered through the gateway; use HTTPS, e.g. git clone https://github.com/OWNER/REPO with airlock run --repo OWNER/REPO"
        for mode in RunMode.allCases {
            let work = try rig.workDirectory()
            let result = try airlockRun(mode, ["--git-upstream", "git.corp.test=https://127.0.0.1:9"], script: """
                cd \(work)
                ssh -o BatchMode=yes git@git.corp.test 2>&1; echo "ssh=$?"
                git clone deploy@git.corp.test:owner/app.git 2>&1; echo "git=$?"
                """)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            // OpenSSH ends its messages with CR LF.
            XCTAssertEqual(result.stdout.components(separatedBy: said + "\r\n").count, 3, "\(mode): both show the description: \(result)")
            XCTAssertTrue(result.stdout.contains("ssh=255\n"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("fatal: Could not read from remote repository.") && result.stdout.contains("git=128\n"),
                          "\(mode): \(result)")
            XCTAssertFalse(result.stdout.contains("Could not resolve hostname"), "\(mode): \(result)")
            XCTAssertEqual(result.stderr.components(separatedBy: #""event":"ssh_deny","sandbox":"run-"#).count, 3, "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains(#""via":"ssh","host":"169.254.200.1","port":22,"reason":"SSH is not offered; the client was told to use HTTPS""#),
                          "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains("  SSH to 169.254.200.1:22 (2 times): SSH is not offered; use HTTPS (git: https:// URLs with --repo OWNER/REPO)\n"),
                          "\(mode): \(result)")
        }
    }

    /// A `host:port` rule off 80 and 443 works for clients that ignore proxy variables:
    /// the gateway listens on that port and routes TLS by its server name and HTTP by
    /// `Host`, as on 443 and 80. A name allowed only on another port is refused there,
    /// with its audit line and the rule that would allow it.
    func testOtherAllowedPortsAreReachableWithoutTheProxy() throws {
        let tls = try WebUpstream(port: 8444, tls: try rig.ca)
        let plain = try WebUpstream(port: 8081)
        _ = (tls, plain)
        let flags = ["--allow", "index.test:8444", "--allow", "index.test:8081", "--allow", "files.test:9443",
                     "--resolve", "index.test=127.0.0.1", "--resolve", "files.test=127.0.0.1",
                     "--allow-private", "127.0.0.0/8=index.test", "--allow-private", "127.0.0.0/8=files.test"]
        for mode in RunMode.allCases {
            let result = try airlockRun(mode, flags, script: """
                curl -sS --noproxy '*' --max-time 20 --cacert \(try rig.ca.caFile) https://index.test:8444/tls && echo
                curl -sS --noproxy '*' --max-time 20 http://index.test:8081/plain && echo
                curl -sS --noproxy '*' --max-time 20 --cacert \(try rig.ca.caFile) https://files.test:8444/x 2>/dev/null; echo "refused=$?"
                """)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertTrue(result.stdout.hasPrefix("host=index.test:8444 path=/tls\nhost=index.test:8081 path=/plain\n"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("refused=35\n") || result.stdout.contains("refused=56\n"), "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains(
                #""event":"egress_deny","sandbox":"run-"#), "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains(
                #""via":"sni","host":"files.test","port":8444,"reason":"port 8444 is not allowed for files.test"#), "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains(#""event":"egress_allow","sandbox":"run-"#) && result.stderr.contains(#""via":"sni","host":"index.test","port":8444,"rule":"index.test:8444"#),
                          "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains(#""via":"http","host":"index.test","port":8081,"status":200,"rule":"index.test:8081"#), "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains("    to allow: --allow files.test:8444 (policy line: files.test:8444)\n"), "\(mode): \(result)")
        }
    }

    /// A host not on the allowlist, reached through the proxy by wget and pip: each prints
    /// the refused CONNECT's status line, whose reason phrase says why (they print nothing
    /// else of the answer).
    func testWgetAndPipPrintWhyAHostWasRefused() throws {
        for mode in RunMode.allCases {
            let result = try airlockRun(mode, [], script: """
                wget -nv -O /dev/null https://denied.test/ 2>&1; echo "wget: $?"
                /usr/bin/python3 -m pip download --no-cache-dir --no-deps --retries 1 --timeout 10 \\
                    --disable-pip-version-check -d /tmp/dl --index-url https://denied.test/simple/ airlock-demo 2>&1; echo "pip: $?"
                """)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("Proxy tunneling failed: airlock: denied.test is not on the allowlist"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("wget: 4\n"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("Tunnel connection failed: 403 airlock: denied.test is not on the allowlist"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("pip: 1\n"), "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains("to allow: --allow denied.test (policy line: denied.test)"), "\(mode): \(result)")
        }
    }

    /// Node's `fetch` ignores proxy variables (they are removed here too): it reaches an
    /// allowed `host:8443` by the name DNS answered, through the gateway's listener on that
    /// port (TLS routed by its server name), and a name allowed only on another port fails
    /// there. Asserted on what node prints.
    func testNodeFetchReachesAnAllowedPortWithoutProxySettings() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/node") else {
            throw XCTSkip("node is not installed (Debian's nodejs; scripts/setup installs it)")
        }
        let upstream = try WebUpstream(port: 8443, tls: try rig.ca)
        _ = upstream
        let flags = ["--allow", "index.test:8443", "--allow", "files.test:9443",
                     "--resolve", "index.test=127.0.0.1", "--resolve", "files.test=127.0.0.1",
                     "--allow-private", "127.0.0.0/8=index.test", "--allow-private", "127.0.0.0/8=files.test"]
        let program = """
            const show = async (url) => {
              try {
                const response = await fetch(url);
                console.log(url, response.status, (await response.text()).trim());
              } catch (error) {
                console.log(url, 'failed:', error.message, (error.cause && (error.cause.code || error.cause.message)) || '');
              }
            };
            (async () => { await show('https://index.test:8443/node'); await show('https://files.test:8443/node'); })();
            """
        let script = try rig.dir.file("fetch.js")
        try program.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o644)
        for mode in RunMode.allCases {
            let result = try airlockRun(mode, flags, script: """
                env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u all_proxy -u ALL_PROXY \
                    NODE_EXTRA_CA_CERTS=\(try rig.ca.caFile) /usr/bin/node \(script)
                """)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("https://index.test:8443/node 200 host=index.test:8443 path=/node\n"), "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("https://files.test:8443/node failed: fetch failed"), "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains(#""via":"sni","host":"index.test","port":8443,"rule":"index.test:8443""#), "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains(#""via":"sni","host":"files.test","port":8443,"reason":"port 8443 is not allowed for files.test (no rule for this port; rules allow 9443)""#),
                          "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains("    to allow: --allow files.test:8443 (policy line: files.test:8443)\n"), "\(mode): \(result)")
        }
    }

    /// More ports than the gateway listens on is refused before anything starts.
    func testTooManyPortsAreRefusedWithOneLine() throws {
        let flags = (8001...8011).flatMap { ["--allow", "many.test:\($0)"] }
        let result = try airlockRun(.root, flags, script: "echo ran")
        XCTAssertNotEqual(result.status, 0, "\(result)")
        XCTAssertFalse(result.stdout.contains("ran"), "\(result)")
        XCTAssertEqual(result.stderr, "airlock: error: command line: 11 ports besides 80 and 443 are allowed (8001, 8002, 8003, 8004, 8005, 8006, 8007, 8008, 8009, 8010, 8011); the gateway listens on at most 10: allow fewer ports\n", "\(result)")
    }
}
