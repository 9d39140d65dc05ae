import Foundation
import TestSupport
import XCTest

/// airlock inside a user namespace another tool made (`unshare -Ur` in a CI job, a rootless
/// container): uid 0 there is not the host's root, so `run` takes the rootless path, and
/// `doctor` says so. A namespace whose uid 0 is the host's root is refused.
final class NestedUserNamespaceTests: XCTestCase {
    private let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C"]

    func testRunInsideUnshareAsAnOrdinaryUserTakesTheRootlessPath() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-nested", in: "/var/tmp")
        chmod(dir.path, 0o755)
        // A copy the unprivileged user can execute, wherever the checkout is.
        let binary = try dir.copyOfAirlock()
        let result = try Run.process(
            ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/unshare", "-Ur",
             binary, "run", "--", "/bin/sh", "-c",
             "id -u; curl -sS --max-time 5 --noproxy '*' http://192.0.2.1/ 2>&1; cat /proc/self/status | grep '^Seccomp:'"],
            environment: environment, currentDirectory: dir.path, timeout: 90)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "0", "the namespace's own root runs the command: \(result)")
        XCTAssertTrue(result.stdout.contains("Failed to connect to 192.0.2.1"), "still no way out but the gateway: \(result)")
        XCTAssertTrue(result.stdout.contains("Seccomp:\t2"), "the seccomp filter is loaded: \(result)")
        XCTAssertFalse(result.stderr.contains("RTM_NEWLINK"), "the root path was not tried: \(result)")

        let doctor = try Run.process(
            ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/unshare", "-Ur",
             binary, "doctor"], environment: environment, currentDirectory: dir.path, timeout: 60)
        XCTAssertTrue(doctor.stdout.contains("run (rootless): ready"), "\(doctor)")
        XCTAssertTrue(doctor.stdout.contains("run (as root): not ready"), "doctor tells the truth about uid 0 here: \(doctor)")
    }

    func testANamespaceWhoseRootIsTheHostsRootIsRefused() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-nested", in: "/var/tmp")
        let result = try Run.process(
            ["/usr/bin/unshare", "-Ur", TestPaths.airlock, "run", "--", "/usr/bin/id", "-u"],
            environment: environment, currentDirectory: dir.path, timeout: 60)
        XCTAssertEqual(result.status, 125, "\(result)")
        XCTAssertEqual(result.stdout, "", "nothing ran: \(result)")
        XCTAssertTrue(result.stderr.hasPrefix("airlock: error: uid 0 of this user namespace is the host's root"), "\(result)")
    }
}
