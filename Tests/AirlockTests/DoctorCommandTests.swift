import Foundation
import XCTest
@testable import airlock
@testable import Netns

/// `airlock doctor`'s text and JSON for a machine laid out as a fake /proc tree: a
/// debootstrapped chroot on a host whose sysctls allow user namespaces.
final class DoctorCommandTests: XCTestCase {
    private func chrootReport() throws -> Doctor.Report {
        let root = NSTemporaryDirectory() + "airlock-doctor-command-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/proc/sys/user", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/proc/1", withIntermediateDirectories: true)
        try "96362\n".write(toFile: root + "/proc/sys/user/max_user_namespaces", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: root + "/proc/1/root", withDestinationPath: "/")
        let files = Doctor.SystemFiles(root: root)
        let facts = Doctor.Facts(
            uid: 1000, effective: [],
            userNamespaceFailure: "sandbox setup: create user, network and mount namespaces: Operation not permitted",
            maxUserNamespaces: files.integer("/proc/sys/user/max_user_namespaces"),
            unprivilegedUsernsClone: files.integer("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmorRestrictsUserns: files.integer("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            rootlessLaunch: nil, libmnl: "libmnl.so.0.2.0", libcap: "libcap.so.2.66", kernel: "6.8.0",
            veth: (true, "veth module loaded"), runNetns: (false, "absent and /run is not writable by this user"),
            seccomp: (true, "filters available (40 BPF instructions, libseccomp)"),
            userNamespaceErrno: EPERM, chrooted: files.chrooted, apparmorLabel: files.apparmorLabel)
        return Doctor.report(facts)
    }

    func testTextNamesTheChrootAndEveryFix() throws {
        let report = try chrootReport()
        // libcap's line names the version airlock was built against, which varies by machine.
        let libcap = try XCTUnwrap(report.checks.first { $0.name == "libcap" }).detail
        let chroot = "run airlock outside the chroot: on the host, or in a container with a mount namespace of its own (systemd-nspawn, podman, docker) instead of chroot; as root, root mode works here"
        var expected = """
            no   root: running as uid 1000
                  fix: run with sudo for root mode and persistent sandboxes; rootless mode needs no root

            """
        for capability in ["CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"] {
            expected += "no   \(capability): not effective\n      fix: run with sudo (root mode and persistent sandboxes need \(capability))\n"
        }
        expected += """
            no   chroot: this process runs inside a chroot (its root is not pid 1's root); the kernel refuses new user namespaces there
                  fix: \(chroot)
            no   user namespaces: cannot create one: sandbox setup: create user, network and mount namespaces: Operation not permitted
                  fix: \(chroot)
            ok   user.max_user_namespaces: 96362
            ok   libmnl: libmnl.so.0.2.0
            ok   libcap: \(libcap)
            ok   kernel: 6.8.0
            ok   veth: veth module loaded
            ok   seccomp: filters available (40 BPF instructions, libseccomp)
            no   /run/netns: absent and /run is not writable by this user
                  fix: run as root; /run must be writable

            run (rootless): not ready
              - no unprivileged user namespaces (sandbox setup: create user, network and mount namespaces: Operation not permitted); fix: \(chroot)
            run (as root): not ready
              - needs CAP_SETGID, CAP_SETUID, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_SYS_ADMIN; fix: run with sudo
            persistent (netns create, gateway serve): not ready
              - needs CAP_SETGID, CAP_SETUID, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_SYS_ADMIN; fix: run with sudo
              - /run/netns: absent and /run is not writable by this user

            """
        XCTAssertEqual(DoctorCommand.render(report), expected)
        XCTAssertFalse(DoctorCommand.render(report).contains("sysctl"), "no sysctl advised: the ones present allow user namespaces")
    }

    /// The JSON's shape scripts rely on: two arrays, every key present in every entry.
    func testJSONKeysAreStable() throws {
        let report = try chrootReport()
        let json = try DoctorCommand.json(report)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["checks", "verdicts"])
        let checks = try XCTUnwrap(object["checks"] as? [[String: Any]])
        XCTAssertEqual(checks.count, report.checks.count)
        for check in checks {
            XCTAssertEqual(Set(check.keys), ["name", "ok", "detail", "fix"], "\(check)")
        }
        let max = try XCTUnwrap(checks.first { $0["name"] as? String == "user.max_user_namespaces" })
        XCTAssertEqual(max["ok"] as? Bool, true)
        XCTAssertEqual(max["detail"] as? String, "96362")
        XCTAssertTrue(max["fix"] is NSNull, "fix is null when nothing is needed")
        let chroot = try XCTUnwrap(checks.first { $0["name"] as? String == "chroot" })
        XCTAssertEqual(chroot["ok"] as? Bool, false)
        XCTAssertEqual(chroot["fix"] as? String, Doctor.chrootFix)
        let verdicts = try XCTUnwrap(object["verdicts"] as? [[String: Any]])
        XCTAssertEqual(verdicts.map { $0["mode"] as? String }, ["run (rootless)", "run (as root)", "persistent (netns create, gateway serve)"])
        for verdict in verdicts {
            XCTAssertEqual(Set(verdict.keys), ["mode", "ready", "missing"], "\(verdict)")
            XCTAssertEqual(verdict["ready"] as? Bool, false)
        }
    }
}
