import XCTest
@testable import Gateway
@testable import GatewayCore

/// Host matching, port rules, deny precedence and presets, as tables.
final class PolicyMatchingTests: XCTestCase {
    private let text = """
        # a comment line
        pypi.org                 # ports 80 and 443
        *.pythonhosted.org       # subdomains, not the apex
        api.example.com:8443
        !evil.example.com
        *.example.com
        !*.blocked.example.com
        @npm
        Mixed.Case.Example.NET.
        """

    private func policy() throws -> Policy {
        try Policy.parse(text, source: "policy.txt")
    }

    func testAllowedHostsNameTheRuleAsWritten() throws {
        let p = try policy()
        let table: [(String, Int, String)] = [
            ("pypi.org", 443, "pypi.org"),
            ("pypi.org", 80, "pypi.org"),
            ("PyPI.org", 443, "pypi.org"),
            ("pypi.org.", 443, "pypi.org"),
            ("files.pythonhosted.org", 443, "*.pythonhosted.org"),
            ("a.b.pythonhosted.org", 80, "*.pythonhosted.org"),
            ("api.example.com", 8443, "api.example.com:8443"),
            ("api.example.com", 443, "*.example.com"),
            ("www.example.com", 443, "*.example.com"),
            ("registry.npmjs.org", 443, "@npm: registry.npmjs.org"),
            ("mixed.case.example.net", 443, "Mixed.Case.Example.NET."),
        ]
        for (host, port, rule) in table {
            XCTAssertEqual(p.decide(host: host, port: port), .allow(rule: rule), "\(host):\(port)")
        }
    }

    func testRefusalsSayWhy() throws {
        let p = try policy()
        let table: [(String, Int, String)] = [
            ("example.org", 443, "example.org is not on the allowlist"),
            ("pythonhosted.org", 443, "pythonhosted.org is not on the allowlist"),
            ("example.com", 443, "example.com is not on the allowlist"),
            ("notpypi.org", 443, "notpypi.org is not on the allowlist"),
            ("pypi.org.evil.net", 443, "pypi.org.evil.net is not on the allowlist"),
            ("evil.example.com", 443, "evil.example.com is denied by rule !evil.example.com (line 5)"),
            ("EVIL.example.com.", 80, "evil.example.com is denied by rule !evil.example.com (line 5)"),
            ("x.blocked.example.com", 443, "x.blocked.example.com is denied by rule !*.blocked.example.com (line 7)"),
            ("pypi.org", 22, "port 22 is not allowed for pypi.org (only 80 and 443 without a host:port rule)"),
            ("pypi.org", 8443, "port 8443 is not allowed for pypi.org (only 80 and 443 without a host:port rule)"),
            ("airlock.internal", 80, "airlock.internal is the gateway itself, not an egress destination"),
            ("pypi.org", 0, "port 0 is out of range for pypi.org"),
            ("pypi.org", 70000, "port 70000 is out of range for pypi.org"),
        ]
        for (host, port, reason) in table {
            XCTAssertEqual(p.decide(host: host, port: port).denial, reason, "\(host):\(port)")
        }
    }

    func testPortOnlyRuleDoesNotOpenDefaultPorts() throws {
        let p = try Policy.parse("db.example.com:5432\n", source: "p")
        XCTAssertEqual(p.decide(host: "db.example.com", port: 5432), .allow(rule: "db.example.com:5432"))
        XCTAssertEqual(p.decide(host: "db.example.com", port: 443).denial,
                       "port 443 is not allowed for db.example.com (no rule for this port; rules allow 5432)")
        XCTAssertTrue(p.allowsName("db.example.com"))
    }

    func testDenyWinsWhateverTheOrder() throws {
        let p = try Policy.parse("!a.example.com\na.example.com\na.example.com:8443\n", source: "p")
        XCTAssertFalse(p.decide(host: "a.example.com", port: 443).isAllowed)
        XCTAssertFalse(p.decide(host: "a.example.com", port: 8443).isAllowed)
        XCTAssertFalse(p.allowsName("a.example.com"))
    }

    func testMalformedHostsAreRefusedWithTheProblem() throws {
        let p = try policy()
        XCTAssertEqual(p.decide(host: "pypi..org", port: 443).denial,
                       "'pypi..org' is not a valid host name: empty label (two dots in a row, or a leading dot)")
        XCTAssertEqual(p.decide(host: "pypi.org\r\nX: y", port: 443).denial,
                       "'pypi.org\r\nX: y' is not a valid host name: character '\\x0d' is not allowed in a host name")
        XCTAssertEqual(p.decide(host: "pypı.org", port: 443).denial,
                       "'pypı.org' is not a valid host name: non-ASCII characters; write international names as punycode (xn--…)")
        XCTAssertFalse(p.decide(host: "", port: 443).isAllowed)
        XCTAssertFalse(p.decide(host: "pypi.org..", port: 443).isAllowed)
    }

    func testAllowsNameForDNS() throws {
        let p = try policy()
        XCTAssertTrue(p.allowsName("pypi.org"))
        XCTAssertTrue(p.allowsName("PYPI.ORG."))
        XCTAssertTrue(p.allowsName("api.example.com"))
        XCTAssertFalse(p.allowsName("evil.example.com"))
        XCTAssertFalse(p.allowsName("example.com"))
        XCTAssertFalse(p.allowsName("airlock.internal"))
        XCTAssertFalse(p.allowsName("127.0.0.1"))
        XCTAssertFalse(p.allowsName("pypi..org"))
    }

