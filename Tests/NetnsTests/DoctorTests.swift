import XCTest
@testable import Netns

final class DoctorTests: XCTestCase {
    private func facts(
        uid: uid_t = 1000, effective: [Capability] = [], usernsFailure: String? = nil, max: Int? = 15000,
        clone: Int? = nil, apparmor: Int? = nil, launch: Doctor.RootlessLaunchCheck? = nil,
        libmnl: String? = "libmnl.so.0.2.0", veth: Bool = true, runNetns: Bool = false, initialUserNamespace: Bool = true,
        errno code: Int32? = nil, chrooted: Bool? = false
    ) -> Doctor.Facts {
        Doctor.Facts(
            uid: uid, effective: effective, userNamespaceFailure: usernsFailure, maxUserNamespaces: max,
            unprivilegedUsernsClone: clone, apparmorRestrictsUserns: apparmor, rootlessLaunch: launch,
            libmnl: libmnl, libcap: "libcap.so.2.66", kernel: "6.8.0",
            veth: (veth, veth ? "veth module loaded" : "not found"), runNetns: (runNetns, runNetns ? "exists" : "not writable"),
            initialUserNamespace: initialUserNamespace, userNamespaceErrno: code, chrooted: chrooted)
    }

    private func verdict(_ report: Doctor.Report, _ prefix: String) -> Doctor.Verdict? {
        report.verdicts.first { $0.mode.hasPrefix(prefix) }
    }

    func testNormalUserWithUserNamespacesCanRunRootlessOnly() {
        let launch = Doctor.RootlessLaunchCheck(uid: 1000, effective: RootlessLauncher.sandboxBuilderCapabilities, failure: nil)
        let report = Doctor.report(facts(launch: launch))
        XCTAssertEqual(verdict(report, "run (rootless)")?.ready, true)
        XCTAssertEqual(verdict(report, "run (as root)")?.ready, false)
        XCTAssertEqual(verdict(report, "run (as root)")?.missing.first,
                       "needs CAP_SETGID, CAP_SETUID, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_SYS_ADMIN; fix: run with sudo")
        XCTAssertEqual(verdict(report, "persistent")?.ready, false)
    }

    /// Where user namespaces are blocked and a gateway daemon offers sandboxes to users,
    /// doctor says run still works through it, or exactly why not.
    func testTheGatewayDaemonsUserSocketIsAModeOfItsOwn() {
        var blocked = facts(usernsFailure: "sandbox setup: create user, network and mount namespaces: Operation not permitted", apparmor: 1)
        XCTAssertNil(verdict(Doctor.report(blocked), "run (through"), "no socket, no such mode")
        XCTAssertNil(Doctor.report(blocked).checks.first { $0.name == "user socket" })

        blocked.userSocket = Doctor.UserSocket(path: "/run/airlock/users.sock", group: "airlock", state: .usable)
        var report = Doctor.report(blocked)
        XCTAssertEqual(verdict(report, "run (rootless)")?.ready, false)
        XCTAssertEqual(verdict(report, "run (through the gateway daemon)")?.ready, true)
        XCTAssertEqual(verdict(report, "run (through the gateway daemon)")?.missing, [])
        XCTAssertEqual(report.checks.first { $0.name == "user socket" },
                       Doctor.Check(name: "user socket", ok: true, detail: "/run/airlock/users.sock (group airlock): a gateway daemon makes sandboxes for its members"))

        blocked.userSocket?.state = .notInGroup
        report = Doctor.report(blocked)
        XCTAssertEqual(verdict(report, "run (through the gateway daemon)")?.missing,
                       ["/run/airlock/users.sock (group airlock): not open to this account; fix: ask an admin to add you to group airlock, then log in again"])
        blocked.userSocket?.state = .stale
        report = Doctor.report(blocked)
        XCTAssertEqual(report.checks.first { $0.name == "user socket" }?.fix, "an admin starts the daemon: airlock gateway serve --all --users airlock")
        XCTAssertEqual(verdict(report, "run (through the gateway daemon)")?.ready, false)

        var root = facts(uid: 0, effective: Doctor.rootCapabilities, runNetns: true)
        root.userSocket = Doctor.UserSocket(path: "/run/airlock/users.sock", group: "airlock", state: .usable)
        XCTAssertEqual(verdict(Doctor.report(root), "run (through the gateway daemon)")?.missing,
                       ["as root, run builds the sandbox itself (the daemon runs commands as their caller, never root)"])
    }

