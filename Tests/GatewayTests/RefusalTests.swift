import NIOEmbedded
import XCTest
@testable import Gateway
@testable import GatewayCore

private struct NotRefused: Error {}

/// Refusals as the sandbox and the audit log see them: one line, `airlock: ` once, the
/// hint only for the sandbox.
final class RefusalTests: XCTestCase {
    private func tunnelRefusal(_ policy: String, source: String, host: String, port: Int) throws -> (LocalResponse, [String]) {
        let sink = MemoryAuditSink()
        let audit = AuditLog(sink: sink, sandbox: "sbx")
        let store = PolicyStore(initial: try Policy.parse(policy, source: source), path: nil, extra: nil, audit: audit)
        let router = EgressRouter(mode: .proxy, policy: store, audit: audit, gatewayHost: "169.254.200.1", internalRouter: nil)
        let context = RequestContext(sandbox: "sbx", via: .connect, eventLoop: EmbeddedEventLoop())
        let route = router.routeTunnel(host: host, port: port, context: context)
        guard case .refuse(let response) = route else { throw NotRefused() }
        return (response, sink.lines)
    }

    func testAPortHintNamesThePolicyFileAsWritten() throws {
        // A policy path with "it" in it: the hint names the file unchanged.
        let (response, audit) = try tunnelRefusal("db.test\n", source: "/srv/git-policy/policy", host: "db.test", port: 5432)
        let line = "airlock: port 5432 is not allowed for db.test (only 80 and 443 without a host:port rule); "
            + "add db.test:5432 to /srv/git-policy/policy or pass --allow db.test:5432"
        XCTAssertEqual(response.status.code, 403)
        XCTAssertEqual(response.body, line + "\n")
        XCTAssertEqual(response.headers["X-Airlock-Denied"], [line])
        // pip and wget print only the status line of a refused CONNECT: the reason is in it.
        XCTAssertEqual(response.status.reasonPhrase, "airlock: port 5432 is not allowed for db.test (only 80 and 443 without a host:port rule)")
        XCTAssertEqual(audit.count, 1)
        XCTAssertTrue(audit[0].contains("\"reason\":\"port 5432 is not allowed for db.test (only 80 and 443 without a host:port rule)\""), audit[0])
    }

    func testAnUnlistedHostGetsTheAllowHintAndTheAuditLineTheReasonAlone() throws {
        let (response, audit) = try tunnelRefusal("db.test\n", source: "command line", host: "evil.test", port: 443)
        XCTAssertEqual(response.body, "airlock: evil.test is not on the allowlist; pass --allow evil.test\n")
        XCTAssertTrue(audit[0].contains("\"reason\":\"evil.test is not on the allowlist\""), audit[0])
    }

    func testTheGatewaysOwnRefusalsCarryThePrefixOnce() {
        let refusal = Refusal(.badGateway, reason: "cannot resolve x.test: Name or service not known", closeConnection: true)
        XCTAssertEqual(refusal.response.body, "airlock: cannot resolve x.test: Name or service not known\n")
        XCTAssertEqual(DialError.unresolvable(host: "x.test", reason: "Name or service not known").description,
                       "airlock: cannot resolve x.test: Name or service not known")
        XCTAssertEqual(Refusal(dialFailure: DialError.timedOut(host: "x.test", port: 443, what: "connecting"), host: "x.test", port: 443).text,
                       "airlock: connecting to x.test:443 timed out")
    }
}