    func testDenyAllAllowsNothing() {
        XCTAssertEqual(Policy.denyAll.decide(host: "pypi.org", port: 443).denial, "pypi.org is not on the allowlist")
        XCTAssertFalse(Policy.denyAll.allowsName("pypi.org"))
        XCTAssertEqual(Policy.denyAll.ruleCount, 0)
    }

    func testFlagsMergeWithTheFile() throws {
        let file = try Policy.parse("pypi.org\n", source: "policy.txt")
        let flags = try Policy.rules(allow: ["crates.io", "!evil.pypi.org", "@go"], allowPrivate: ["127.0.0.0/8"],
                                     resolve: ["local.test=127.0.0.1"], source: "--allow")
        let merged = file.adding(rulesFrom: flags)
        XCTAssertEqual(merged.source, "policy.txt + --allow")
        XCTAssertEqual(merged.decide(host: "crates.io", port: 443), .allow(rule: "crates.io"))
        XCTAssertEqual(merged.decide(host: "pypi.org", port: 443), .allow(rule: "pypi.org"))
        XCTAssertEqual(merged.decide(host: "proxy.golang.org", port: 443), .allow(rule: "@go: proxy.golang.org"))
        XCTAssertEqual(merged.decide(host: "evil.pypi.org", port: 443).denial,
                       "evil.pypi.org is denied by rule !evil.pypi.org (--allow)")
        XCTAssertEqual(merged.resolveOverrides["local.test"], [.v4(0x7F00_0001)])
        XCTAssertEqual(merged.checkResolved(.v4(0x7F00_0001)), .allowed(rule: "allow-private 127.0.0.0/8"))
        XCTAssertEqual(merged.presets, ["go"])
        XCTAssertEqual(merged.ruleCount, 1 + 2 + 3 + 1 + 1)
    }

    func testFlagErrorsNameTheFlagAndValue() {
        XCTAssertThrowsError(try Policy.rules(allow: ["pypi..org"], allowPrivate: [], resolve: [], source: "--allow")) {
            XCTAssertEqual(String(describing: $0), "--allow: 'pypi..org': empty label (two dots in a row, or a leading dot)")
        }
        XCTAssertThrowsError(try Policy.rules(allow: [], allowPrivate: ["10.0.0.1/8"], resolve: [], source: "--allow")) {
            XCTAssertEqual(String(describing: $0), "--allow-private: allow-private: '10.0.0.1/8' has host bits set; the network is 10.0.0.0/8")
        }
        XCTAssertThrowsError(try Policy.rules(allow: [], allowPrivate: [], resolve: ["x.test=localhost"], source: "--allow")) {
            XCTAssertEqual(String(describing: $0), "--resolve: resolve 'x.test=localhost': 'localhost' is not an address (write 127.0.0.1 or ::1)")
        }
        XCTAssertThrowsError(try Policy.rules(allow: ["a.com b.com"], allowPrivate: [], resolve: [], source: "--allow")) {
            XCTAssertEqual(String(describing: $0), "--allow: 'a.com b.com' is not one host rule")
        }
        XCTAssertThrowsError(try Policy.rules(allow: ["a.com#x"], allowPrivate: [], resolve: [], source: "--allow"))
    }

    func testExplainNamesRuleDNSAndAddress() throws {
        let p = try Policy.parse("""
            *.pythonhosted.org
            !evil.pythonhosted.org
            local.test:8080
            resolve local.test=127.0.0.1
            """, source: "policy.txt")
        let allowed = p.explain(host: "files.pythonhosted.org", port: 443)
        XCTAssertEqual(allowed, [
            "policy: policy.txt (4 rules)",
            "decision: allow files.pythonhosted.org port 443 by rule *.pythonhosted.org (line 1)",
            "rules matching files.pythonhosted.org:",
            "  *.pythonhosted.org (line 1): allows ports 80 and 443",
            "dns: A files.pythonhosted.org -> the gateway address; AAAA and other types -> no answer",
            "resolve: the gateway resolves files.pythonhosted.org itself; each address is checked: public addresses pass, others need allow-private",
        ])
        let denied = p.explain(host: "evil.pythonhosted.org", port: 443)
        XCTAssertEqual(denied[1], "decision: deny: evil.pythonhosted.org is denied by rule !evil.pythonhosted.org (line 2)")
        XCTAssertTrue(denied.contains("dns: NXDOMAIN for evil.pythonhosted.org (audited as dns_deny)"))
        let pinned = p.explain(host: "local.test", port: 8080)
        XCTAssertTrue(pinned.contains("resolve: local.test is pinned to 127.0.0.1 by resolve local.test=127.0.0.1 (line 4)"), "\(pinned)")
        XCTAssertTrue(pinned.contains("  127.0.0.1: refused: 127.0.0.1 is loopback; add allow-private 127.0.0.0/8 to permit it"), "\(pinned)")
        let literal = p.explain(host: "0x7f.1", port: 443)
        XCTAssertEqual(literal[1], "decision: deny: IP literal 0x7f.1 refused: connect by name, or add a cidr rule")
        XCTAssertEqual(literal[2], "address: 0x7f.1 is an IP literal for 127.0.0.1, class loopback")
        XCTAssertEqual(literal[3], "cidr: no cidr rule covers 127.0.0.1")
    }
}

extension PolicyDecision {
    /// A denial's one line (what the audit log and, after `airlock: `, the sandbox see);
    /// nil when allowed. For the policy's table tests.
    var denial: String? {
        if case .deny(let reason) = self { return reason.description }
        return nil
    }
}