    func testAppArmorRestrictionGivesTheUbuntuFix() {
        let report = Doctor.report(facts(usernsFailure: "sandbox setup: write /proc/self/uid_map: Operation not permitted", apparmor: 1))
        let rootless = verdict(report, "run (rootless)")
        XCTAssertEqual(rootless?.ready, false)
        XCTAssertTrue(rootless?.missing.first?.contains("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0") == true, "\(rootless!)")
        let check = report.checks.first { $0.name == "kernel.apparmor_restrict_unprivileged_userns" }
        XCTAssertEqual(check?.ok, false)
        XCTAssertTrue(check?.fix?.contains("Ubuntu 24.04") == true)
    }

    func testZeroMaxUserNamespacesGivesTheSysctlFix() {
        let report = Doctor.report(facts(usernsFailure: "sandbox setup: create user, network and mount namespaces: No space left on device", max: 0))
        XCTAssertTrue(verdict(report, "run (rootless)")?.missing.first?.hasSuffix("fix: sysctl -w user.max_user_namespaces=15000") == true)
        XCTAssertEqual(report.checks.first { $0.name == "user.max_user_namespaces" }?.ok, false)
    }

    func testDebianCloneSwitchGivesItsFix() {
        XCTAssertEqual(Doctor.userNamespaceFix(facts(usernsFailure: "x", clone: 0)), "sysctl -w kernel.unprivileged_userns_clone=1")
    }

    func testRootWithEverythingIsReadyForRootModes() {
        let report = Doctor.report(facts(uid: 0, effective: Doctor.rootCapabilities, runNetns: true))
        XCTAssertEqual(verdict(report, "run (as root)"), Doctor.Verdict(mode: "run (as root)", ready: true, missing: []))
        XCTAssertEqual(verdict(report, "persistent")?.ready, true)
    }

    /// uid 0 with every capability, but in `unshare -Ur` or a rootless container: the
    /// capabilities do not reach the host's namespaces, so only rootless mode is ready.
    func testRootOfANestedUserNamespaceIsNotTheHostsRoot() {
        let launch = Doctor.RootlessLaunchCheck(uid: 0, effective: RootlessLauncher.sandboxBuilderCapabilities, failure: nil)
        let report = Doctor.report(facts(
            uid: 0, effective: Doctor.rootCapabilities, launch: launch, runNetns: true, initialUserNamespace: false))
        XCTAssertEqual(verdict(report, "run (rootless)")?.ready, true)
        XCTAssertEqual(verdict(report, "run (as root)")?.ready, false)
        XCTAssertEqual(verdict(report, "run (as root)")?.missing.first,
                       "uid 0 here is the root of a nested user namespace, not the host's; fix: run airlock as the host's root for this mode (rootless mode works here)")
        XCTAssertEqual(verdict(report, "persistent")?.ready, false)
        let root = report.checks.first { $0.name == "root" }
        XCTAssertEqual(root?.ok, false)
        XCTAssertTrue(root?.detail.contains("not the host's") == true, "\(String(describing: root))")
    }

    func testUserNamespaceMaps() {
        XCTAssertTrue(UserNamespace.isInitial(uidMapText: "         0          0 4294967295\n"))
        XCTAssertFalse(UserNamespace.isInitial(uidMapText: "         0       1000          1\n"))
        XCTAssertFalse(UserNamespace.isInitial(uidMapText: "         0          0          1\n"))
        XCTAssertFalse(UserNamespace.isInitial(uidMapText: ""), "unreadable or empty: not initial (fail closed)")
        let map = "         0       1000          1\n         1     100000      65536\n"
        XCTAssertEqual(UserNamespace.outsideID(of: 0, mapText: map), 1000)
        XCTAssertEqual(UserNamespace.outsideID(of: 5, mapText: map), 100004)
        XCTAssertNil(UserNamespace.outsideID(of: 70000, mapText: map))
        XCTAssertEqual(UserNamespace.outsideID(of: 0, mapText: "0 0 1\n"), 0)
    }

    func testMissingVethOrLibmnlBlocksEveryMode() {
        let report = Doctor.report(facts(uid: 0, effective: Doctor.rootCapabilities, libmnl: nil, veth: false, runNetns: true))
        for mode in report.verdicts {
            XCTAssertFalse(mode.ready, mode.mode)
            XCTAssertTrue(mode.missing.contains("veth is not available; fix: modprobe veth"), mode.mode)
            XCTAssertTrue(mode.missing.contains("libmnl is not loaded; fix: apt-get install libmnl0"), mode.mode)
        }
    }

    func testLaunchedChildWithoutCapabilitiesIsNotReady() {
        let launch = Doctor.RootlessLaunchCheck(uid: 1000, effective: [.netAdmin], failure: nil)
        let rootless = verdict(Doctor.report(facts(launch: launch)), "run (rootless)")
        XCTAssertEqual(rootless?.ready, false)
        XCTAssertEqual(rootless?.missing, ["the launched child lacks CAP_DAC_OVERRIDE, CAP_SETGID, CAP_SETUID, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_SYS_ADMIN"])
    }

