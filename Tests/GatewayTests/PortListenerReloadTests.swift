#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SystemCalls
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// A policy reload opens and closes the transparent listeners on the policy's other ports:
/// `GatewayServer` on real loopback sockets, `bindPort` binding 127.0.0.1 as the port
/// binder binds the gateway address in G.
final class PortListenerReloadTests: XCTestCase {
    /// A listening socket on 127.0.0.1:`port`.
    static func bindLoopback(_ port: Int) throws -> CInt {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError.last("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        address.sin_port = UInt16(port).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let error = SystemCallError.last("bind tcp 127.0.0.1:\(port)")
            close(fd)
            throw error
        }
        return fd
    }

    func testAReloadOpensNewPortsClosesDroppedOnesAndAuditsEach() async throws {
        let (first, second, refused) = (Int(TCP.freePort()), Int(TCP.freePort()), Int(TCP.freePort()))
        let dir = try TemporaryDirectory(prefix: "airlock-port-reload")
        let file = dir.file("policy")
        try "a.test:\(first)\n".write(toFile: file, atomically: true, encoding: .utf8)
        let sink = MemoryAuditSink()
        let audit = AuditLog(sink: sink, sandbox: "srv")
        let store = PolicyStore(initial: try Policy.parse("a.test:\(first)\n", source: file), path: file, extra: nil, audit: audit)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = LookupThreads(numberOfThreads: 1)
        // The binder refuses one port, as a port in use elsewhere would be.
        let bindPort: @Sendable (Int) throws -> CInt = { port in
            if port == refused { throw SystemCallError("bind tcp 127.0.0.1:\(port)", code: EACCES) }
            return try Self.bindLoopback(port)
        }
        let server = GatewayServer(
            configuration: GatewayConfiguration(sandbox: "srv", gatewayAddress: IPAddress("169.254.200.1")!, policy: store,
                                                audit: audit, bindPort: bindPort),
            listeners: GatewayListeners(ports: [first: try Self.bindLoopback(first)]), group: group, lookups: pool)
        let serviceGroup = ServiceGroup(services: [server], logger: Logger(label: "test"))
        let running = Task { try await serviceGroup.run() }
        XCTAssertTrue(Wait.until { server.servedPorts == [first] }, "serving the first port")
        XCTAssertTrue(TCP.canConnect(host: "127.0.0.1", port: UInt16(first)))

        try "b.test:\(second)\nc.test:\(refused)\n".write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertTrue(store.reload())
        XCTAssertEqual(server.servedPorts, [second])
        XCTAssertTrue(Wait.until { !TCP.canConnect(host: "127.0.0.1", port: UInt16(first)) }, "the dropped port's listener is closed")
        XCTAssertTrue(TCP.canConnect(host: "127.0.0.1", port: UInt16(second)), "the new port is served")
        let lines = sink.lines.filter { $0.contains("\"event\":\"port_") }
        XCTAssertEqual(lines.count, 3, "\(sink.lines)")
        XCTAssertTrue(lines.contains { $0.contains(#""event":"port_close","sandbox":"srv","via":"port","port":\#(first)}"#) }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains(#""event":"port_listen","sandbox":"srv","via":"port","port":\#(second),"ok":true}"#) }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains(
            #""event":"port_listen","sandbox":"srv","via":"port","port":\#(refused),"reason":"bind tcp 127.0.0.1:\#(refused): Permission denied; port \#(refused) is reachable through the proxy only","ok":false}"#) },
                      "\(lines)")

        // A reload that keeps the port keeps its listener and writes nothing.
        try "b.test:\(second)\nother.test\n".write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertTrue(store.reload())
        XCTAssertEqual(server.servedPorts, [second])
        XCTAssertEqual(sink.lines.filter { $0.contains("\"event\":\"port_") }.count, 3, "\(sink.lines)")

        await serviceGroup.triggerGracefulShutdown()
        try await running.value
        XCTAssertFalse(TCP.canConnect(host: "127.0.0.1", port: UInt16(second)), "closed at shutdown")
        try await group.shutdownGracefully()
        pool.shutdown()
    }

    /// A gateway that cannot bind after start (no binder) says so and keeps the proxy path.
    func testWithoutABinderANewPortIsAuditedAsNotListening() async throws {
        let port = Int(TCP.freePort())
        let sink = MemoryAuditSink()
        let audit = AuditLog(sink: sink, sandbox: "srv")
        let store = PolicyStore(initial: try Policy.parse("a.test\n", source: "p"), path: nil, extra: nil, audit: audit)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = LookupThreads(numberOfThreads: 1)
        let (proxy, _) = try ServerTests.listeningSocket()
        let ready = DispatchSemaphore(value: 0)
        let server = GatewayServer(
            configuration: GatewayConfiguration(sandbox: "srv", gatewayAddress: IPAddress("169.254.200.1")!, policy: store, audit: audit),
            listeners: GatewayListeners(proxy: proxy), group: group, lookups: pool, ready: { ready.signal() })
        let serviceGroup = ServiceGroup(services: [server], logger: Logger(label: "test"))
        let running = Task { try await serviceGroup.run() }
        XCTAssertEqual(ready.wait(timeout: .now() + 10), .success, "serving")
        server.servePorts([port])
        XCTAssertEqual(server.servedPorts, [])
        XCTAssertTrue(sink.lines.contains { $0.contains(
            #""event":"port_listen","sandbox":"srv","via":"port","port":\#(port),"reason":"this gateway binds its listeners only at start; restart it to listen on the port; port \#(port) is reachable through the proxy only","ok":false}"#) },
                      "\(sink.lines)")
        await serviceGroup.triggerGracefulShutdown()
        try await running.value
        try await group.shutdownGracefully()
        pool.shutdown()
    }
}
