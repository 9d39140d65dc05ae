import Foundation
import Netns
import TestSupport
import XCTest

/// Real persistent sandboxes, made and read back over netlink. Root tier: runs only
/// inside scripts/in-throwaway-ns (private /run/netns, /run/airlock, network namespace).
final class PersistentSandboxTests: XCTestCase {
    let store = PersistentSandbox()

    override func setUpWithError() throws {
        try RootTier.require()
    }

    func testCreateBuildsTheTopologyAndDestroyRemovesIt() throws {
        let name = try uniqueName("pc")
        let topology = try SandboxTopology()
        let outcome = try store.create(name, topology: topology)
        defer { _ = try? store.destroy(name) }
        guard case .created(let state) = outcome else { return XCTFail("expected created, got \(outcome)") }
        XCTAssertTrue(state.complete)
        XCTAssertEqual(state.sandboxPin, "/run/netns/\(name)")
        XCTAssertEqual(state.gatewayPin, "/run/netns/\(name).gw")
        XCTAssertEqual(state.airlockVersion, AirlockVersion.current)
        XCTAssertTrue(Pinning.isPinned(state.sandboxPin))
        XCTAssertTrue(Pinning.isPinned(state.gatewayPin))

        // S: lo and eth0 up, one IPv4 address on eth0 without a prefix route, exactly one
        // main-table route: the host route to the gateway; no IPv6 on eth0.
        let sandbox = try NamespaceView.read(pin: state.sandboxPin)
        XCTAssertEqual(sandbox.links.map(\.name).sorted(), ["eth0", "lo"])
        let eth0 = try XCTUnwrap(sandbox.link("eth0"))
        XCTAssertEqual(eth0.kind, "veth")
        XCTAssertTrue(eth0.isUp)
        XCTAssertTrue(try XCTUnwrap(sandbox.link("lo")).isUp)
        let eth0Addresses = sandbox.addresses.filter { $0.index == eth0.index }
        XCTAssertEqual(eth0Addresses.count, 1, "no IPv6 link-local on eth0: \(eth0Addresses)")
        XCTAssertEqual(eth0Addresses.first?.ipv4, try IPv4Address("169.254.200.2"))
        XCTAssertEqual(eth0Addresses.first?.prefixLength, 30)
        XCTAssertEqual(eth0Addresses.first?.hasNoPrefixRoute, true)
        XCTAssertEqual(sandbox.mainRoutes.count, 1, "routes: \(sandbox.mainRoutes)")
        let route = try XCTUnwrap(sandbox.mainRoutes.first)
        XCTAssertEqual(route.destination, try IPv4Address("169.254.200.1"))
        XCTAssertEqual(route.destinationPrefix, 32)
        XCTAssertEqual(route.outputInterface, eth0.index)
        XCTAssertEqual(route.preferredSource, try IPv4Address("169.254.200.2"))
        XCTAssertTrue(route.isLinkScope)
        XCTAssertFalse(route.hasGateway)
        XCTAssertFalse(sandbox.ipv6Routes.contains { $0.outputInterface == eth0.index }, "IPv6 routes on eth0: \(sandbox.ipv6Routes)")

        // G: gw0 up with the gateway address, a host route back to S, forwarding off.
        let gatewayNamespace = try NetworkNamespace.open(path: state.gatewayPin)
        let gateway = try NamespaceView.read(gatewayNamespace)
        let gw0 = try XCTUnwrap(gateway.link("gw0"))
        XCTAssertTrue(gw0.isUp)
        XCTAssertTrue(try XCTUnwrap(gateway.link("lo")).isUp)
        XCTAssertEqual(gateway.addresses.filter { $0.index == gw0.index }.map(\.ipv4), [try IPv4Address("169.254.200.1")])
        XCTAssertEqual(gateway.mainRoutes.map(\.destination), [try IPv4Address("169.254.200.2")])
        XCTAssertEqual(try sysctl("net/ipv4/ip_forward", in: gatewayNamespace), "0")
        XCTAssertEqual(try sysctl("net/ipv4/conf/all/forwarding", in: gatewayNamespace), "0")
        XCTAssertEqual(try sysctl("net/ipv6/conf/gw0/disable_ipv6", in: gatewayNamespace), "1")
        // The same settings made over netlink, for namespaces whose /proc/sys is read-only:
        // gw0 forwards nothing, and neither end ever generates an IPv6 address.
        XCTAssertEqual(try sysctl("net/ipv4/conf/gw0/forwarding", in: gatewayNamespace), "0")
        XCTAssertEqual(try sysctl("net/ipv6/conf/gw0/addr_gen_mode", in: gatewayNamespace), "1")
        let sandboxNamespace = try NetworkNamespace.open(path: state.sandboxPin)
        XCTAssertEqual(try sysctl("net/ipv6/conf/eth0/disable_ipv6", in: sandboxNamespace), "1")
        XCTAssertEqual(try sysctl("net/ipv6/conf/eth0/addr_gen_mode", in: sandboxNamespace), "1")

        // The host (this test's namespace) gained no interface.
        let host = try RouteSocket().links().map(\.name)
        XCTAssertEqual(host, ["lo"])

        // State file is JSON with the topology and the complete marker.
        let json = try String(contentsOfFile: "/run/airlock/\(name)/state.json", encoding: .utf8)
        XCTAssertTrue(json.contains("\"complete\" : true"), json)
        XCTAssertTrue(json.contains("169.254.200.1/30"), json)
        XCTAssertEqual(try store.load(name: name), state)

        let removal = try store.destroy(name)
        XCTAssertEqual(removal.removed, ["/run/netns/\(name)", "/run/netns/\(name).gw", "/run/airlock/\(name)"])
        XCTAssertFalse(Pinning.exists(state.sandboxPin))
        XCTAssertFalse(Pinning.exists(state.gatewayPin))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/airlock/\(name)"))
        XCTAssertThrowsError(try store.load(name: name)) { XCTAssertEqual($0 as? SandboxError, .notFound(name)) }
    }

