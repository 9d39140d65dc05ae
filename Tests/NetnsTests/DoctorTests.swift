import XCTest
@testable import Netns

final class DoctorTests: XCTestCase {
    private func facts(
        uid: uid_t = 1000, effective: [Capability] = [], usernsFailure: String? = nil, max: Int? = 15000,
        clone: Int? = nil, apparmor: Int? = nil, launch: Doctor.RootlessLaunchCheck? = nil,
        libmnl: String? = "libmnl.so.0.2.0", veth: Bool = true, runNetns: Bool = false, initialUserNamespace: Bool = true
    ) -> Doctor.Facts {
        Doctor.Facts(
            uid: uid, effective: effective, userNamespaceFailure: usernsFailure, maxUserNamespaces: max,
            unprivilegedUsernsClone: clone, apparmorRestrictsUserns: apparmor, rootlessLaunch: launch,
            libmnl: libmnl, libcap: "libcap.so.2.66", kernel: "6.8.0",
            veth: (veth, veth ? "veth module loaded" : "not found"), runNetns: (runNetns, runNetns ? "exists" : "not writable"),
            initialUserNamespace: initialUserNamespace)
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
        XCTAssertNotNil(facts.libcap, "the test binary links libcap")
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
}
