import XCTest
@testable import Netns

final class PrivilegesTests: XCTestCase {
    func testCapabilityNamesComeFromLibcap() {
        XCTAssertEqual(Capability.netAdmin.description, "CAP_NET_ADMIN")
        XCTAssertEqual(Capability.sysAdmin.description, "CAP_SYS_ADMIN")
        XCTAssertEqual(Capability.setpcap.description, "CAP_SETPCAP")
        XCTAssertEqual(Capability.netBindService.description, "CAP_NET_BIND_SERVICE")
    }

    func testCapabilitiesInBits() {
        XCTAssertEqual(CapabilitySets.capabilities(in: 0), [])
        XCTAssertEqual(CapabilitySets.capabilities(in: (1 << 12) | (1 << 21)), [.netAdmin, .sysAdmin])
    }

    func testMissingCapabilitiesAreListedInOrder() {
        let missing = Privileges.missing([.sysAdmin, .netAdmin, .setuid], effective: [.setuid])
        XCTAssertEqual(missing, [.netAdmin, .sysAdmin])
        XCTAssertEqual(Privileges.missing([.netAdmin], effective: [.netAdmin, .sysAdmin]), [])
    }

    func testMissingPrivilegeMessageNamesCapabilities() {
        let error = Privileges.PrivilegeError.missing(operation: "airlock netns exec", capabilities: [.netAdmin, .sysAdmin])
        XCTAssertEqual(error.description, "airlock netns exec needs CAP_NET_ADMIN, CAP_SYS_ADMIN (run it as root, e.g. with sudo)")
    }

    func testCurrentSetsMatchProcStatus() throws {
        let sets = try Privileges.current()
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        func field(_ name: String) -> UInt64? {
            for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
                return UInt64(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces), radix: 16)
            }
            return nil
        }
        XCTAssertEqual(field("CapEff"), sets.effective)
        XCTAssertEqual(field("CapPrm"), sets.permitted)
        XCTAssertEqual(field("CapInh"), sets.inheritable)
        XCTAssertEqual(field("CapBnd"), sets.bounding)
        XCTAssertEqual(field("CapAmb"), sets.ambient)
    }

    func testRequireRootAsRootOrRefusal() throws {
        if getuid() == 0 && Privileges.effectiveCapabilities().contains(.sysAdmin) {
            XCTAssertNoThrow(try Privileges.requireRoot(for: "test", capabilities: [.sysAdmin]))
        } else {
            XCTAssertThrowsError(try Privileges.requireRoot(for: "test", capabilities: [.sysAdmin])) { error in
                XCTAssertEqual(String(describing: error), "test needs CAP_SYS_ADMIN (run it as root, e.g. with sudo)")
            }
        }
    }
}
