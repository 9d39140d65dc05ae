import Foundation
import TestSupport
import XCTest

/// `airlock gateway serve --metrics-listen --metrics-textfile`: an operator scrapes the
/// counters from the host after the sandbox's traffic, and the sandbox cannot reach the
/// metrics listener.
final class GatewayMetricsTests: XCTestCase {
    func testScrapeAfterAnAllowedAndADeniedRequest() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-metrics-e2e")
        chmod(dir.path, 0o755)
        // The textfile directory belongs to the user the gateway serves as.
        let textDir = dir.file("textfile")
        mkdir(textDir, 0o755)
        chown(textDir, 65534, 65534)
        let http = try WebUpstream(port: 80)
        defer { http.stop() }
        let policy = dir.file("policy")
        try "allowed.test\nresolve allowed.test=127.0.0.1\nallow-private 127.0.0.1/32\n"
            .write(toFile: policy, atomically: true, encoding: .utf8)
        chmod(policy, 0o644)
        let name = "metr\(getpid() % 10000)"
        XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        let port = TCP.freePort()
        let textfile = textDir + "/airlock.prom"
        let gateway = try BackgroundProcess([
            TestPaths.airlock, "gateway", "serve", name, "--policy", policy, "--audit-log", dir.file("audit.jsonl"),
            "--metrics-listen", "127.0.0.1:\(port)", "--metrics-textfile", textfile, "--metrics-interval", "1",
        ])
        defer { gateway.stop() }
        XCTAssertTrue(Wait.until(timeout: 30) {
            (try? self.inside(name, "curl -sS --max-time 2 http://airlock.internal/healthz").stdout)?.hasPrefix("ok") == true
        }, "the gateway answers its health endpoint")

        let traffic = try inside(name, """
            curl -sS --max-time 10 --noproxy '*' http://allowed.test/a; echo
            curl -sS --max-time 10 -x http://169.254.200.1:3128 http://denied.test/; echo
            dig +tries=1 +time=3 @169.254.200.1 denied.test | grep -o 'status: [A-Z]*'
            """)
        XCTAssertTrue(traffic.stdout.contains("host=allowed.test path=/a"), "\(traffic)")
        XCTAssertTrue(traffic.stdout.contains("airlock: denied.test is not on the allowlist"), "\(traffic)")
        XCTAssertTrue(traffic.stdout.contains("status: NXDOMAIN"), "\(traffic)")

