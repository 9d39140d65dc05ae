import Foundation
import TestSupport
import XCTest

/// Sessions of `gateway serve` survive a restart of the gateway: kept in
/// `/run/airlock/NAME/sessions` (root, 0600, out of the sandbox's sight), restored at start;
/// revoked ones stay revoked. Real git inside the sandbox through `netns exec --session`.
final class GatewayRestartTests: XCTestCase {
    var rig: GitRig!

    override func setUpWithError() throws {
        try RootTier.require()
        guard FileManager.default.isExecutableFile(atPath: TestPaths.airlock) else { throw Precondition.unmet("airlock binary not built") }
        rig = try GitRig(name: "r\(getpid() % 10000)\(Int.random(in: 10...99))")
        try rig.start()
    }

    override func tearDown() {
        rig?.stop()
    }

    private var sessionFile: String { "/run/airlock/\(rig.name)/sessions" }

    private func liveIDs() throws -> [String] {
        let list = try Run.airlock(["session", "list", rig.name, "--json"])
        XCTAssertEqual(list.status, 0, list.description)
        let sessions = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        return sessions.compactMap { $0["id"] as? String }
    }

    /// Stops the gateway with SIGTERM and starts it again with the same arguments.
    private func restartGateway() throws -> (status: Int32, stdout: String, stderr: String) {
        let stopped = rig.gateway.stop(signal: SIGTERM, timeout: 10)
        rig.gateway = try BackgroundProcess([
            TestPaths.airlock, "gateway", "serve", rig.name, "--git-upstream", "github.com=https://127.0.0.1:\(rig.port)",
            "--upstream-ca", rig.dir.file("ca.pem"), "--audit-log", rig.auditPath,
        ] + rig.gatewayArguments)
        let ready = Wait.until(timeout: 30) { (try? Run.airlock(["session", "list", rig.name], timeout: 10).status) == 0 }
        XCTAssertTrue(ready, "the gateway serves again")
        return stopped
    }

    func testSessionsSurviveARestartAndRevokedOnesDoNot() throws {
        let token = try rig.createSession(["owner/repo"])
        let keptID = try XCTUnwrap(try liveIDs().first)
        let revoked = try rig.createSession(["owner/repo"])
        let revokedID = try XCTUnwrap(try liveIDs().first { $0 != keptID })
        let before = try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "before"], token: token)
        XCTAssertEqual(before.status, 0, before.description)
        let revoke = try Run.airlock(["session", "revoke", rig.name, revokedID])
        XCTAssertEqual(revoke.status, 0, revoke.description)

        // The file: root's, 0600, digests only for the session tokens.
        let attributes = try FileManager.default.attributesOfItem(atPath: sessionFile)
        XCTAssertEqual(attributes[.ownerAccountID] as? Int, 0)
        XCTAssertEqual(attributes[.posixPermissions] as? Int, 0o600)
        let content = try String(contentsOfFile: sessionFile, encoding: .utf8)
        XCTAssertFalse(content.contains(token))
        XCTAssertFalse(content.contains(revoked))
        // The sandbox has a /run of its own: the file is not there to read.
        let peek = try rig.inSandbox(["cat", sessionFile], token: nil)
        XCTAssertEqual(peek.status, 1, peek.description)
        XCTAssertEqual(peek.stderr, "cat: \(sessionFile): No such file or directory\n")

        let first = try restartGateway()
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(try liveIDs(), [keptID])

        // The same session token clones again through the new gateway.
        let after = try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "after"], token: token)
        XCTAssertEqual(after.status, 0, after.description)
        XCTAssertEqual(try String(contentsOfFile: rig.dir.file("after/README"), encoding: .utf8), "hello from repo\n")

        // The revoked one stays revoked: netns exec cannot learn its repositories, and the
        // gateway answers 401 (git asks for a password, which it may not).
        let refused = try rig.inSandbox(["git", "ls-remote", "http://airlock.internal/git/github.com/owner/repo"], token: revoked)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("airlock: git rewrites cover whole hosts only (the gateway of \(rig.name) has no live session \(revokedID)"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("fatal: could not read Username for 'http://airlock.internal': terminal prompts disabled"), refused.stderr)
        let lines = rig.auditLines
        XCTAssertNotNil(lines.last { $0.contains("\"event\":\"git_deny\"") && $0.contains("\"reason\":\"the session was revoked\"") && $0.contains(revokedID) },
                        lines.joined(separator: "\n"))
        // The restart is in the audit log: the kept session came back, the revoked one did not.
        let restores = lines.filter { $0.contains("\"event\":\"session_restore\"") }
        XCTAssertEqual(restores.count, 1, lines.joined(separator: "\n"))
        XCTAssertTrue(restores.first?.contains(keptID) ?? false, restores.joined())

        // The second gateway said what it restored; no token in anything it printed.
        let second = rig.gateway.stop(signal: SIGTERM, timeout: 10)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stderr.contains("airlock: restored 1 live session from \(sessionFile)\n"), second.stderr)
        for secret in [GitRig.realToken, token, revoked] {
            for text in [first.stdout, first.stderr, second.stdout, second.stderr, lines.joined()] {
                XCTAssertFalse(text.contains(secret), "a token leaked")
            }
        }

        // netns destroy removes the state directory, the session file with it.
        let destroy = try Run.airlock(["netns", "destroy", rig.name])
        XCTAssertEqual(destroy.status, 0, destroy.description)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/airlock/\(rig.name)"))
    }
}
