import XCTest
import TestSupport
@testable import Gateway
@testable import GatewayCore

/// Parse errors name the file, the line and the problem; nothing is guessed.
final class PolicyParsingTests: XCTestCase {
    private func error(_ text: String) -> String? {
        do {
            _ = try Policy.parse(text, source: "policy.txt")
            return nil
        } catch {
            return String(describing: error)
        }
    }

    func testErrorsNameFileLineAndProblem() {
        let known = "@anthropic-api, @cargo, @debian, @gemini-api, @github, @github-api, @go, @maven, @npm, @openai-api, @pypi, @rubygems"
        let table: [(String, String)] = [
            ("pypi.org\n\n@pipy\n", "policy.txt:3: unknown preset @pipy (known: \(known))"),
            ("bücher.de\n", "policy.txt:1: 'bücher.de' contains non-ASCII characters; write international names as punycode (xn--…)"),
            // Found by PolicyFuzz: the quoted line is escaped, so the error stays one line.
            ("@py]i\r #\nexample.com\n", "policy.txt:1: '@py]i\\x0d' contains the control character \\xd"),
            ("a\u{2028}b.com\n", "policy.txt:1: 'a\\u{2028}b.com' contains non-ASCII characters; write international names as punycode (xn--…)"),
            ("pypi..org\n", "policy.txt:1: 'pypi..org': empty label (two dots in a row, or a leading dot)"),
            (".pypi.org\n", "policy.txt:1: '.pypi.org': empty label (two dots in a row, or a leading dot)"),
            ("pypi.org..\n", "policy.txt:1: 'pypi.org..': empty label (two dots in a row, or a leading dot)"),
            ("a.com b.com\n", "policy.txt:1: 'a.com b.com' is not a rule (one host, @preset, cidr, allow-private, resolve or route a line)"),
            ("a.com:0\n", "policy.txt:1: 'a.com:0' has an invalid port (1–65535)"),
            ("a.com:65536\n", "policy.txt:1: 'a.com:65536' has an invalid port (1–65535)"),
            ("a.com:\n", "policy.txt:1: 'a.com:' has an invalid port (1–65535)"),
            ("a.com:https\n", "policy.txt:1: 'a.com:https' has an invalid port (1–65535)"),
            ("!a.com:22\n", "policy.txt:1: '!a.com:22': deny rules apply to every port; write '!a.com'"),
            ("*\n", "policy.txt:1: '*': '*' is allowed only as a whole first label ('*.example.com')"),
            ("*example.com\n", "policy.txt:1: '*example.com': '*' is allowed only as a whole first label ('*.example.com')"),
            ("a.*.com\n", "policy.txt:1: 'a.*.com': '*' is allowed only as a whole first label ('*.example.com')"),
            ("*.com\n", "policy.txt:1: '*.com' would allow a whole top-level domain; name a registrable domain"),
            ("127.0.0.1\n", "policy.txt:1: IP literal in host rule '127.0.0.1'; use 'cidr ADDRESS/LENGTH' to allow literals"),
            ("2130706433\n", "policy.txt:1: IP literal in host rule '2130706433'; use 'cidr ADDRESS/LENGTH' to allow literals"),
            ("[::1]\n", "policy.txt:1: IP literal in host rule '[::1]'; use 'cidr ADDRESS/LENGTH' to allow literals"),
            ("airlock.internal\n", "policy.txt:1: 'airlock.internal' would cover airlock.internal, the gateway itself, which is never egress"),
            ("*.internal\n", "policy.txt:1: '*.internal' would cover airlock.internal, the gateway itself, which is never egress"),
            ("cidr 10.0.0.1/8\n", "policy.txt:1: cidr: '10.0.0.1/8' has host bits set; the network is 10.0.0.0/8"),
            ("cidr 10.0.0.0/33\n", "policy.txt:1: cidr: '10.0.0.0/33' has an invalid prefix length (0–32 for IPv4)"),
            ("cidr\n", "policy.txt:1: 'cidr': expected 'cidr ADDRESS/LENGTH'"),
            ("allow-private 127.1/8\n", "policy.txt:1: allow-private: '127.1/8' is not an address range (expected ADDRESS/LENGTH, such as 10.0.0.0/8 or fc00::/7)"),
            ("resolve a.test\n", "policy.txt:1: resolve 'a.test': expected HOST=ADDRESS[,ADDRESS]"),
            ("resolve a.test=127.1\n", "policy.txt:1: resolve 'a.test=127.1': '127.1' is not an address (write 127.0.0.1 or ::1)"),
            ("resolve 127.0.0.1=127.0.0.1\n", "policy.txt:1: resolve '127.0.0.1=127.0.0.1': the last label is numeric, which spells an IP address"),
            ("a.com\tb.com\n", "policy.txt:1: 'a.com\tb.com' is not a rule (one host, @preset, cidr, allow-private, resolve or route a line)"),
            ("ex ample.com\n", "policy.txt:1: 'ex ample.com' is not a rule (one host, @preset, cidr, allow-private, resolve or route a line)"),
            ("a_b%2e.com\n", "policy.txt:1: 'a_b%2e.com': character '%' is not allowed in a host name"),
            ("-a.com\n", "policy.txt:1: '-a.com': label '-a' starts or ends with '-'"),
        ]
        for (text, expected) in table {
            XCTAssertEqual(error(text), expected, text)
        }
    }

