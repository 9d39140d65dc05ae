@testable import Gateway
import NIOCore
import NIOHTTP1
import XCTest
@testable import GatewayCore

/// The counts behind `airlock run`'s report (`RefusalTally`) and the git gateway of a run
/// given no `--repo` (`UnscopedGitRouter`).
final class RefusalTallyTests: XCTestCase {
    /// Every refusal is counted, also those over the denial budget that the log writes only
    /// as a count; allowed exchanges are not refusals.
    func testEveryRefusalIsCountedAlsoThoseTheBudgetKeptOutOfTheLog() {
        let sink = MemoryAuditSink()
        let tally = RefusalTally()
        let audit = AuditLog(sink: sink, sandbox: "s1", denials: DenialBudget.Limits(burst: 2, perSecond: 1),
                             clock: { 0 }, tally: tally)
        for _ in 0..<5 {
            audit.record(AuditEvent(.egressDeny, via: .connect, host: "denied.example", port: 443, reason: "denied.example is not on the allowlist"))
        }
        audit.record(contentsOf: [
            AuditEvent(.dnsDeny, via: .dns, host: "nope.example", reason: "nope.example is not on the allowlist", qtype: "A"),
            AuditEvent(.dnsDeny, via: .dns, host: "nope.example", reason: "nope.example is not on the allowlist", qtype: "AAAA"),
        ])
        audit.record(AuditEvent(.egressAllow, via: .connect, host: "pypi.org", port: 443, rule: "pypi.org"))
        XCTAssertEqual(sink.lines.filter { $0.contains("\"egress_deny\"") && $0.contains("denied.example") }.count, 2, "the budget wrote two")
        XCTAssertEqual(tally.summary, RefusalTally.Summary(entries: [
            RefusalTally.Entry(event: "egress_deny", host: "denied.example", port: 443, reason: "denied.example is not on the allowlist", count: 5),
            RefusalTally.Entry(event: "dns_deny", host: "nope.example", reason: "nope.example is not on the allowlist", qtypes: ["A", "AAAA"], count: 2),
        ]))
        XCTAssertEqual(tally.summary.total, 7)
    }

    /// Past its limit of distinct entries the tally only counts.
    func testPastTheLimitNewEntriesAreOnlyCounted() {
        let tally = RefusalTally(limit: 2)
        let audit = AuditLog(sink: MemoryAuditSink(), tally: tally)
        for index in 0..<5 {
            audit.record(AuditEvent(.egressDeny, host: "h\(index).example", port: 443, reason: "not on the allowlist"))
        }
        audit.record(AuditEvent(.egressDeny, host: "h0.example", port: 443, reason: "not on the allowlist"))
        XCTAssertEqual(tally.summary.entries.map(\.host), ["h0.example", "h1.example"])
        XCTAssertEqual(tally.summary.entries.map(\.count), [2, 1])
        XCTAssertEqual(tally.summary.untallied, 3)
        XCTAssertEqual(tally.summary.total, 6)
    }
}

final class UnscopedGitRouterTests: XCTestCase {
    private func decide(_ method: HTTPMethod, _ uri: String, sink: MemoryAuditSink) -> LocalResponse? {
        let router = UnscopedGitRouter(hosts: ["github.com", "git.corp.test"], audit: AuditLog(sink: sink))
        guard case let .respond(response) = router.decide(HTTPRequestHead(version: .http1_1, method: method, uri: uri), sandbox: "run-1") else {
            XCTFail("a run without --repo never forwards a git request")
            return nil
        }
        return response
    }

    /// A clone gets `403` with a `text/plain` line (git prints it as `remote: …`) naming
    /// the `--repo` to pass; a push the `:rw` one; both audited as `git_deny`.
    func testEveryRepositoryIsRefusedWithTheRepoFlagToPass() throws {
        let sink = MemoryAuditSink()
        let clone = try XCTUnwrap(decide(.GET, "/git/github.com/Owner/App.git/info/refs?service=git-upload-pack", sink: sink))
        XCTAssertEqual(clone.status.code, 403)
        XCTAssertEqual(clone.headers["Content-Type"], ["text/plain; charset=utf-8"])
        XCTAssertEqual(clone.body, "airlock: this run has no --repo for github.com/owner/app; pass --repo owner/app and the token with --token-env VAR or --token-file FILE\n")
        let push = try XCTUnwrap(decide(.POST, "/git/git.corp.test/o/r/git-receive-pack", sink: sink))
        XCTAssertEqual(push.body, "airlock: this run has no --repo for git.corp.test/o/r; pass --repo git.corp.test/o/r:rw and the token with --token-env VAR or --token-file FILE\n")
        XCTAssertEqual(sink.lines.count, 2)
        XCTAssertTrue(sink.lines[0].contains(#""event":"git_deny","sandbox":"run-1","via":"git","host":"github.com","repo":"github.com/owner/app","service":"git-upload-pack","status":403,"reason":"this run has no --repo for github.com/owner/app""#), sink.lines[0])
    }

    /// Paths are checked as the session router checks them: the same refusals.
    func testMalformedPathsGetTheUsualRefusals() throws {
        let sink = MemoryAuditSink()
        let unknownHost = try XCTUnwrap(decide(.GET, "/git/example.org/o/r/info/refs?service=git-upload-pack", sink: sink))
        XCTAssertEqual(unknownHost.status.code, 404)
        XCTAssertEqual(unknownHost.body, "airlock: example.org is not a configured git host\n")
        let dotdot = try XCTUnwrap(decide(.GET, "/git/github.com/o/../r/info/refs?service=git-upload-pack", sink: sink))
        XCTAssertEqual(dotdot.status.code, 400)
    }
}
