import Gateway
import XCTest
@testable import airlock
@testable import GatewayCore

/// `RunReport`: the lines `airlock run` prints when its command ends, their Markdown for
/// GitHub Actions and the `--json` objects, and the flag offered for each refusal.
final class RunReportTests: XCTestCase {
    typealias Entry = RefusalTally.Entry

    func testEachRefusalGetsTheFlagThatWouldAllowItAndNoneWhereNoFlagWould() {
        let report = RunReport(RefusalTally.Summary(entries: [
            Entry(event: "egress_deny", host: "example.org", port: 443, reason: "example.org is not on the allowlist", count: 3),
            Entry(event: "egress_deny", host: "api.example.org", port: 8443, reason: "port 8443 is not allowed for api.example.org (only 80 and 443 without a host:port rule)"),
            Entry(event: "egress_deny", host: "evil.example", port: 443, reason: "evil.example is denied by rule !evil.example (line 2)"),
            Entry(event: "egress_deny", host: "::1", port: 443, reason: "IP literal ::1 refused: connect by name, or add a cidr rule"),
            Entry(event: "egress_deny", host: "local.test", port: 443, rule: "local.test",
                  reason: "127.0.0.1 is loopback; add allow-private 127.0.0.0/8 to permit it"),
            Entry(event: "dns_deny", host: "nope.example", reason: "nope.example is not on the allowlist", qtypes: ["A", "AAAA"], count: 2),
            Entry(event: "git_deny", host: "github.com", repo: "github.com/o/secret", service: "git-upload-pack", reason: "repository not in session scope"),
            Entry(event: "git_deny", host: "github.com", repo: "github.com/o/app", service: "git-receive-pack", reason: "push with a read-only session"),
            Entry(event: "git_deny", host: "github.com", repo: "github.com/o/app", service: "git-receive-pack", reason: "push refused: refs/heads/main: protected"),
            Entry(event: "egress_deny", reason: "connection limit of 256 reached for this sandbox; refused a new connection"),
        ], untallied: 4))
        XCTAssertEqual(report.lines, [
            "airlock: refused during the run (17 times):",
            "  example.org:443 (3 times): example.org is not on the allowlist",
            "    to allow: --allow example.org (policy line: example.org)",
            "  api.example.org:8443 (1 time): port 8443 is not allowed for api.example.org (only 80 and 443 without a host:port rule)",
            "    to allow: --allow api.example.org:8443 (policy line: api.example.org:8443)",
            "  evil.example:443 (1 time): evil.example is denied by rule !evil.example (line 2)",
            "  [::1]:443 (1 time): IP literal ::1 refused: connect by name, or add a cidr rule",
            "  local.test:443 (1 time): 127.0.0.1 is loopback; add allow-private 127.0.0.0/8 to permit it",
            "    to allow: --allow-private 127.0.0.0/8=local.test (policy line: allow-private 127.0.0.0/8 for local.test)",
            "  nope.example (DNS A AAAA) (2 times): nope.example is not on the allowlist",
            "    to allow: --allow nope.example (policy line: nope.example)",
            "  github.com/o/secret (git) (1 time): repository not in session scope",
            "    to allow: --repo o/secret",
            "  github.com/o/app (git) (1 time): push with a read-only session",
            "    to allow: --repo o/app:rw",
            "  github.com/o/app (git) (1 time): push refused: refs/heads/main: protected",
            "  egress (1 time): connection limit of 256 reached for this sandbox; refused a new connection",
            "  and 4 more, of names and addresses past the first 10 listed",
        ])
    }

    func testNothingRefusedPrintsNothing() {
        let report = RunReport(RefusalTally.Summary())
        XCTAssertTrue(report.isEmpty)
        XCTAssertEqual(report.lines, [])
        XCTAssertEqual(report.markdown, "")
        XCTAssertEqual(report.jsonObjects, [])
    }

    /// The Markdown table escapes what would break a cell; JSON objects carry the flag.
    func testMarkdownAndJSON() {
        let report = RunReport(RefusalTally.Summary(entries: [
            Entry(event: "egress_deny", host: "example.org", port: 80, reason: "a|b `x`", count: 2),
            Entry(event: "dns_deny", host: "nope.example", reason: "nope.example is not on the allowlist", qtypes: ["A"]),
        ]))
        XCTAssertEqual(report.markdown, """
            ### airlock: refused during the run (3 times)

            | refused | count | reason | to allow |
            | --- | --- | --- | --- |
            | `example.org:80` | 2 | a\\|b `x` |  |
            | `nope.example (DNS A)` | 1 | nope.example is not on the allowlist | `--allow nope.example` or the policy line `nope.example` |


            """)
        XCTAssertEqual(report.jsonObjects, [
            #"{"event":"egress_deny","host":"example.org","port":80,"count":2,"reason":"a|b `x`"}"#,
            #"{"event":"dns_deny","host":"nope.example","qtypes":["A"],"count":1,"reason":"nope.example is not on the allowlist","allow":"--allow nope.example","policy_line":"nope.example"}"#,
        ])
    }
}

/// `--learn FILE` is the audit log: it replaces `--audit-log`, and giving both is refused.
final class LearnOptionTests: XCTestCase {
    func testLearnAndAuditLogAreExclusiveAndLearnIsTheAuditLog() throws {
        XCTAssertThrowsError(try RunCommand.parse(["--learn", "a.jsonl", "--audit-log", "b.jsonl", "--", "/bin/true"])) { error in
            XCTAssertEqual(RunCommand.message(for: error), "--learn a.jsonl is the audit log: give --learn or --audit-log, not both")
        }
        let learning = try RunCommand.parse(["--learn", "a.jsonl", "--", "/bin/true"])
        XCTAssertEqual(learning.gateway.auditLogPath, "a.jsonl")
        XCTAssertTrue(try learning.gateway.flagPolicy().learning)
        let enforcing = try RunCommand.parse(["--audit-log", "b.jsonl", "--", "/bin/true"])
        XCTAssertEqual(enforcing.gateway.auditLogPath, "b.jsonl")
        XCTAssertFalse(try enforcing.gateway.flagPolicy().learning)
        XCTAssertNil(enforcing.gateway.learnStartNotice)
    }
}
