@testable import Gateway
import XCTest
@testable import GatewayCore

/// Learn mode (`--learn`): every valid name on every port, with the checks that stay —
/// deny rules, IP literals, the gateway's own name, the address check — and
/// `PolicySuggestion`, which turns what was used into a policy file.
final class PolicyLearnTests: XCTestCase {
    func learning(_ allow: [String] = [], allowPrivate: [String] = []) throws -> Policy {
        var flags = try Policy.rules(allow: allow, allowPrivate: allowPrivate, resolve: [], source: "command line")
        flags.learning = true
        return try Policy.parse("!evil.example\n", source: "policy.txt").adding(rulesFrom: flags)
    }

    func testEveryNameOnEveryPortIsAllowedButDenyRulesLiteralsAndTheGatewayStay() throws {
        let policy = try learning()
        XCTAssertEqual(policy.decide(host: "anything.example", port: 443), .allow(rule: "learn mode"))
        XCTAssertEqual(policy.decide(host: "Other.Example.", port: 8443), .allow(rule: "learn mode"))
        XCTAssertEqual(policy.decide(host: "evil.example", port: 443), .deny(.deniedByRule(name: "evil.example", rule: "!evil.example", origin: "line 1")))
        XCTAssertEqual(policy.decide(host: "127.0.0.1", port: 443), .deny(.literalNotCovered(host: "127.0.0.1")))
        XCTAssertEqual(policy.decide(host: "airlock.internal", port: 80), .deny(.gatewayItself(name: "airlock.internal")))
        XCTAssertEqual(policy.decide(host: "x.example", port: 0), .deny(.portOutOfRange(host: "x.example", port: 0)))
        XCTAssertFalse(policy.checkResolved(IPAddress("127.0.0.1")!, for: "anything.example").isAllowed,
                       "private addresses still need allow-private")
        XCTAssertTrue(policy.allowsName("anything.example"))
        XCTAssertFalse(policy.allowsName("evil.example"))
        XCTAssertFalse(policy.allowsName("10.0.0.1"))
        let rules = DNSNameRules(policy)
        for (name, allowed) in [("anything.example", true), ("evil.example", false), ("airlock.internal", false)] {
            let decided = Array(name.utf8).withUnsafeBytes { rules.allowsName(lowercaseBytes: $0) }
            XCTAssertEqual(decided, allowed, name)
            let direct = Array(name.utf8).withUnsafeBytes { policy.allowsName(lowercaseBytes: $0) }
            XCTAssertEqual(direct, allowed, name)
        }
    }

    func testWithoutLearnModeNothingChanges() throws {
        let policy = try Policy.parse("pypi.org\n", source: "policy.txt")
        XCTAssertFalse(policy.learning)
        XCTAssertEqual(policy.decide(host: "anything.example", port: 443), .deny(.notAllowlisted(name: "anything.example")))
        XCTAssertEqual(policy.decide(host: "pypi.org", port: 8443),
                       .deny(.portNotAllowed(name: "pypi.org", port: 8443, detail: "only 80 and 443 without a host:port rule")))
        XCTAssertFalse(policy.allowsName("anything.example"))
        XCTAssertFalse(Array("anything.example".utf8).withUnsafeBytes { DNSNameRules(policy).allowsName(lowercaseBytes: $0) })
    }

    func testSuggestionUsesPresetsSiblingsAndPortsWithCounts() {
        var suggestion = PolicySuggestion()
        func use(_ host: String, _ port: Int, _ ts: String, event: String = "egress_allow", reason: String? = nil) {
            var line = JSONLineWriter()
            line.field("ts", ts)
            line.field("event", event)
            line.field("sandbox", "run-1")
            line.field("via", "connect")
            line.field("host", host)
            line.field("port", port)
            line.field("rule", event == "egress_allow" ? "learn mode" : nil)
            line.field("reason", reason)
            suggestion.add(line: line.finish())
        }
        use("pypi.org", 443, "2026-12-03T07:00:00.000Z")
        use("files.pythonhosted.org", 443, "2026-12-03T07:00:01.000Z")
        use("a.cdn.example.com", 443, "2026-12-03T07:00:02.000Z")
        use("b.cdn.example.com", 443, "2026-12-03T07:00:03.000Z")
        use("a.cdn.example.com", 443, "2026-12-03T07:00:04.000Z")
        use("api.example.net", 8443, "2026-12-03T07:00:05.000Z")
        use("storage.googleapis.com", 443, "2026-12-03T07:00:06.000Z")
        use("lonely.example.org", 80, "2026-12-03T07:00:07.000Z", event: "egress_deny", reason: "lonely.example.org is not on the allowlist")
        use("127.0.0.1", 443, "2026-12-03T07:00:08.000Z")
        use("evil.example", 443, "2026-12-03T07:00:09.000Z", event: "egress_deny", reason: "evil.example is denied by rule !evil.example (line 1)")
        suggestion.add(line: "not json")
        XCTAssertEqual(suggestion.policy(sources: ["learn.jsonl"]), """
            # Suggested by `airlock policy suggest` from learn.jsonl (11 audit lines).
            # It allows what the command used, not what it needs: review every line before use.
            # 1 lines were not audit lines and were skipped.

            # @go for storage.googleapis.com: 1 use, first 2026-12-03T07:00:06.000Z, last 2026-12-03T07:00:06.000Z
            # shared hosting (storage.googleapis.com): serves many tenants; see docs/policy.md
            @go

            # @pypi for files.pythonhosted.org, pypi.org: 2 uses, first 2026-12-03T07:00:00.000Z, last 2026-12-03T07:00:01.000Z
            @pypi

            # *.cdn.example.com for a.cdn.example.com, b.cdn.example.com: 3 uses, first 2026-12-03T07:00:02.000Z, last 2026-12-03T07:00:04.000Z
            *.cdn.example.com

            # api.example.net:8443: 1 use, first 2026-12-03T07:00:05.000Z, last 2026-12-03T07:00:05.000Z
            api.example.net:8443

            # lonely.example.org: 1 use (1 refused), first 2026-12-03T07:00:07.000Z, last 2026-12-03T07:00:07.000Z
            lonely.example.org

            """)
        // Every rule parses.
        XCTAssertNoThrow(try Policy.parse(suggestion.policy(sources: ["learn.jsonl"]), source: "suggested"))
    }
}
