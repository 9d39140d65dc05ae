import Foundation
@testable import Netns
import TestSupport
import XCTest

/// The last check of a side's configuration (`SandboxTopology.refuseIPv6`): a veth end that
/// has an IPv6 address despite every measure that keeps IPv6 off fails the build. Root tier,
/// inside scripts/in-throwaway-ns: a namespace of the test's own with a veth pair given a
/// documentation-prefix address (no traffic).
final class IPv6GuardTests: XCTestCase {
    override func setUpWithError() throws {
        try RootTier.require()
    }

    func testALinkWithAnIPv6AddressIsRefusedAndOneWithoutIsNot() throws {
        let name = try uniqueName("v6").rawValue
        try ip(["netns", "add", name])
        defer { _ = try? Run.process(["ip", "netns", "delete", name], timeout: 30) }
        try ip(["-n", name, "link", "add", "v6probe", "type", "veth", "peer", "name", "v6peer"])
        try ip(["-n", name, "link", "add", "v4probe", "type", "veth", "peer", "name", "v4peer"])
        try ip(["netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.v6probe.disable_ipv6=0"])
        try ip(["-n", name, "-6", "address", "add", "2001:db8::5/64", "dev", "v6probe", "nodad"])
        try ip(["-n", name, "address", "add", "192.0.2.5/24", "dev", "v4probe"])

        let namespace = try NetworkNamespace.open(path: "/run/netns/\(name)")
        let socket = try namespace.withNamespace { try RouteSocket() }
        let v6probe = try InterfaceName("v6probe")
        let v4probe = try InterfaceName("v4probe")
        let withIPv6 = try XCTUnwrap(socket.link(named: v6probe))
        let without = try XCTUnwrap(socket.link(named: v4probe))
        XCTAssertThrowsError(try SandboxTopology.refuseIPv6(on: v6probe, index: withIPv6.index, socket: socket)) { error in
            XCTAssertEqual(String(describing: error), "IPv6 off on v6probe (it has an IPv6 address, /64): File exists")
        }
        XCTAssertNoThrow(try SandboxTopology.refuseIPv6(on: v4probe, index: without.index, socket: socket))
    }

    private func ip(_ arguments: [String]) throws {
        let result = try Run.process(["ip"] + arguments, timeout: 30)
        guard result.status == 0 else { throw Precondition.unmet("ip \(arguments.joined(separator: " ")): \(result.stderr)") }
    }
}