        // From the host: the counters of what just happened.
        let scrape = try Run.process(["/usr/bin/curl", "-sS", "--max-time", "5", "http://127.0.0.1:\(port)/metrics"])
        XCTAssertEqual(scrape.status, 0, "\(scrape)")
        let lines = Set(scrape.stdout.split(separator: "\n").map(String.init))
        for line in [
            #"airlock_decisions_total{sandbox="\#(name)",event="egress_allow",via="http",class="allowed"} 1"#,
            #"airlock_decisions_total{sandbox="\#(name)",event="egress_deny",via="proxy",class="policy"} 1"#,
            #"airlock_decisions_total{sandbox="\#(name)",event="dns_deny",via="dns",class="policy"} 1"#,
            #"airlock_dns_answers_total{sandbox="\#(name)",result="refused"} 1"#,
            #"airlock_upstream_dial_seconds_count{sandbox="\#(name)"} 1"#,
            #"airlock_sessions_active{sandbox="\#(name)"} 0.0"#,
            #"airlock_audit_lines_dropped_total{sandbox="\#(name)",event="dns_deny"} 0"#,
        ] {
            XCTAssertTrue(lines.contains(line), "missing \(line) in:\n\(scrape.stdout)")
        }
        func value(_ prefix: String) -> Double? {
            lines.first { $0.hasPrefix(prefix + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        XCTAssertGreaterThan(value(#"airlock_bytes_total{sandbox="\#(name)",direction="down"}"#) ?? 0, 0, scrape.stdout)
        // curl resolved allowed.test and airlock.internal through the gateway.
        XCTAssertGreaterThanOrEqual(value(#"airlock_dns_answers_total{sandbox="\#(name)",result="answered"}"#) ?? 0, 2, scrape.stdout)
        XCTAssertNotNil(value(#"airlock_connections_open{sandbox="\#(name)"}"#), scrape.stdout)
        XCTAssertFalse(scrape.stdout.contains("denied.test"), "no host name in the metrics")

        // The textfile follows within its interval.
        XCTAssertTrue(Wait.until(timeout: 10) {
            (try? String(contentsOfFile: textfile, encoding: .utf8))?.contains(
                #"airlock_decisions_total{sandbox="\#(name)",event="egress_deny",via="proxy",class="policy"} 1"#) == true
        }, "the textfile has the counts")

        // From the sandbox: the listener is in the host namespace, out of reach at every
        // address the sandbox could try.
        let probe = try inside(name, """
            for url in http://127.0.0.1:\(port)/metrics http://169.254.200.1:\(port)/metrics http://localhost:\(port)/metrics; do
              if curl -sS --max-time 3 --noproxy '*' "$url" >/dev/null 2>&1; then echo "reached $url"; else echo "unreachable $url"; fi
            done
            bash -c 'exec 3<>/dev/tcp/169.254.200.1/3128; printf "GET http://127.0.0.1:\(port)/metrics HTTP/1.1\\r\\nHost: 127.0.0.1:\(port)\\r\\nConnection: close\\r\\n\\r\\n" >&3; timeout 10 cat <&3'; echo
            """)
        XCTAssertFalse(probe.stdout.contains("reached"), "\(probe)")
        XCTAssertEqual(probe.stdout.split(separator: "\n").filter { $0.hasPrefix("unreachable") }.count, 3, "\(probe)")
        XCTAssertFalse(probe.stdout.contains("airlock_"), "\(probe)")
        XCTAssertTrue(probe.stdout.contains("airlock: IP literal 127.0.0.1 refused"), "the proxy refuses it too: \(probe)")

        // At shutdown the textfile gets the final counts; no temporary file is left.
        _ = gateway.stop()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: textDir), ["airlock.prom"])
    }

    /// A textfile directory the --run-as user cannot write: refused at start, one line.
    func testUnwritableTextfileDirectoryIsRefusedAtStart() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-metrics-e2e")
        chmod(dir.path, 0o755)
        let name = "metu\(getpid() % 10000)"
        XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        let policy = dir.file("policy")
        try "allowed.test\n".write(toFile: policy, atomically: true, encoding: .utf8)
        chmod(policy, 0o644)
        let result = try Run.airlock(["gateway", "serve", name, "--policy", policy, "--metrics-textfile", dir.file("airlock.prom")],
                                     timeout: 30)
        XCTAssertEqual(result.status, 1, "\(result)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.file("airlock.prom")))
        XCTAssertEqual(result.stderr, "airlock: error: cannot write metrics textfile \(dir.path)/airlock.prom.tmp: Permission denied (the directory must be writable by nobody)\n")

        // Bad metrics flags are refused before anything is bound or opened.
        let audit = dir.file("audit.jsonl")
        for (flags, line) in [
            (["--metrics-listen", "localhost:9464"],
             "--metrics-listen localhost:9464: expected ADDRESS:PORT with a numeric address, such as 127.0.0.1:9464 or [::1]:9464"),
            (["--metrics-textfile", dir.file("m.prom"), "--metrics-interval", "0"], "--metrics-interval 0: expected 1 to 86400 seconds"),
        ] {
            let refused = try Run.airlock(["gateway", "serve", name, "--policy", policy, "--audit-log", audit] + flags, timeout: 30)
            XCTAssertEqual(refused.status, 1, "\(refused)")
            XCTAssertEqual(refused.stderr, "airlock: error: \(line)\n")
            XCTAssertFalse(FileManager.default.fileExists(atPath: audit), "nothing opened for \(flags)")
        }
    }

    /// Runs `script` inside the sandbox `name` as nobody.
    func inside(_ name: String, _ script: String) throws -> ProcessResult {
        try Run.airlock(["netns", "exec", name, "--user", "nobody", "--cwd", "/", "--", "/bin/sh", "-c", script], timeout: 60)
    }
}
