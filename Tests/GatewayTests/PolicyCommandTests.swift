import XCTest
import TestSupport

/// `airlock policy check` and `airlock policy explain`, run as the built binary.
final class PolicyCommandTests: XCTestCase {
    private func policyFile(_ text: String) throws -> (TemporaryDirectory, String) {
        let dir = try TemporaryDirectory()
        let path = dir.file("policy.txt")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (dir, path)
    }

    private func requireBinary() throws {
        try Precondition.require(FileManager.default.isExecutableFile(atPath: TestPaths.airlock),
                          "build the binary first: swift build (missing \(TestPaths.airlock))")
    }

    func testCheckPrintsRuleCountAndExpandedPresets() throws {
        try requireBinary()
        let (dir, path) = try policyFile("# test\npypi.org\n@cargo\n!evil.crates.io\n")
        _ = dir
        let result = try Run.airlock(["policy", "check", path], timeout: 30)
        XCTAssertEqual(result.status, 0, "\(result)")
        XCTAssertEqual(result.stdout, "\(path): ok, 5 rules\n@cargo: index.crates.io, static.crates.io, crates.io\n")
    }

    func testCheckFailsWithFileLineAndProblem() throws {
        try requireBinary()
        let (dir, path) = try policyFile("pypi.org\n\npypi..org\n")
        _ = dir
        let result = try Run.airlock(["policy", "check", path], timeout: 30)
        XCTAssertEqual(result.status, 1, "\(result)")
        XCTAssertEqual(result.stdout, "")
        XCTAssertEqual(result.stderr, "airlock: error: \(path):3: 'pypi..org': empty label (two dots in a row, or a leading dot)\n")
        let missing = try Run.airlock(["policy", "check", dir.file("nope.txt")], timeout: 30)
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.stderr, "airlock: error: \(dir.file("nope.txt")): cannot read: No such file or directory\n")
    }

    func testExplainSaysWhichRuleAndWhatDNSAnswers() throws {
        try requireBinary()
        let (dir, path) = try policyFile("*.example.com\n!evil.example.com\n")
        _ = dir
        let allowed = try Run.airlock(["policy", "explain", path, "WWW.example.com"], timeout: 30)
        XCTAssertEqual(allowed.status, 0, "\(allowed)")
        let lines = allowed.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(Array(lines.prefix(5)), [
            "policy: \(path) (2 rules)",
            "decision: allow WWW.example.com port 443 by rule *.example.com (line 1)",
            "host: WWW.example.com is normalised to www.example.com",
            "rules matching www.example.com:",
            "  *.example.com (line 1): allows ports 80 and 443",
        ])
        XCTAssertTrue(lines.contains("dns: A www.example.com -> the gateway address; AAAA and other types -> no answer"), "\(lines)")

        let denied = try Run.airlock(["policy", "explain", path, "evil.example.com:80"], timeout: 30)
        XCTAssertEqual(denied.status, 1, "explain exits 1 for a refused target, so scripts can test with it: \(denied)")
        XCTAssertTrue(denied.stdout.contains("decision: deny: evil.example.com is denied by rule !evil.example.com (line 2)\n"), denied.stdout)
        XCTAssertTrue(denied.stdout.contains("dns: NXDOMAIN for evil.example.com (audited as dns_deny)\n"), denied.stdout)

        let port = try Run.airlock(["policy", "explain", path, "www.example.com:22"], timeout: 30)
        XCTAssertEqual(port.status, 1, "\(port)")
        XCTAssertTrue(port.stdout.contains("decision: deny: port 22 is not allowed for www.example.com (only 80 and 443 without a host:port rule)\n"), port.stdout)
    }

    func testExplainShowsTheClassOfLiterals() throws {
        try requireBinary()
        let (dir, path) = try policyFile("allow-private 169.254.0.0/16\n")
        _ = dir
        let result = try Run.airlock(["policy", "explain", path, "[::ffff:169.254.169.254]:443"], timeout: 30)
        XCTAssertEqual(result.status, 1, "\(result)")
        XCTAssertTrue(result.stdout.contains("decision: deny: IP literal [::ffff:169.254.169.254] refused: connect by name, or add a cidr rule\n"), result.stdout)
        XCTAssertTrue(result.stdout.contains("address: [::ffff:169.254.169.254] is an IP literal for ::ffff:169.254.169.254, class link-local (embeds 169.254.169.254)\n"), result.stdout)
    }

    func testExplainRefusesMalformedTargets() throws {
        try requireBinary()
        let (dir, path) = try policyFile("pypi.org\n")
        _ = dir
        let result = try Run.airlock(["policy", "explain", path, "pypi.org:99999"], timeout: 30)
        XCTAssertEqual(result.status, 2, "a malformed target is not a refusal: \(result)")
        XCTAssertEqual(result.stderr, "airlock: error: '99999' in 'pypi.org:99999' is not a port (1-65535)\n")
        let missing = try Run.airlock(["policy", "explain", dir.file("no-such-policy"), "pypi.org"], timeout: 30)
        XCTAssertEqual(missing.status, 2, "a file that cannot be read is not a refusal: \(missing)")
    }
}
