#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import NIOPosix
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// The gateway's Prometheus metrics: what known events count, the exposition text an
/// operator scrapes, the listener and the textfile, and the refusals of bad flags.
final class MetricsTests: XCTestCase {
    /// The exposition's sample lines (no `# HELP`/`# TYPE`), as a set.
    private func samples(_ text: String) -> Set<String> {
        Set(text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init))
    }

    private func knownEvents() -> (GatewayMetrics, AuditLog) {
        let metrics = GatewayMetrics(sandbox: "sbx")
        let log = AuditLog(sink: MemoryAuditSink(), sandbox: "sbx", denials: DenialBudget.Limits(burst: 4, perSecond: 1),
                           clock: { 0 }, metrics: metrics)
        log.record(AuditEvent(.egressAllow, via: .sni, host: "allowed.example", port: 443, rule: "allowed.example",
                              bytesUp: 120, bytesDown: 3000, ms: 40))
        log.record(AuditEvent(.egressAllow, via: .http, host: "allowed.example", port: 80, rule: "allowed.example",
                              bytesUp: 80, bytesDown: 1000, ms: 5, status: 200))
        log.record(AuditEvent(.egressDeny, via: .connect, host: "secret-name.example", port: 443,
                              reason: "secret-name.example is not on the allowlist"))
        log.record(AuditEvent(.egressDeny, via: .sni, host: "allowed.example", port: 443, rule: "allowed.example",
                              reason: "cannot connect to allowed.example:443", bytesUp: 0, bytesDown: 0, ms: 3))
        // A budget of four denial lines that never refills (the clock stands still): the two
        // egress refusals and two of the four names are written; the rest is dropped.
        log.record(contentsOf: (1...4).map {
            AuditEvent(.dnsDeny, via: .dns, host: "name\($0).example", reason: "name\($0).example is not on the allowlist", qtype: "A")
        })
        log.record(AuditEvent(.gitAllow, via: .git, host: "github.com", bytesUp: 500, bytesDown: 70000, ms: 1500,
                              repo: "github.com/o/r", service: "git-upload-pack", status: 200))
        log.record(AuditEvent(.gitDeny, via: .git, host: "github.com", reason: "no session token", ms: 2,
                              repo: "github.com/o/r", service: "git-receive-pack", status: 401))
        log.record(AuditEvent(.gitDeny, via: .git, host: "github.com", reason: "outside the session's scope", ms: 2,
                              repo: "github.com/o/other", service: "git-upload-pack", status: 403))
        log.record(AuditEvent(.sshDeny, via: .ssh, host: "github.com", port: 22, reason: "SSH is not offered"))
        log.record(AuditEvent(.policyReload, ok: true, file: "/etc/airlock/policy"))
        log.record(AuditEvent(.policyReload, reason: "line 2: not a rule", ok: false, file: "/etc/airlock/policy"))
        log.record(AuditEvent(.sessionCreate, session: "abc123", scope: ["github.com/o/r:rw"]))
        log.record(AuditEvent(.secretSet, secret: "TOKEN"))
        metrics.dnsAnswered(5)
        metrics.upstreamDialed(after: .milliseconds(3))
        metrics.upstreamDialed(after: .milliseconds(700))
        metrics.sampleConnections { (connections: 3, tunnels: 2) }
        metrics.sampleSessions { 1 }
        return (metrics, log)
    }

    func testExpositionCountsKnownEvents() {
        let (metrics, _) = knownEvents()
        let text = metrics.exposition()
        let lines = samples(text)
        let expected: [String] = [
            #"airlock_decisions_total{sandbox="sbx",event="egress_allow",via="sni",class="allowed"} 1"#,
            #"airlock_decisions_total{sandbox="sbx",event="egress_allow",via="http",class="allowed"} 1"#,
            #"airlock_decisions_total{sandbox="sbx",event="egress_deny",via="connect",class="policy"} 1"#,
            #"airlock_decisions_total{sandbox="sbx",event="egress_deny",via="sni",class="upstream"} 1"#,
            #"airlock_decisions_total{sandbox="sbx",event="dns_deny",via="dns",class="policy"} 4"#,
            #"airlock_decisions_total{sandbox="sbx",event="git_allow",via="git",class="allowed"} 1"#,
            #"airlock_decisions_total{sandbox="sbx",event="git_deny",via="git",class="unauthenticated"} 1"#,
            #"airlock_decisions_total{sandbox="sbx",event="git_deny",via="git",class="forbidden"} 1"#,
            #"airlock_decisions_total{sandbox="sbx",event="ssh_deny",via="ssh",class="not_offered"} 1"#,
            #"airlock_bytes_total{sandbox="sbx",direction="up"} 700"#,
            #"airlock_bytes_total{sandbox="sbx",direction="down"} 74000"#,
            #"airlock_dns_answers_total{sandbox="sbx",result="answered"} 5"#,
            #"airlock_dns_answers_total{sandbox="sbx",result="refused"} 4"#,
            #"airlock_audit_lines_dropped_total{sandbox="sbx",event="dns_deny"} 2"#,
            #"airlock_audit_lines_dropped_total{sandbox="sbx",event="egress_deny"} 0"#,
            #"airlock_audit_lines_dropped_total{sandbox="sbx",event="git_deny"} 2"#,
            #"airlock_audit_lines_dropped_total{sandbox="sbx",event="ssh_deny"} 1"#,
            #"airlock_policy_reloads_total{sandbox="sbx",result="ok"} 1"#,
            #"airlock_policy_reloads_total{sandbox="sbx",result="failed"} 1"#,
            #"airlock_session_events_total{sandbox="sbx",event="session_create"} 1"#,
            #"airlock_session_events_total{sandbox="sbx",event="session_expire"} 0"#,
            #"airlock_session_events_total{sandbox="sbx",event="session_restore"} 0"#,
            #"airlock_connections_open{sandbox="sbx"} 3.0"#,
            #"airlock_tunnels_open{sandbox="sbx"} 2.0"#,
            #"airlock_sessions_active{sandbox="sbx"} 1.0"#,
            #"airlock_upstream_dial_seconds_count{sandbox="sbx"} 2"#,
            #"airlock_upstream_dial_seconds_bucket{sandbox="sbx",le="0.005"} 1"#,
            #"airlock_upstream_dial_seconds_bucket{sandbox="sbx",le="1.0"} 2"#,
            #"airlock_git_exchange_seconds_count{sandbox="sbx"} 3"#,
            #"airlock_git_exchange_seconds_bucket{sandbox="sbx",le="1.0"} 2"#,
            #"airlock_git_exchange_seconds_bucket{sandbox="sbx",le="2.5"} 3"#,
        ]
        for line in expected {
            XCTAssertTrue(lines.contains(line), "missing \(line) in:\n\(text)")
        }
        XCTAssertTrue(text.contains("# TYPE airlock_decisions_total counter"), text)
        XCTAssertTrue(text.contains("# HELP airlock_decisions_total "), text)
        XCTAssertTrue(text.contains("# TYPE airlock_upstream_dial_seconds histogram"), text)
        // Label values come from bounded sets: no host, repository, reason, session or secret.
        for unbounded in ["example", "github.com", "o/r", "abc123", "TOKEN", "allowlist", "/etc/airlock"] {
            XCTAssertFalse(text.contains(unbounded), "\(unbounded) must not be a label value:\n\(text)")
        }
    }

    func testReasonClassOfEachRefusal() {
        XCTAssertEqual(GatewayMetrics.reasonClass(of: AuditEvent(.apiDeny, status: 502)), .upstream)
        XCTAssertEqual(GatewayMetrics.reasonClass(of: AuditEvent(.apiDeny, status: 400)), .request)
        XCTAssertEqual(GatewayMetrics.reasonClass(of: AuditEvent(.gitDeny)), .other)
        XCTAssertEqual(GatewayMetrics.reasonClass(of: AuditEvent(.apiAllow, status: 200)), .allowed)
    }

    func testServerAnswersMetricsOnlyAtItsPath() throws {
        let (metrics, _) = knownEvents()
        let port = TCP.freePort()
        let listener = try MetricsListener.bind("127.0.0.1:\(port)")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let server = MetricsServer(listener: listener, metrics: metrics, group: group)
        let task = Task { try await server.run() }
        defer { task.cancel() }
        XCTAssertTrue(Wait.forTCP(port: port))

        let scrape = try Run.process(["/usr/bin/curl", "-sS", "-i", "--max-time", "5", "http://127.0.0.1:\(port)/metrics"])
        XCTAssertEqual(scrape.status, 0, "\(scrape)")
        XCTAssertTrue(scrape.stdout.hasPrefix("HTTP/1.1 200 OK\r\n"), scrape.stdout)
        XCTAssertTrue(scrape.stdout.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), scrape.stdout)
        XCTAssertTrue(scrape.stdout.contains(#"airlock_decisions_total{sandbox="sbx",event="egress_deny",via="connect",class="policy"} 1"#), scrape.stdout)

        let other = try Run.process(["/usr/bin/curl", "-sS", "-i", "--max-time", "5", "http://127.0.0.1:\(port)/"])
        XCTAssertTrue(other.stdout.hasPrefix("HTTP/1.1 404 Not Found\r\n"), other.stdout)
        XCTAssertTrue(other.stdout.hasSuffix("\r\n\r\nonly GET /metrics is served\n"), other.stdout)
        let post = try Run.process(["/usr/bin/curl", "-sS", "-i", "--max-time", "5", "-X", "POST", "http://127.0.0.1:\(port)/metrics"])
        XCTAssertTrue(post.stdout.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"), post.stdout)
    }

    func testListenAddressRefusals() throws {
        for bad in ["localhost:9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:9464", "[::1]", "9464"] {
            XCTAssertThrowsError(try MetricsListener.parse(bad)) { error in
                XCTAssertEqual("\(error)", "--metrics-listen \(bad): expected ADDRESS:PORT with a numeric address, such as 127.0.0.1:9464 or [::1]:9464")
            }
        }
        XCTAssertEqual(try MetricsListener.parse("[::1]:9464").port, 9464)
        XCTAssertEqual(try MetricsListener.parse("127.0.0.1:9464").ipAddress, "127.0.0.1")
        // A port already taken: the system's reason, one line.
        let port = TCP.freePort()
        let first = try MetricsListener.bind("127.0.0.1:\(port)")
        defer { close(first.descriptor) }
        XCTAssertThrowsError(try MetricsListener.bind("127.0.0.1:\(port)")) { error in
            XCTAssertEqual("\(error)", "cannot listen for metrics on 127.0.0.1:\(port): Address already in use")
        }
    }

    func testTextfileIsReplacedWhole() throws {
        let (metrics, log) = knownEvents()
        let dir = try TemporaryDirectory()
        let path = dir.file("airlock.prom")
        let textfile = MetricsTextfile(path: path, metrics: metrics, interval: .seconds(1))
        try textfile.write()
        var text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(samples(text).contains(#"airlock_decisions_total{sandbox="sbx",event="ssh_deny",via="ssh",class="not_offered"} 1"#), text)
        log.record(AuditEvent(.sshDeny, via: .ssh, port: 22, reason: "SSH is not offered"))
        try textfile.write()
        text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(samples(text).contains(#"airlock_decisions_total{sandbox="sbx",event="ssh_deny",via="ssh",class="not_offered"} 2"#), text)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["airlock.prom"], "no temporary file left")

        let missing = MetricsTextfile(path: dir.file("no/such/airlock.prom"), metrics: metrics, interval: .seconds(1))
        XCTAssertThrowsError(try missing.write()) { error in
            XCTAssertEqual("\(error)", "cannot write metrics textfile \(dir.path)/no/such/airlock.prom.tmp: No such file or directory")
        }
    }
}
