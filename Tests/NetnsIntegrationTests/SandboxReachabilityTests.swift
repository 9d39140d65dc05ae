import Foundation
import Netns
import TestSupport
import XCTest

/// From inside S only the gateway address answers; everything else fails at once with
/// ENETUNREACH (S has no default route). Root tier, unnamed sandboxes.
final class SandboxReachabilityTests: XCTestCase {
    override func setUpWithError() throws {
        try RootTier.require()
    }

    func testGatewayIsReachableFromTheSandboxThroughAListenerBoundInG() throws {
        let sandbox = try EphemeralSandbox.build(try SandboxTopology())
        let gatewayAddress = sandbox.topology.gatewayAddress.address
        let sockets = try ListenerSockets.bind(in: sandbox.gateway.descriptor, address: gatewayAddress, tcpPorts: [8080], udpPorts: [])
        defer { sockets.forEach { try? $0.descriptor.close() } }
        XCTAssertEqual(sockets.map(\.port), [8080])
        XCTAssertEqual(sockets.map(\.transport), [.tcp])

        let result = try sandbox.sandbox.withNamespace { connectTCP(to: "169.254.200.1", port: 8080) }
        XCTAssertEqual(result.error, 0, "connect from S to the gateway: \(String(cString: strerror(result.error)))")
        defer { if result.fd >= 0 { close(result.fd) } }
        // Accepted from this thread, in the host namespace.
        var peer = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let accepted = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(sockets[0].descriptor.rawValue, $0, &length) }
        }
        XCTAssertGreaterThanOrEqual(accepted, 0)
        if accepted >= 0 { close(accepted) }
        XCTAssertEqual(IPv4Address(UInt32(bigEndian: peer.sin_addr.s_addr)), try IPv4Address("169.254.200.2"))
    }

    func testEverythingElseIsUnreachableAtOnce() throws {
        let sandbox = try EphemeralSandbox.build(try SandboxTopology())
        // Documentation addresses (RFC 5737, RFC 3849) stand for "the internet": the test
        // never aims at a real public address, even from a namespace with no route.
        let targets: [(String, UInt16)] = [("192.0.2.1", 80), ("198.51.100.53", 53), ("203.0.113.8", 443), ("2001:db8::1", 443)]
        for (host, port) in targets {
            let result = try sandbox.sandbox.withNamespace { connectTCP(to: host, port: port) }
            if result.fd >= 0 { close(result.fd) }
            XCTAssertEqual(result.error, ENETUNREACH, "TCP \(host): \(String(cString: strerror(result.error)))")
            let udp = try sandbox.sandbox.withNamespace { sendUDP(to: host, port: port) }
            XCTAssertEqual(udp, ENETUNREACH, "UDP \(host): \(String(cString: strerror(udp)))")
        }
    }

    func testOtherAddressesOfTheSubnetAreUnreachableToo() throws {
        // No prefix route: a neighbour in the sandbox's own /29 is as unreachable as the internet.
        let topology = try SandboxTopology(gatewayAddress: IPv4CIDR("10.9.0.1/29"), sandboxAddress: IPv4CIDR("10.9.0.2/29"))
        let sandbox = try EphemeralSandbox.build(topology)
        for host in ["10.9.0.3", "10.9.0.6"] {
            let result = try sandbox.sandbox.withNamespace { connectTCP(to: host, port: 80) }
            if result.fd >= 0 { close(result.fd) }
            XCTAssertEqual(result.error, ENETUNREACH, "TCP \(host): \(String(cString: strerror(result.error)))")
            XCTAssertEqual(try sandbox.sandbox.withNamespace { sendUDP(to: host, port: 53) }, ENETUNREACH, "UDP \(host)")
        }
    }

    func testUnnamedSandboxHasTheSameTopologyAndNoPins() throws {
        let pinsBefore = entries("/run/netns")
        let sandbox = try EphemeralSandbox.build(try SandboxTopology())
        XCTAssertEqual(entries("/run/netns"), pinsBefore)
        let view = try NamespaceView.read(sandbox.sandbox)
        XCTAssertEqual(view.mainRoutes.map(\.destination), [try IPv4Address("169.254.200.1")])
        XCTAssertEqual(try NamespaceView.read(sandbox.gateway).mainRoutes.map(\.destination), [try IPv4Address("169.254.200.2")])
        XCTAssertEqual(try RouteSocket().links().map(\.name), ["lo"])
    }

    /// S and G are made together, each prepared inside itself; when either half fails,
    /// neither namespace stays open (a long-lived daemon would keep it alive otherwise).
    func testMakingSAndGTogetherIsAllOrNothing() throws {
        struct Refused: Error {}
        let own = namespaceLink("/proc/thread-self/ns/net")
        let before = openNamespaceDescriptors()
        func failure(_ make: () throws -> Void) -> Error? {
            do { try make() } catch { return error }
            return nil
        }
        let secondFails = failure {
            _ = try NetworkNamespace.createUnnamedPair(
                prepareFirst: { namespaceLink("/proc/thread-self/ns/net") }, prepareSecond: { () throws -> String in throw Refused() })
        }
        XCTAssertTrue(secondFails is Refused, "\(String(describing: secondFails))")
        XCTAssertEqual(openNamespaceDescriptors(), before, "the first half's namespace was left open")
        let firstFails = failure {
            _ = try NetworkNamespace.createUnnamedPair(
                prepareFirst: { () throws -> String in throw Refused() }, prepareSecond: { namespaceLink("/proc/thread-self/ns/net") })
        }
        XCTAssertTrue(firstFails is Refused, "\(String(describing: firstFails))")
        XCTAssertEqual(openNamespaceDescriptors(), before, "the second half's namespace was left open")

        let pair = try NetworkNamespace.createUnnamedPair(
            prepareFirst: { namespaceLink("/proc/thread-self/ns/net") }, prepareSecond: { namespaceLink("/proc/thread-self/ns/net") })
        // Each prepare ran inside its own new namespace, the one returned with it; the
        // caller's thread never moved.
        XCTAssertEqual(pair.firstPrepared, namespaceLink("/proc/self/fd/\(pair.first.descriptor.rawValue)"))
        XCTAssertEqual(pair.secondPrepared, namespaceLink("/proc/self/fd/\(pair.second.descriptor.rawValue)"))
        XCTAssertNotEqual(pair.firstPrepared, pair.secondPrepared)
        XCTAssertFalse([pair.firstPrepared, pair.secondPrepared].contains(own))
        XCTAssertEqual(namespaceLink("/proc/thread-self/ns/net"), own)
    }

    func testStandardGatewaySocketsAreBoundInG() throws {
        let sandbox = try EphemeralSandbox.build(try SandboxTopology())
        let sockets = try GatewaySockets.bind(in: sandbox.gateway.descriptor, address: sandbox.topology.gatewayAddress.address)
        defer { sockets.all.forEach { try? $0.descriptor.close() } }
        XCTAssertEqual(sockets.all.map(\.port), [53, 53, 80, 443, 3128, 22])
        XCTAssertEqual(sockets.all.map(\.transport), [.udp, .tcp, .tcp, .tcp, .tcp, .tcp])
        for socket in sockets.all {
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket.descriptor.rawValue, $0, &length) }
            }
            XCTAssertEqual(UInt16(bigEndian: address.sin_port), socket.port)
            XCTAssertEqual(IPv4Address(UInt32(bigEndian: address.sin_addr.s_addr)), try IPv4Address("169.254.200.1"))
        }
        // The DNS port answers over TCP from S.
        let result = try sandbox.sandbox.withNamespace { connectTCP(to: "169.254.200.1", port: 53) }
        if result.fd >= 0 { close(result.fd) }
        XCTAssertEqual(result.error, 0)
    }

    /// `airlock run` binds the gateway's listeners in G as soon as G exists, before it has
    /// its veth end or address, and hands them over while the rest is built: once built,
    /// they take the sandbox's connections like sockets bound afterwards.
    func testListenersBoundBeforeGHasItsAddressServeOnceItHasIt() throws {
        var kept: [Int32] = []
        defer { kept.forEach { close($0) } }
        let sandbox = try EphemeralSandbox.build(try SandboxTopology(), listeners: .init(ports: [8080]) { sockets in
            XCTAssertEqual(sockets.all.map(\.port), [53, 53, 80, 443, 3128, 22, 8080])
            XCTAssertEqual(sockets.all.map(\.transport), [.udp, .tcp, .tcp, .tcp, .tcp, .tcp, .tcp])
            // Copies, as the gateway process gets: the build closes its own after this.
            kept = sockets.all.map { dup($0.descriptor.rawValue) }
        })
        XCTAssertEqual(kept.count, 7)
        XCTAssertFalse(kept.contains(-1))
        for fd in kept {
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            XCTAssertEqual(IPv4Address(UInt32(bigEndian: address.sin_addr.s_addr)), sandbox.topology.gatewayAddress.address)
        }
        let result = try sandbox.sandbox.withNamespace { connectTCP(to: "169.254.200.1", port: 8080) }
        defer { if result.fd >= 0 { close(result.fd) } }
        XCTAssertEqual(result.error, 0, "connect from S to the early listener: \(String(cString: strerror(result.error)))")
        let accepted = accept(kept[6], nil, nil)
        XCTAssertGreaterThanOrEqual(accepted, 0)
        if accepted >= 0 { close(accepted) }
    }

    /// A hand-over that fails fails the build: both namespaces and every socket are freed.
    func testAFailedHandOverOfTheListenersLeavesNothing() throws {
        struct Refused: Error {}
        let namespacesBefore = openNamespaceDescriptors()
        let descriptorsBefore = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
        do {
            _ = try EphemeralSandbox.build(try SandboxTopology(), listeners: .init(ports: []) { _ in throw Refused() })
            XCTFail("the build went on after the hand-over failed")
        } catch {
            XCTAssertTrue(error is Refused, "\(error)")
        }
        XCTAssertEqual(openNamespaceDescriptors(), namespacesBefore)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count, descriptorsBefore)
    }

    func testBindingAnAddressOutsideGFailsAndClosesEverything() throws {
        let sandbox = try EphemeralSandbox.build(try SandboxTopology())
        XCTAssertThrowsError(try ListenerSockets.bind(in: sandbox.gateway.descriptor, address: try IPv4Address("192.0.2.1"), tcpPorts: [80], udpPorts: [])) { error in
            XCTAssertEqual(String(describing: error), "bind tcp 192.0.2.1:80: Cannot assign requested address")
        }
    }
}