    func testChildReportRoundTrip() {
        let parsed = Doctor.parseChildReport("uid=1001 eff=201100 veth=ok\na veth pair can be created\n")
        XCTAssertEqual(parsed?.uid, 1001)
        XCTAssertEqual(parsed?.effective, [.setpcap, .netAdmin, .sysAdmin])
        XCTAssertEqual(parsed?.veth?.ok, true)
        XCTAssertNil(Doctor.parseChildReport("garbage"))
    }

    func testExamineThisMachineIsConsistent() {
        let facts = Doctor.examine()
        XCTAssertEqual(facts.uid, geteuid())
        // Loaded as a shared library, or linked in from .build/static-libs (scripts/setup).
        XCTAssertTrue(facts.libcap.map { $0.hasPrefix("libcap.so") || $0 == "linked into airlock" } ?? false,
                      "\(String(describing: facts.libcap))")
        XCTAssertNotNil(facts.libmnl, "the test binary links libmnl")
        XCTAssertFalse(facts.kernel.isEmpty)
        let report = Doctor.report(facts)
        XCTAssertEqual(report.verdicts.count, 3)
        XCTAssertEqual(report.checks.first { $0.name == "user namespaces" }?.ok, facts.userNamespaceFailure == nil)
        // This machine loads seccomp filters; the sandbox's filter builds with libseccomp.
        let seccomp = report.checks.first { $0.name == "seccomp" }
        XCTAssertEqual(seccomp?.ok, true, "\(String(describing: seccomp))")
        XCTAssertTrue(seccomp?.detail.hasPrefix("filters available (") == true, "\(String(describing: seccomp))")
    }

    func testMissingSeccompBlocksTheRunModes() {
        var facts = facts(uid: 0, effective: Doctor.rootCapabilities, runNetns: true)
        facts.seccomp = (false, "cannot build the seccomp filter: Function not implemented")
        let report = Doctor.report(facts)
        XCTAssertEqual(report.checks.first { $0.name == "seccomp" }?.fix, "a kernel with CONFIG_SECCOMP_FILTER, and apt-get install libseccomp2")
        for mode in report.verdicts {
            XCTAssertFalse(mode.ready, mode.mode)
            XCTAssertTrue(mode.missing.contains { $0.hasPrefix("seccomp: cannot build the seccomp filter") }, mode.mode)
        }
    }

    // MARK: - The fix named for what is really wrong

    /// Every failed check says how to fix it, whatever the machine looks like.
    func testEveryFailedCheckHasAFix() {
        let variants = [
            facts(), facts(uid: 0, effective: Doctor.rootCapabilities, runNetns: true),
            facts(usernsFailure: "x", max: 0), facts(usernsFailure: "x", errno: EPERM, chrooted: true),
            facts(usernsFailure: "x", apparmor: 1), facts(usernsFailure: "x", errno: ENOSPC),
            facts(uid: 0, effective: Doctor.rootCapabilities, libmnl: nil, veth: false, initialUserNamespace: false),
        ]
        for variant in variants {
            for check in Doctor.report(variant).checks where !check.ok {
                XCTAssertNotNil(check.fix, "\(check.name) has no fix for \(variant)")
            }
        }
    }

    /// Inside a chroot the kernel refuses user namespaces: the fix names the chroot, not a
    /// sysctl whose value already allows them.
    func testChrootIsNamedNotTheSysctl() {
        let report = Doctor.report(facts(
            usernsFailure: "sandbox setup: create user, network and mount namespaces: Operation not permitted",
            max: 96362, errno: EPERM, chrooted: true))
        let max = report.checks.first { $0.name == "user.max_user_namespaces" }
        XCTAssertEqual(max, Doctor.Check(name: "user.max_user_namespaces", ok: true, detail: "96362"))
        XCTAssertEqual(report.checks.first { $0.name == "user namespaces" }?.fix, Doctor.chrootFix)
        XCTAssertEqual(report.checks.first { $0.name == "chroot" }?.ok, false)
        XCTAssertTrue(Doctor.chrootFix.hasPrefix("run airlock outside the chroot"))
        for check in report.checks {
            XCTAssertFalse(check.fix?.contains("max_user_namespaces") == true, "\(check)")
        }
        XCTAssertFalse(verdict(report, "run (rootless)")!.missing.joined().contains("max_user_namespaces"))
    }

    func testRefusedWithEverySysctlOpenPointsAtTheContainer() {
        let fix = Doctor.userNamespaceFix(facts(usernsFailure: "x", max: 96362, errno: EPERM))
        XCTAssertTrue(fix.hasPrefix("the kernel refused although the sysctls allow it: a seccomp filter or security module"), fix)
        let other = Doctor.userNamespaceFix(facts(usernsFailure: "x", max: 96362, errno: EINVAL))
        XCTAssertEqual(other, "creating a user namespace failed (Invalid argument) although the sysctls allow it; run airlock as root")
    }

