import Foundation
import TestSupport
import XCTest

/// `airlock run`'s command environment, through the real binary: the upstream token's
/// variable never reaches CMD whatever its name (here one no credential pattern matches),
/// and the notice names it among the variables not passed.
final class RunEnvironmentTests: XCTestCase {
    /// New for every test run, so no earlier output can hold it.
    static let token = "tok_ENV" + UUID().uuidString.replacingOccurrences(of: "-", with: "")

    func testTokenInAnArbitraryVariableNeverReachesTheCommand() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-run-env")
        chmod(dir.path, 0o755)
        // A copy the unprivileged user can execute, wherever the checkout is.
        let binary = try dir.copyOfAirlock()
        let environment = [
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/nonexistent", "LANG": "C",
            "PLAINVAR": Self.token, "KEPT_SETTING": "kept-value",
        ]
        let modes: [(String, [String])] = [
            ("root", [binary, "run", "--user", "nobody"]),
            ("rootless", ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary, "run"]),
        ]
        for (mode, argv) in modes {
            let result = try Run.process(
                argv + ["--repo", "owner/app", "--token-env", "PLAINVAR", "--", "/usr/bin/env"],
                environment: environment, currentDirectory: dir.path, timeout: 120)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertTrue(result.stdout.contains("KEPT_SETTING=kept-value"), "\(mode): the command ran and printed its environment: \(result)")
            XCTAssertFalse(result.stdout.contains("PLAINVAR="), "\(mode): \(result)")
            XCTAssertFalse(result.stdout.contains(Self.token), "\(mode): the token reached the command: \(result)")
            let notice = result.stderr.split(separator: "\n").first { $0.contains("not passed to the sandbox") }
            XCTAssertNotNil(notice, "\(mode): \(result)")
            XCTAssertTrue(notice.map { $0.contains("PLAINVAR") } == true, "\(mode): the notice names the token variable: \(result)")
            XCTAssertFalse(result.stderr.contains(Self.token), "\(mode): \(result)")
        }
    }
}