/// Where a namespace link (or a descriptor of a namespace) points: "net:[INODE]".
func namespaceLink(_ path: String) -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?"
}

/// This process's open descriptors of network namespaces.
func openNamespaceDescriptors() -> [String] {
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return fds.map { namespaceLink("/proc/self/fd/" + $0) }.filter { $0.hasPrefix("net:[") }.sorted()
}

/// Connects a TCP socket to `host`:`port` (IPv4 or IPv6 literal) with a 5 s bound;
/// returns the socket and 0, or -1 and the errno.
func connectTCP(to host: String, port: UInt16) -> (fd: Int32, error: Int32) {
    withSocketAddress(host, port) { address, length, family in
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return (-1, errno) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if connect(fd, address, length) == 0 { return (fd, 0) }
        let error = errno
        close(fd)
        return (-1, error)
    }
}

/// Sends one UDP datagram; returns 0 or the errno.
func sendUDP(to host: String, port: UInt16) -> Int32 {
    withSocketAddress(host, port) { address, length, family in
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        let byte: [UInt8] = [0]
        return sendto(fd, byte, 1, 0, address, length) == 1 ? 0 : errno
    }
}

private func withSocketAddress<R>(_ host: String, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t, Int32) -> R) -> R {
    if host.contains(":") {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = port.bigEndian
        inet_pton(AF_INET6, host, &address.sin6_addr)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6) }
        }
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    inet_pton(AF_INET, host, &address.sin_addr)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET) }
    }
}
