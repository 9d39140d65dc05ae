import XCTest
@testable import Netns

final class EnvironmentTests: XCTestCase {
    func testCredentialLookingNamesTable() {
        let dropped = [
            "GH_TOKEN", "GITHUB_TOKEN", "NPM_TOKEN", "my_token_file", "CI_JOB_TOKEN", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "DB_PASSWORD", "MYSQL_PWD_PASSWD", "STRIPE_SECRET",
            "OPENAI_API_KEY", "SIGNING_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "SSH_AUTH_SOCK",
            "BASIC_AUTH_HEADER", "NPM_CONFIG__AUTH", "AZURE_CLIENT_SECRET", "VAULT_ADDR", "GPG_AGENT_INFO",
            "KUBECONFIG", "APIKEY", "GITLAB_PAT",
        ]
        for name in dropped {
            XCTAssertTrue(SandboxEnvironment.isCredentialName(name), "\(name) should be dropped")
        }
        let kept = ["PATH", "HOME", "LANG", "TERM", "SHELL", "PWD", "EDITOR", "KEYBOARD_LAYOUT", "MONKEY", "AUTHOR", "GOPATH", "LC_ALL", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "AUTHORITY_URL"]
        for name in kept {
            XCTAssertFalse(SandboxEnvironment.isCredentialName(name), "\(name) should be kept")
        }
    }

    /// The byte-wise reader of ASCII names agrees with the rules over the uppercased
    /// `String` on names made of the rules' own fragments, in any case; a non-ASCII name
    /// takes the `String` path (`ſ` uppercases to `S`).
    func testTheByteWiseNameCheckAgreesWithTheStringRules() {
        let fragments = ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "APIKEY", "API_KEY", "PRIVATE_KEY", "SESSION_ID",
                         "COOKIE", "_AUTH", "AUTH_", "AUTH", "_KEY", "KEY_", "KEY", "_PAT", "PAT", "AWS_", "AZURE_", "VAULT_",
                         "SSH_AUTH_SOCK", "GH_TOKEN", "NETRC", "KUBECONFIG", "_CA_BUNDLE", "_CONFIG_FILE", "_", "A", "X", "PATH",
                         "HOME", "TOKE", "SECRE", "1"]
        var generator = SystemRandomNumberGenerator()
        var dropped = 0
        for _ in 0..<20_000 {
            var name = (0..<Int.random(in: 1...4, using: &generator)).map { _ in fragments.randomElement(using: &generator)! }.joined()
            if Bool.random(using: &generator) { name = name.lowercased() }
            if Int.random(in: 0..<8, using: &generator) == 0 { name = name.prefix(1).lowercased() + name.dropFirst() }
            let fast = SandboxEnvironment.isCredentialName(name)
            XCTAssertEqual(fast, SandboxEnvironment.isCredentialNameUnicode(name), name)
            if fast { dropped += 1 }
        }
        XCTAssertGreaterThan(dropped, 1_000, "the generated names exercise both answers")
        XCTAssertLessThan(dropped, 19_000, "the generated names exercise both answers")
        XCTAssertTrue(SandboxEnvironment.isCredentialName("ſecret_value"), "uppercased, ſ is S: SECRET_VALUE")
        XCTAssertFalse(SandboxEnvironment.isCredentialName("ÜBER_PATH"))
    }

    func testBuildDropsCredentialsAndReportsNamesOnly() {
        let inherited = ["PATH": "/usr/bin:/bin", "GH_TOKEN": "ghp_secretvalue", "AWS_SECRET_ACCESS_KEY": "abc123secret", "LANG": "C.UTF-8"]
        let built = SandboxEnvironment.build(from: inherited, home: "/home/ana", user: "ana", gateway: "169.254.200.1")
        XCTAssertEqual(built.droppedNames, ["AWS_SECRET_ACCESS_KEY", "GH_TOKEN"])
        XCTAssertNil(built.environment["GH_TOKEN"])
        XCTAssertNil(built.environment["AWS_SECRET_ACCESS_KEY"])
        let everything = built.droppedNames.joined() + SandboxEnvironment.entries(built.environment).joined()
        XCTAssertFalse(everything.contains("ghp_secretvalue"))
        XCTAssertFalse(everything.contains("abc123secret"))
        XCTAssertEqual(built.environment["PATH"], "/usr/bin:/bin")
        XCTAssertEqual(built.environment["LANG"], "C.UTF-8")
    }

    func testProxyVariablesPointAtTheGateway() {
        let inherited = ["HTTPS_PROXY": "http://corp-proxy:8080", "no_proxy": "*"]
        let env = SandboxEnvironment.build(from: inherited, home: "/h", user: "u", gateway: "169.254.200.1").environment
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            XCTAssertEqual(env[name], "http://airlock.internal:3128", name)
        }
        XCTAssertEqual(env["NO_PROXY"], "airlock.internal,169.254.200.1,localhost,127.0.0.1,::1")
        XCTAssertEqual(env["no_proxy"], "airlock.internal,169.254.200.1,localhost,127.0.0.1,::1")
    }

    func testUserVariablesAreTheTargetUsers() {
        let inherited = ["HOME": "/root", "USER": "root", "LOGNAME": "root"]
        let env = SandboxEnvironment.build(from: inherited, home: "/home/ana", user: "ana", gateway: "10.0.0.1").environment
        XCTAssertEqual(env["HOME"], "/home/ana")
        XCTAssertEqual(env["USER"], "ana")
        XCTAssertEqual(env["LOGNAME"], "ana")
        XCTAssertNotNil(env["PATH"], "a PATH is always set")
    }

    func testExtraIsMergedLastAndNotFiltered() {
        let env = SandboxEnvironment.build(
            from: ["LANG": "C"], home: "/h", user: "u", gateway: "10.0.0.1",
            extra: ["LANG": "de_DE.UTF-8", "GIT_CONFIG_COUNT": "1"]).environment
        XCTAssertEqual(env["LANG"], "de_DE.UTF-8")
        XCTAssertEqual(env["GIT_CONFIG_COUNT"], "1")
    }

    func testEntriesAreSortedNameValuePairs() {
        XCTAssertEqual(SandboxEnvironment.entries(["B": "2", "A": "x=y"]), ["A=x=y", "B=2"])
    }
}