    func testExhaustedLimitSaysSo() {
        let report = Doctor.report(facts(usernsFailure: "x: No space left on device", max: 100, errno: ENOSPC))
        XCTAssertEqual(report.checks.first { $0.name == "user.max_user_namespaces" },
                       Doctor.Check(name: "user.max_user_namespaces", ok: false, detail: "100, all in use (creating one failed with ENOSPC)",
                                    fix: "end unused user namespaces, or raise the limit: sysctl -w user.max_user_namespaces=200"))
    }

    /// Ubuntu 24.04 with airlock's profile loaded: the restriction is on, yet user
    /// namespaces work, so the check is fine and advises nothing.
    func testAppArmorRestrictionWithTheProfileIsFine() {
        var facts = facts(apparmor: 1)
        facts.apparmorLabel = "airlock (unconfined)"
        let check = Doctor.report(facts).checks.first { $0.name == "kernel.apparmor_restrict_unprivileged_userns" }
        XCTAssertEqual(check, Doctor.Check(
            name: "kernel.apparmor_restrict_unprivileged_userns", ok: true,
            detail: "1 (restricted; allowed for airlock by its AppArmor profile, this process confined as airlock (unconfined))"))
        let refused = Doctor.report(self.facts(usernsFailure: "x", apparmor: 1)).checks.first { $0.name == "kernel.apparmor_restrict_unprivileged_userns" }
        XCTAssertEqual(refused?.ok, false)
        XCTAssertTrue(refused?.fix?.contains("sudo apparmor_parser -r /etc/apparmor.d/airlock") == true, "\(String(describing: refused))")
    }

    func testOneLinePerCapability() {
        var effective = Doctor.rootCapabilities
        effective.removeAll { $0 == .netAdmin }
        let report = Doctor.report(facts(uid: 0, effective: effective))
        let lines = report.checks.filter { $0.name.hasPrefix("CAP_") }
        XCTAssertEqual(lines.map(\.name), Doctor.rootCapabilities.map(\.description))
        XCTAssertEqual(lines.first { $0.name == "CAP_NET_ADMIN" },
                       Doctor.Check(name: "CAP_NET_ADMIN", ok: false, detail: "not effective",
                                    fix: "run with sudo (root mode and persistent sandboxes need CAP_NET_ADMIN)"))
        XCTAssertEqual(lines.first { $0.name == "CAP_SYS_ADMIN" }, Doctor.Check(name: "CAP_SYS_ADMIN", ok: true, detail: "effective"))
    }

    // MARK: - The /proc files, from a fake tree

    private func fakeProc(chrooted: Bool) throws -> String {
        let root = NSTemporaryDirectory() + "airlock-doctor-\(getpid())-\(chrooted)"
        try? FileManager.default.removeItem(atPath: root)
        let files = [
            "proc/sys/user/max_user_namespaces": "96362\n",
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n",
            "proc/self/attr/apparmor/current": "airlock (unconfined)\n",
        ]
        for (path, text) in files {
            try FileManager.default.createDirectory(atPath: root + "/" + (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: root + "/" + path, atomically: false, encoding: .utf8)
        }
        try FileManager.default.createDirectory(atPath: root + "/proc/1", withIntermediateDirectories: true)
        // pid 1's root: the machine's / (so the fake tree is a chroot), or the tree itself.
        try FileManager.default.createSymbolicLink(atPath: root + "/proc/1/root", withDestinationPath: chrooted ? "/" : root)
        return root
    }

    func testSystemFilesReadUnderAnInjectedRoot() throws {
        let chroot = try fakeProc(chrooted: true)
        defer { try? FileManager.default.removeItem(atPath: chroot) }
        let files = Doctor.SystemFiles(root: chroot)
        XCTAssertEqual(files.integer("/proc/sys/user/max_user_namespaces"), 96362)
        XCTAssertEqual(files.integer("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"), 1)
        XCTAssertNil(files.integer("/proc/sys/kernel/unprivileged_userns_clone"))
        XCTAssertEqual(files.chrooted, true)
        XCTAssertEqual(files.apparmorLabel, "airlock (unconfined)")

        let host = try fakeProc(chrooted: false)
        defer { try? FileManager.default.removeItem(atPath: host) }
        XCTAssertEqual(Doctor.SystemFiles(root: host).chrooted, false)
        XCTAssertNil(Doctor.SystemFiles(root: host + "/missing").chrooted, "unknown when pid 1's root cannot be read")
    }
}