    func testCustomAddressesAreUsed() throws {
        let name = try uniqueName("pa")
        let topology = try SandboxTopology(gatewayAddress: IPv4CIDR("10.77.0.1/24"), sandboxAddress: IPv4CIDR("10.77.0.9/24"))
        let state = try store.create(name, topology: topology).state
        defer { _ = try? store.destroy(name) }
        let sandbox = try NamespaceView.read(pin: state.sandboxPin)
        XCTAssertEqual(sandbox.addresses.compactMap(\.ipv4).filter { $0 != (try? IPv4Address("127.0.0.1")) }, [try IPv4Address("10.77.0.9")])
        XCTAssertEqual(sandbox.mainRoutes.map(\.destination), [try IPv4Address("10.77.0.1")])
    }

    func testCreateIsIdempotentWithTheSameParameters() throws {
        let name = try uniqueName("pi")
        let topology = try SandboxTopology()
        let first = try store.create(name, topology: topology)
        defer { _ = try? store.destroy(name) }
        let second = try store.create(name, topology: topology)
        XCTAssertEqual(second, .unchanged(first.state))
        let sandbox = try NamespaceView.read(pin: first.state.sandboxPin)
        XCTAssertEqual(sandbox.mainRoutes.count, 1)
    }

    func testCreateWithDifferentParametersIsRefusedNamingTheDifference() throws {
        let name = try uniqueName("pd")
        _ = try store.create(name, topology: try SandboxTopology())
        defer { _ = try? store.destroy(name) }
        let other = try SandboxTopology(gatewayAddress: IPv4CIDR("169.254.201.1/30"), sandboxAddress: IPv4CIDR("169.254.201.2/30"))
        XCTAssertThrowsError(try store.create(name, topology: other)) { error in
            XCTAssertEqual(String(describing: error),
                "sandbox \"\(name)\" already exists with gateway address 169.254.200.1/30 (requested 169.254.201.1/30), "
                + "sandbox address 169.254.200.2/30 (requested 169.254.201.2/30); destroy it first to change it")
        }
        // Unchanged.
        XCTAssertEqual(try store.load(name: name).topology, try SandboxTopology())
    }

