import Foundation
import Netns
import XCTest

@testable import airlock

/// Who the gateway daemon's user socket serves and which sandboxes each caller may use, and
/// when `airlock run` goes through it: the decisions, without a daemon.
final class UserAccessTests: XCTestCase {
    func testOnlyRootAndMembersOfTheGroupAreLetIn() {
        let group: UInt32 = 1500
        XCTAssertTrue(UserAccess.admits(uid: 0, gid: 0, groups: [], group: group), "root")
        XCTAssertTrue(UserAccess.admits(uid: 1000, gid: 1000, groups: [27, 1500], group: group), "a supplementary member")
        XCTAssertTrue(UserAccess.admits(uid: 1000, gid: 1500, groups: [], group: group), "the primary group")
        XCTAssertFalse(UserAccess.admits(uid: 1000, gid: 1000, groups: [27, 100], group: group), "not a member")
        XCTAssertFalse(UserAccess.admits(uid: 1500, gid: 1000, groups: [], group: group), "a uid equal to the gid is not membership")
        XCTAssertEqual(UserAccess.refusal(uid: 1000, groupName: "airlock"),
                       "permission denied: uid 1000 is not in group airlock, which may use the gateway daemon's user socket; ask an admin to add you")
    }

    func testAnAccountUsesOnlyItsOwnSandboxes() {
        XCTAssertTrue(UserAccess.mayUse(owner: 1000, caller: 1000))
        XCTAssertFalse(UserAccess.mayUse(owner: 1000, caller: 1001), "another account's")
        XCTAssertFalse(UserAccess.mayUse(owner: nil, caller: 1000), "an admin's sandbox (made by netns create) is nobody's")
        XCTAssertFalse(UserAccess.mayUse(owner: 0, caller: 1000), "root's")
        XCTAssertTrue(UserAccess.mayUse(owner: 1000, caller: 0), "root may use any")
        XCTAssertTrue(UserAccess.mayUse(owner: nil, caller: 0))
        XCTAssertEqual(UserAccess.notYours("agent1"), "sandbox agent1: no sandbox of yours by that name (`airlock sandbox list` shows yours)")
    }

    func testGroupsByNameOrNumber() throws {
        XCTAssertEqual(try UserAccess.group("0").gid, 0)
        XCTAssertEqual(try UserAccess.group("root").gid, 0)
        XCTAssertThrowsError(try UserAccess.group("no-such-group-here")) {
            XCTAssertEqual(String(describing: $0), "--users no-such-group-here: no such group (create it with groupadd, and add the accounts that may make sandboxes)")
        }
    }

    /// `run` goes through the daemon only when it cannot build the sandbox itself and the
    /// daemon offers it, or when asked; asked where it cannot, it says why.
    func testRunGoesThroughTheDaemonOnlyWhereItMust() throws {
        let blocked = { SandboxSetupError(step: "unshare(CLONE_NEWUSER)", code: EPERM) }
        var probed = false
        XCTAssertNil(try DelegatedRun.reason(forced: false, mode: .rootless, offered: true, probe: { probed = true; return nil }),
                     "user namespaces work: built here")
        XCTAssertTrue(probed)
        probed = false
        XCTAssertNil(try DelegatedRun.reason(forced: false, mode: .rootless, offered: false, probe: { probed = true; return blocked() }),
                     "no daemon: built here, and the rootless error stands")
        XCTAssertFalse(probed, "no probe where no daemon could take over")
        XCTAssertNil(try DelegatedRun.reason(forced: false, mode: .root, offered: true, probe: blocked), "root builds it")
        let reason = try DelegatedRun.reason(forced: false, mode: .rootless, offered: true, probe: blocked)
        XCTAssertEqual(reason, "user namespaces are unavailable here (\(blocked()))")
        XCTAssertEqual(try DelegatedRun.reason(forced: true, mode: .rootless, offered: true, probe: { nil }), "--via-daemon")
        XCTAssertThrowsError(try DelegatedRun.reason(forced: true, mode: .rootless, offered: false, probe: { nil })) {
            XCTAssertTrue(String(describing: $0).hasPrefix("--via-daemon: no gateway daemon offers sandboxes to users here"))
        }
        XCTAssertThrowsError(try DelegatedRun.reason(forced: true, mode: .root, offered: true, probe: { nil })) {
            XCTAssertTrue(String(describing: $0).hasPrefix("--via-daemon: as root, airlock run builds the sandbox itself"))
        }
    }

    /// The policy a delegated run hands the daemon: its policy file, then its flags as rules.
    func testADelegatedRunsPolicyIsItsFileAndItsFlags() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("delegated-\(getpid()).policy").path
        try "pypi.org  # the index\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let command = try RunCommand.parse(["--policy", file, "--allow", "a.test", "--allow-private", "127.0.0.1/32=a.test",
                                            "--resolve", "a.test=127.0.0.1", "--", "/bin/true"])
        let text = try DelegatedRun.policyText(files: command.gateway.policyFiles(root: false, environment: [:]), options: command.gateway)
        XCTAssertEqual(text, "pypi.org  # the index\na.test\nallow-private 127.0.0.1/32 for a.test\nresolve a.test=127.0.0.1\n")
        let refused = try RunCommand.parse(["--audit-log", "/tmp/a.jsonl", "--json", "--", "/bin/true"])
        XCTAssertEqual(DelegatedRun.refusal(of: refused),
                       "not offered when running through the gateway daemon: --audit-log (the daemon's audit log records the run), --json (the decisions are in the daemon's audit log)")
        XCTAssertNil(DelegatedRun.refusal(of: command))
    }
}
