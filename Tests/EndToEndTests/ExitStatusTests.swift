import Foundation
import TestSupport
import XCTest

/// `airlock run`'s exit status, by the convention wrappers such as `docker run` use: 125
/// when airlock itself failed, 126 not executable, 127 not found, 128+n for signal n, and
/// otherwise the command's own status, untouched (even the values airlock used to use).
final class ExitStatusTests: XCTestCase {
    func testRunExitStatusTable() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-exit", in: "/var/tmp")
        chmod(dir.path, 0o755)
        let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C"]
        func run(_ arguments: [String]) throws -> ProcessResult {
            try Run.process([TestPaths.airlock, "run", "--user", "nobody"] + arguments,
                            environment: environment, currentDirectory: dir.path, timeout: 60)
        }
        let cases: [(arguments: [String], status: Int32, stderr: String?)] = [
            (["--no-such-flag", "--", "true"], 125, "airlock: error: Unknown option '--no-such-flag'"),
            (["--drain-timeout", "-1", "--", "true"], 125, nil),
            (["--", "/nonexistent/command"], 127, "airlock: /nonexistent/command: command not found"),
            (["--", "/etc/hostname"], 126, "airlock: /etc/hostname: permission denied"),
            (["--", "/bin/sh", "-c", "exit 64"], 64, nil),
            (["--", "/bin/sh", "-c", "exit 3"], 3, nil),
            (["--", "/bin/sh", "-c", "kill -KILL $$"], 128 + 9, nil),
            (["--", "/bin/true"], 0, nil),
        ]
        for (arguments, status, stderr) in cases {
            let result = try run(arguments)
            XCTAssertEqual(result.status, status, "\(arguments): \(result)")
            if let stderr {
                XCTAssertTrue(result.stderr.contains(stderr), "\(arguments): \(result)")
            }
        }
    }
}