    func testForeignPinIsRefusedAndLeftAlone() throws {
        let name = try uniqueName("pf")
        let foreign = try NetworkNamespace.createUnnamed()
        try foreign.pin(at: "/run/netns/\(name)")
        defer { _ = try? Pinning.unpin("/run/netns/\(name)") }
        XCTAssertThrowsError(try store.create(name, topology: try SandboxTopology())) { error in
            XCTAssertEqual(String(describing: error), "/run/netns/\(name) exists but was not made by airlock (no state for it); nothing changed")
        }
        XCTAssertTrue(Pinning.isPinned("/run/netns/\(name)"))
        XCTAssertFalse(Pinning.exists("/run/netns/\(name).gw"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/airlock/\(name)"))
        // destroy does not touch it either.
        XCTAssertThrowsError(try store.destroy(name)) { XCTAssertEqual($0 as? SandboxError, .notFound(name)) }
        XCTAssertTrue(Pinning.isPinned("/run/netns/\(name)"))
        // gc leaves a lone pin without NAME.gw alone (it may be `ip netns add`'s).
        XCTAssertEqual(try store.gc().filter { $0.name == name }, [])
        XCTAssertTrue(Pinning.isPinned("/run/netns/\(name)"))
    }

    func testFailureInjectedAfterEachStepLeavesNothing() throws {
        for step in CreationStep.allCases {
            let name = try uniqueName("pj")
            XCTAssertThrowsError(try store.create(name, topology: try SandboxTopology(), failAfter: step), "\(step)") { error in
                XCTAssertEqual(error as? InjectedFailure, InjectedFailure(after: step.rawValue))
            }
            XCTAssertFalse(Pinning.exists("/run/netns/\(name)"), "\(step): S pin left")
            XCTAssertFalse(Pinning.exists("/run/netns/\(name).gw"), "\(step): G pin left")
            XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/airlock/\(name)"), "\(step): state left")
            XCTAssertEqual(try RouteSocket().links().map(\.name), ["lo"], "\(step): interface left in the host namespace")
            XCTAssertEqual(store.list().filter { $0.name == name }, [], "\(step)")
        }
    }

    func testDestroyRemovesAHalfMadeSandbox() throws {
        // A create that stopped after pinning S: simulate a crash by recording a
        // half-made state and a pin the way create makes them.
        let name = try uniqueName("ph")
        try FileManager.default.createDirectory(atPath: "/run/airlock/\(name)", withIntermediateDirectories: true)
        try Data("{\"complete\": false}".utf8).write(to: URL(fileURLWithPath: "/run/airlock/\(name)/state.json"))
        let sandbox = try NetworkNamespace.createUnnamed()
        try sandbox.pin(at: "/run/netns/\(name)")
        XCTAssertEqual(store.list().first { $0.name == name }?.status, .halfMade)
        XCTAssertThrowsError(try store.create(name, topology: try SandboxTopology())) { error in
            XCTAssertEqual(String(describing: error), "sandbox \"\(name)\" is half-made (a create did not finish); `airlock netns destroy \(name)` removes it")
        }
        let removal = try store.destroy(name)
        XCTAssertEqual(removal.status, .halfMade)
        XCTAssertEqual(removal.removed, ["/run/netns/\(name)", "/run/airlock/\(name)"])
        XCTAssertFalse(Pinning.exists("/run/netns/\(name)"))
    }

    func testDestroyOfAMissingNameIsNotFound() throws {
        let name = try uniqueName("pm")
        XCTAssertThrowsError(try store.destroy(name)) { error in
            XCTAssertEqual(error as? SandboxError, .notFound(name))
            XCTAssertEqual(String(describing: error), "no sandbox named \"\(name)\"")
        }
    }

    func testListAndGarbageCollection() throws {
        let complete = try uniqueName("lc")
        _ = try store.create(complete, topology: try SandboxTopology())
        defer { _ = try? store.destroy(complete) }

        // Half-made: state without the complete marker.
        let halfMade = try uniqueName("lh")
        try FileManager.default.createDirectory(atPath: "/run/airlock/\(halfMade)", withIntermediateDirectories: true)
        // State whose pins are gone: a complete sandbox whose pins were removed by hand.
        let unpinned = try uniqueName("lu")
        let state = try store.create(unpinned, topology: try SandboxTopology()).state
        try Pinning.unpin(state.sandboxPin)
        try Pinning.unpin(state.gatewayPin)
        // Pins without state, named the airlock way.
        let orphan = try uniqueName("lo")
        let s = try NetworkNamespace.createUnnamed(), g = try NetworkNamespace.createUnnamed()
        try s.pin(at: "/run/netns/\(orphan)")
        try g.pin(at: "/run/netns/\(orphan).gw")

        let listed = Dictionary(uniqueKeysWithValues: store.list().map { ($0.name, $0) })
        XCTAssertEqual(listed[complete]?.status, .complete)
        XCTAssertEqual(listed[complete]?.gatewayAddress, try IPv4CIDR("169.254.200.1/30"))
        XCTAssertEqual(listed[complete]?.sandboxAddress, try IPv4CIDR("169.254.200.2/30"))
        XCTAssertEqual(listed[halfMade]?.status, .halfMade)
        XCTAssertEqual(listed[unpinned]?.status, .pinsMissing)
        XCTAssertEqual(listed[orphan]?.status, .orphanedPins)

        let removed = Dictionary(uniqueKeysWithValues: try store.gc().map { ($0.name, $0) })
        XCTAssertNil(removed[complete])
        XCTAssertEqual(removed[halfMade]?.removed, ["/run/airlock/\(halfMade)"])
        XCTAssertEqual(removed[unpinned]?.removed, ["/run/airlock/\(unpinned)"])
        XCTAssertEqual(removed[orphan]?.removed, ["/run/netns/\(orphan)", "/run/netns/\(orphan).gw"])
        XCTAssertEqual(store.list().map(\.name).filter { [halfMade, unpinned, orphan].contains($0) }, [])
        XCTAssertEqual(store.list().first { $0.name == complete }?.status, .complete)
        XCTAssertEqual(try store.gc().filter { [halfMade, unpinned, orphan, complete].contains($0.name) }, [])
    }
}
