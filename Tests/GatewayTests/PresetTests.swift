import XCTest
@testable import Gateway
@testable import GatewayCore

/// Every preset parses and names the real hosts its tools use.
final class PresetTests: XCTestCase {
    func testEveryPresetParsesAndAllowsItsHosts() throws {
        for (name, lines) in Presets.hosts {
            let p = try Policy.parse("@\(name)\n", source: "p")
            XCTAssertEqual(p.presets, [name])
            XCTAssertEqual(p.ruleCount, lines.count, name)
            XCTAssertFalse(lines.isEmpty, name)
            for line in lines {
                XCTAssertEqual(p.decide(host: line, port: 443), .allow(rule: "@\(name): \(line)"), "@\(name) \(line)")
                XCTAssertTrue(p.allowsName(line), line)
            }
        }
    }

    func testPresetsNameTheHostsTheToolsReallyUse() throws {
        let expected: [String: [String]] = [
            "pypi": ["pypi.org", "files.pythonhosted.org"],
            "npm": ["registry.npmjs.org", "registry.yarnpkg.com", "repo.yarnpkg.com"],
            "cargo": ["index.crates.io", "static.crates.io", "crates.io"],
            "go": ["proxy.golang.org", "sum.golang.org", "storage.googleapis.com"],
            "rubygems": ["rubygems.org", "index.rubygems.org"],
            "maven": ["repo.maven.apache.org", "repo1.maven.org", "services.gradle.org", "plugins.gradle.org"],
            "debian": ["deb.debian.org", "security.debian.org"],
            "github": ["github.com", "api.github.com", "raw.githubusercontent.com", "codeload.github.com",
                       "release-assets.githubusercontent.com", "objects.githubusercontent.com"],
        ]
        XCTAssertEqual(Set(Presets.hosts.keys), Set(expected.keys))
        for (name, hosts) in expected {
            let p = try Policy.parse("@\(name)\n", source: "p")
            for host in hosts {
                XCTAssertTrue(p.decide(host: host, port: 443).isAllowed, "@\(name) must allow \(host)")
            }
        }
    }

    func testDebianAllowsPlainHTTP() throws {
        let p = try Policy.parse("@debian\n", source: "p")
        XCTAssertEqual(p.decide(host: "deb.debian.org", port: 80), .allow(rule: "@debian: deb.debian.org"))
    }

    func testPresetsDoNotOpenNeighbours() throws {
        let p = try Policy.parse("@pypi\n@github\n", source: "p")
        for host in ["evil.pypi.org", "pythonhosted.org", "gist.githubusercontent.com", "github.io", "evilgithub.com"] {
            XCTAssertFalse(p.decide(host: host, port: 443).isAllowed, host)
        }
    }

    func testPresetNamesAreCaseInsensitiveAndDenyStillWins() throws {
        let p = try Policy.parse("@PyPI\n!files.pythonhosted.org\n", source: "p")
        XCTAssertEqual(p.decide(host: "files.pythonhosted.org", port: 443).denial,
                       "files.pythonhosted.org is denied by rule !files.pythonhosted.org (line 2)")
        XCTAssertTrue(p.decide(host: "pypi.org", port: 443).isAllowed)
    }
}
