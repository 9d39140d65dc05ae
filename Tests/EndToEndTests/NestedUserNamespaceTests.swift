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

    /// Inside a container `/proc/sys` is mounted read-only, so the sysctls that keep IPv6 off
    /// the veth cannot be written: as root, the link's IPv6 address generation is turned off
    /// over netlink instead, and the sandbox still has no IPv6 address but loopback's.
    /// Rootless, the same mount over part of /proc means a user namespace may not mount the
    /// sandbox's own /proc: the run is refused with the reason and the fix, and `doctor`
    /// says rootless runs are not ready here, for that reason.
    func testWithAReadOnlyProcSysIPv6IsKeptOffOverNetlink() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-rosys", in: "/var/tmp")
        chmod(dir.path, 0o755)
        let binary = try dir.copyOfAirlock()
        let readOnlySys = "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
            + "if echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null; then echo writable; exit 1; fi; "
        func underReadOnlySys(_ command: String) throws -> ProcessResult {
            try Run.process(["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", readOnlySys + command],
                            environment: environment, currentDirectory: dir.path, timeout: 90)
        }
        let inside = "grep -c eth0 /proc/net/if_inet6; cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6 /proc/sys/net/ipv6/conf/eth0/addr_gen_mode; "
            + "curl -g -sS --max-time 5 --noproxy '*' 'http://[2001:db8::1]/' 2>&1"
        let root = try underReadOnlySys("exec \(binary) run --user nobody -- /bin/sh -c \"\(inside)\"")
        XCTAssertEqual(root.status, 7, "curl's exit status: the sandbox was built: \(root)")
        XCTAssertEqual(Array(root.stdout.split(separator: "\n").prefix(3)), ["0", "0", "1"],
                       "eth0 has no IPv6 address; disable_ipv6 could not be written, addr_gen_mode is none: \(root)")
        XCTAssertTrue(root.stdout.contains("Failed to connect to 2001:db8::1"), "\(root)")

        let nobody = "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups "
        let rootless = try underReadOnlySys("exec \(nobody)\(binary) run -- /bin/true")
        XCTAssertEqual(rootless.status, 125, "\(rootless)")
        XCTAssertEqual(rootless.stderr.split(separator: "\n").last.map(String.init),
                       "airlock: error: sandbox setup: mount proc on /proc: Operation not permitted; parts of this /proc are mounted over "
                       + "(a container's masked paths), and a user namespace may not mount a /proc that shows more; start the container "
                       + "with its /proc unmasked (podman run --security-opt unmask=ALL, docker run --security-opt systempaths=unconfined), "
                       + "or run airlock as the host's root", "\(rootless)")
        let doctor = try underReadOnlySys("exec \(nobody)\(binary) doctor")
        XCTAssertTrue(doctor.stdout.contains("no   fresh /proc: mounting a sandbox's own /proc fails (Operation not permitted)"), "\(doctor)")
        XCTAssertTrue(doctor.stdout.contains("run (rootless): not ready\n  - no fresh /proc for the sandbox (Operation not permitted)"), "\(doctor)")
        let plain = try Run.process(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary, "doctor"],
                                    environment: environment, currentDirectory: dir.path, timeout: 60)
        XCTAssertTrue(plain.stdout.contains("ok   fresh /proc: a sandbox's own /proc can be mounted (in a user namespace)"), "\(plain)")
        XCTAssertTrue(plain.stdout.contains("run (rootless): ready"), "\(plain)")
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