    func testCommentsBlankLinesAndCRLFAreAccepted() throws {
        let p = try Policy.parse("# only comments\r\n\r\n   \r\npypi.org   # trailing\r\n\t*.example.com\t\r\n# bücher in a comment is fine\n", source: "p")
        XCTAssertEqual(p.ruleCount, 2)
        XCTAssertTrue(p.decide(host: "x.example.com", port: 443).isAllowed)
        let bom = try Policy.parse("\u{FEFF}pypi.org\n", source: "p")
        XCTAssertEqual(bom.decide(host: "pypi.org", port: 443), .allow(rule: "pypi.org"))
    }

    func testPunycodeIsAcceptedAndMatched() throws {
        let p = try Policy.parse("xn--bcher-kva.de\n", source: "p")
        XCTAssertEqual(p.decide(host: "XN--BCHER-KVA.DE", port: 443), .allow(rule: "xn--bcher-kva.de"))
        XCTAssertFalse(p.decide(host: "bücher.de", port: 443).isAllowed)
    }

    func testAllRuleKindsParse() throws {
        let p = try Policy.parse("""
            pypi.org
            *.pythonhosted.org
            api.example.com:8443
            !evil.example.com
            @pypi
            cidr 203.0.113.0/24
            allow-private 127.0.0.0/8
            allow-private fc00::/7
            resolve local.test=127.0.0.1,::1
            """, source: "p")
        XCTAssertEqual(p.allowRules.count, 3 + 4)
        XCTAssertEqual(p.denyRules.count, 1)
        XCTAssertEqual(p.cidrRules.count, 1)
        XCTAssertEqual(p.allowPrivateRules.count, 2)
        XCTAssertEqual(p.resolveOverrides, ["local.test": [.v4(0x7F00_0001), .v6(0, 1)]])
        XCTAssertEqual(p.ruleCount, 12)
        XCTAssertEqual(p.presets, ["pypi"])
    }

    func testLoadReadsFilesAndNamesUnreadableOnes() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("policy.txt")
        try "pypi.org\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try Policy.load(path: path).source, path)
        XCTAssertThrowsError(try Policy.load(path: dir.file("missing.txt"))) {
            XCTAssertEqual(String(describing: $0), "\(dir.file("missing.txt")): cannot read: No such file or directory")
        }
        XCTAssertThrowsError(try Policy.load(path: dir.path)) {
            XCTAssertEqual(String(describing: $0), "\(dir.path): not a regular file")
        }
        try "pypi.org\n@nope\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Policy.load(path: path)) {
            XCTAssertTrue(String(describing: $0).hasPrefix("\(path):2: unknown preset @nope"), "\($0)")
        }
    }
}
