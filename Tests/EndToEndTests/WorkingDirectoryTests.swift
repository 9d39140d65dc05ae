import Foundation
import TestSupport
import XCTest

/// `airlock run` as root for another user, started from a directory that user cannot enter
/// (a checkout under root's 0700 home): a one-line error that names the user and the fix,
/// and `--cwd` to choose the command's directory.
final class WorkingDirectoryTests: XCTestCase {
    func testUnreachableWorkingDirectoryNamesTheUserAndTheFix() throws {
        try RootTier.require()
        // Not under /tmp: the command gets a private /tmp with only its working directory bound in.
        let home = try TemporaryDirectory(prefix: "airlock-cwd-home", in: "/var/tmp")
        chmod(home.path, 0o700)
        let checkout = home.file("checkout")
        try FileManager.default.createDirectory(atPath: checkout, withIntermediateDirectories: false)
        let open = try TemporaryDirectory(prefix: "airlock-cwd-open")
        chmod(open.path, 0o755)
        let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C"]

        let refused = try Run.process([TestPaths.airlock, "run", "--user", "nobody", "--", "/bin/pwd"],
                                      environment: environment, currentDirectory: checkout, timeout: 60)
        XCTAssertNotEqual(refused.status, 0, "\(refused)")
        XCTAssertTrue(refused.stderr.contains(
            "change directory to \(checkout) as nobody: Permission denied; nobody cannot enter \(checkout); start airlock from a directory nobody can enter, or pass --cwd DIR"),
            "\(refused)")
        XCTAssertEqual(refused.stdout, "", "the command never ran")

        let moved = try Run.process([TestPaths.airlock, "run", "--user", "nobody", "--cwd", open.path, "--", "/bin/pwd"],
                                    environment: environment, currentDirectory: checkout, timeout: 60)
        XCTAssertEqual(moved.status, 0, "\(moved)")
        XCTAssertEqual(moved.stdout, open.path + "\n", "--cwd is the command's directory: \(moved)")
    }

    /// The same under /tmp, where the command gets a fresh /tmp with only its working
    /// directory bound back in: the parents made again keep their host owners and modes, so
    /// the sandbox reaches no directory its user could not reach on the host.
    func testAWorkingDirectoryUnderTmpKeepsItsParentsClosed() throws {
        try RootTier.require()
        let parent = try TemporaryDirectory(prefix: "airlock-cwd-tmp")
        chmod(parent.path, 0o700)
        let checkout = parent.file("checkout")
        try FileManager.default.createDirectory(atPath: checkout, withIntermediateDirectories: false)
        chmod(checkout, 0o755)
        let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C"]
        let refused = try Run.process([TestPaths.airlock, "run", "--user", "nobody", "--", "/bin/pwd"],
                                      environment: environment, currentDirectory: checkout, timeout: 60)
        XCTAssertEqual(refused.status, 125, "\(refused)")
        XCTAssertTrue(refused.stderr.contains("change directory to \(checkout) as nobody: Permission denied"), "\(refused)")

        chmod(parent.path, 0o755)
        let allowed = try Run.process([TestPaths.airlock, "run", "--user", "nobody", "--", "/bin/sh", "-c", "pwd; stat -c %a \(parent.path)"],
                                      environment: environment, currentDirectory: checkout, timeout: 60)
        XCTAssertEqual(allowed.stdout, "\(checkout)\n755\n", "\(allowed)")
    }
}
