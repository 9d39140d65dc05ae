#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// `GatewayServer` on real sockets: a listener from a descriptor, the real `PolicyDialer`
/// against the local web server fixture, and graceful shutdown.
final class ServerTests: XCTestCase {
    /// A listening TCP socket on 127.0.0.1 and its port.
    /// An upstream on 127.0.0.1 that holds each connection, sending nothing, until the
    /// client's end arrives, then closes it; and its port.
    static func holdingUpstream() throws -> (BackgroundProcess, UInt16) {
        let upstream = try BackgroundProcess(["/usr/bin/python3", "-c", """
            import socket, threading
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
            print(s.getsockname()[1], flush=True)
            def serve(c):
                while c.recv(4096): pass
                c.close()
            while True:
                c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
            """])
        var port: UInt16?
        XCTAssertTrue(Wait.until { port = UInt16(upstream.output.trimmingCharacters(in: .whitespacesAndNewlines)); return port != nil })
        return (upstream, try XCTUnwrap(port, "the holding upstream did not start"))
    }

    static func listeningSocket() throws -> (CInt, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(fd, 64), 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    func testProxyServesThroughThePolicyDialerAndDrainsOnShutdown() async throws {
        let webPort = TCP.freePort()
        let web = try BackgroundProcess(["/usr/bin/python3", TestPaths.fixture("web-server.py"), "--port", String(webPort)])
        defer { web.stop() }
        XCTAssertTrue(Wait.forTCP(port: webPort), "the web server fixture did not start")

        let served = try ServedProxy(policy: "web.test:\(webPort)\nloopback.test:\(webPort)\nresolve web.test=127.0.0.1\nresolve loopback.test=127.0.0.1\nallow-private 127.0.0.1/32\n")

        let curl = try Run.process(["curl", "-sS", "-x", "http://127.0.0.1:\(served.port)", "http://web.test:\(webPort)/hello"], timeout: 20)
        XCTAssertEqual(curl.status, 0, curl.stderr)
        XCTAssertTrue(curl.stdout.contains("host=web.test:\(webPort) path=/hello"), curl.stdout)

        let denied = try Run.process(["curl", "-sS", "-i", "-x", "http://127.0.0.1:\(served.port)", "http://other.test/"], timeout: 20)
        XCTAssertTrue(denied.stdout.hasPrefix("HTTP/1.1 403"), denied.stdout)
        XCTAssertTrue(denied.stdout.contains("airlock: other.test is not on the allowlist; add it to /test/policy or pass --allow other.test"), denied.stdout)

        let big = try Run.process(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", "-x", "http://127.0.0.1:\(served.port)",
                                   "http://web.test:\(webPort)/big?bytes=3000000"], timeout: 60)
        XCTAssertEqual(big.stdout, "3000000", big.stderr)

        try await served.stop()
        XCTAssertFalse(TCP.canConnect(host: "127.0.0.1", port: served.port), "the listener is closed after shutdown")
        let allows = served.auditLines.filter { $0.contains("\"event\":\"egress_allow\"") }
        XCTAssertEqual(allows.count, 2, served.auditLines.joined(separator: "\n"))
        XCTAssertTrue(allows.last?.contains("\"bytes_down\":3000000") == true, allows.last ?? "")
        XCTAssertTrue(allows.first?.contains("\"rule\":\"web.test:\(webPort)\"") == true, allows.first ?? "")
    }

    func testConnectTunnelsAreSplicedWithEarlyBytesReplayedAndAudited() async throws {
        let webPort = TCP.freePort()
        let web = try BackgroundProcess(["/usr/bin/python3", TestPaths.fixture("web-server.py"), "--port", String(webPort)])
        defer { web.stop() }
        XCTAssertTrue(Wait.forTCP(port: webPort), "the web server fixture did not start")

        let served = try ServedProxy(policy: "web.test:\(webPort)\nresolve web.test=127.0.0.1\nallow-private 127.0.0.1/32\n")

        // The request inside the tunnel is sent in the same write as the CONNECT head: the
        // gateway must replay it to the upstream after answering.
        let early = "CONNECT web.test:\(webPort) HTTP/1.1\r\nHost: web.test:\(webPort)\r\n\r\n"
            + "GET /early HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n"
        let answer = try Run.process(["/usr/bin/python3", "-c", """
            import socket, sys
            s = socket.create_connection(("127.0.0.1", \(served.port)), timeout=10)
            s.sendall(sys.argv[1].encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk: break
                data += chunk
            sys.stdout.write(data.decode("latin-1"))
            """, early], timeout: 20)
        XCTAssertTrue(answer.stdout.hasPrefix("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n"), answer.stdout)
        XCTAssertTrue(answer.stdout.contains("path=/early"), answer.stdout)

        // A large download through a CONNECT tunnel (curl -p) arrives whole.
        let big = try Run.process(["curl", "-sS", "-p", "-o", "/dev/null", "-w", "%{size_download}", "-x", "http://127.0.0.1:\(served.port)",
                                   "http://web.test:\(webPort)/big?bytes=5000000"], timeout: 60)
        XCTAssertEqual(big.stdout, "5000000", big.stderr)
        XCTAssertTrue(Wait.until { served.server.openConnections == 0 }, "finished tunnels free their place")

        let statistics = served.server.spliceStatistics
        XCTAssertEqual(statistics.tunnelsTotal, 2, "both tunnels were spliced by the socket loop, not copied by NIO: \(statistics)")
        XCTAssertGreaterThan(statistics.bytesTotal, 5_000_000)
        XCTAssertEqual(statistics.pipesInUse, 0)

        try await served.stop()
        let allows = served.auditLines.filter { $0.contains("\"event\":\"egress_allow\"") && $0.contains("\"via\":\"connect\"") }
        XCTAssertEqual(allows.count, 2, served.auditLines.joined(separator: "\n"))
        XCTAssertTrue(allows.contains { $0.contains("\"bytes_up\":\(early.utf8.count - early.components(separatedBy: "\r\n\r\n")[0].utf8.count - 4)") },
                      "the replayed bytes count as the sandbox's: \(allows)")
        XCTAssertTrue(allows.contains { line in
            guard let range = line.range(of: "\"bytes_down\":") else { return false }
            return Int(line[range.upperBound...].prefix { $0.isNumber }).map { $0 > 5_000_000 } ?? false
        }, "the download's bytes are counted: \(allows)")
    }

    func testConnectionsOverTheLimitAreClosedAndAuditedWithoutFlooding() async throws {
        var limits = GatewayLimits()
        limits.maxConnections = 2
        let served = try ServedProxy(policy: "web.test\n", limits: limits)

        let held = try Run.process(["/usr/bin/python3", "-c", """
            import socket, time
            held = [socket.create_connection(("127.0.0.1", \(served.port)), timeout=5) for _ in range(2)]
            time.sleep(0.5)
            refused = 0
            for _ in range(5):
                s = socket.create_connection(("127.0.0.1", \(served.port)), timeout=5)
                try:
                    refused += s.recv(1) == b""
                except ConnectionResetError:
                    refused += 1
            # The held connections still work: a request on one of them is answered.
            held[0].sendall(b"GET http://other.test/ HTTP/1.1\\r\\nHost: other.test\\r\\n\\r\\n")
            print(refused, held[0].recv(12).decode())
            """], timeout: 30)
        XCTAssertEqual(held.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "5 HTTP/1.1 403", held.stderr)

        try await served.stop()
        let limitLines = served.auditLines.filter { $0.contains("connection limit of 2 reached for this sandbox") }
        XCTAssertEqual(limitLines.count, 1, "five refusals within a second make one line: \(served.auditLines)")
        XCTAssertTrue(limitLines.first?.contains("\"event\":\"egress_deny\"") == true, limitLines.first ?? "")
        XCTAssertTrue(limitLines.first?.contains("\"via\":\"proxy\"") == true, limitLines.first ?? "")
    }

    func testShutdownDrainsForTheDrainTimeoutThenClosesSplicedTunnels() async throws {
        let (upstream, port) = try Self.holdingUpstream()
        defer { upstream.stop() }
        let policy = "hold.test:\(port)\nresolve hold.test=127.0.0.1\nallow-private 127.0.0.1/32\n"

        // A client holds a spliced tunnel open and reports when the gateway closes it.
        func tunnel(through served: ServedProxy) throws -> BackgroundProcess {
            let client = try BackgroundProcess(["/usr/bin/python3", "-c", """
                import socket
                s = socket.create_connection(("127.0.0.1", \(served.port)), timeout=3600)
                s.sendall(b"CONNECT hold.test:\(port) HTTP/1.1\\r\\nHost: hold.test:\(port)\\r\\n\\r\\n")
                print(s.recv(100).decode().split("\\r\\n")[0], flush=True)
                print("closed" if s.recv(100) == b"" else "data", flush=True)
                """])
            XCTAssertTrue(Wait.until { client.output.contains("200 Connection established") }, client.output)
            XCTAssertTrue(Wait.until { served.server.spliceStatistics.tunnels == 1 }, "\(served.server.spliceStatistics)")
            return client
        }

        // Within the drain timeout: the listener is closed at once, the open tunnel is left
        // alone, and shutdown waits for it to end.
        var patient = GatewayLimits()
        patient.drainTimeout = .hours(1)
        let draining = try ServedProxy(policy: policy, limits: patient)
        let holder = try tunnel(through: draining)
        let stopped = NIOLockedValueBox(false)
        let stopping = Task {
            try await draining.stop()
            stopped.withLockedValue { $0 = true }
        }
        XCTAssertTrue(Wait.until { !TCP.canConnect(host: "127.0.0.1", port: draining.port) }, "the listener closes when shutdown begins")
        XCTAssertEqual(draining.server.openConnections, 1, "the tunnel is still open while draining")
        XCTAssertFalse(holder.output.contains("closed"), "the gateway does not close a tunnel within the drain timeout: \(holder.output)")
        XCTAssertFalse(stopped.withLockedValue { $0 }, "shutdown waits for the open tunnel")
        holder.stop()
        try await stopping.value
        XCTAssertFalse(draining.auditLines.contains { $0.contains("closed by the gateway") }, draining.auditLines.joined(separator: "\n"))

        // Past the drain timeout: the gateway closes the tunnel, and says so.
        var impatient = GatewayLimits()
        impatient.drainTimeout = .milliseconds(1)
        let served = try ServedProxy(policy: policy, limits: impatient)
        let client = try tunnel(through: served)
        defer { client.stop() }
        try await served.stop()
        XCTAssertTrue(Wait.until { client.output.contains("closed") }, "the client sees its tunnel closed: \(client.output)")
        let line = served.auditLines.first { $0.contains("\"egress_allow\"") && $0.contains("hold.test") }
        XCTAssertTrue(line?.contains("\"reason\":\"closed by the gateway\"") == true, line ?? served.auditLines.joined(separator: "\n"))
    }

    func testSplicedTunnelsCountAgainstTheLimitUntilTheyEnd() async throws {
        let (upstream, port) = try Self.holdingUpstream()
        defer { upstream.stop() }

        var limits = GatewayLimits()
        limits.maxConnections = 2
        let served = try ServedProxy(policy: "hold.test:\(port)\nresolve hold.test=127.0.0.1\nallow-private 127.0.0.1/32\n", limits: limits)

        let result = try Run.process(["/usr/bin/python3", "-c", """
            import socket, time
            def tunnel():
                s = socket.create_connection(("127.0.0.1", \(served.port)), timeout=10)
                s.sendall(b"CONNECT hold.test:\(port) HTTP/1.1\\r\\nHost: hold.test\\r\\n\\r\\n")
                return s, s.recv(100).split(b"\\r\\n")[0].decode()
            a, first = tunnel()
            b, second = tunnel()
            time.sleep(0.3)
            try:
                c, third = tunnel()
            except OSError:
                third = "refused"
            if third == "": third = "refused"
            a.close()
            time.sleep(0.5)
            d, fourth = tunnel()
            print(first, "|", second, "|", third, "|", fourth)
            """], timeout: 30)
        XCTAssertEqual(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                       "HTTP/1.1 200 Connection established | HTTP/1.1 200 Connection established | refused | HTTP/1.1 200 Connection established",
                       "two spliced tunnels fill a limit of two; when one ends its place is free again: \(result)")
        XCTAssertTrue(Wait.until { served.server.openConnections == 0 }, "every place is given back once the tunnels end")

        try await served.stop()
        XCTAssertEqual(served.auditLines.filter { $0.contains("connection limit of 2 reached") }.count, 1, served.auditLines.joined(separator: "\n"))
    }

    func testPolicyDialerRefusesLoopbackWithoutAllowPrivate() async throws {
        let sink = MemoryAuditSink()
        let audit = AuditLog(sink: sink)
        let policy = try Policy.parse("web.test\nresolve web.test=127.0.0.1\n", source: "/test/policy")
        let store = PolicyStore(initial: policy, path: nil, extra: nil, audit: audit)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = LookupThreads(numberOfThreads: 1)
        let dialer = PolicyDialer(policy: store, limits: GatewayLimits(), forbidden: [], lookups: pool)
        do {
            _ = try await dialer.dial(UpstreamTarget(host: "web.test", port: 80), on: group.next()).get()
            XCTFail("dialled a loopback address without an allow-private rule")
        } catch let error as DialError {
            guard case .refused(let host, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(host, "web.test")
            XCTAssertTrue(reason.contains("127.0.0.1"), reason)
            XCTAssertTrue(reason.contains("allow-private"), reason)
            XCTAssertEqual(error.status.code, 403)
        }
        let gateway = PolicyDialer(policy: store, limits: GatewayLimits(), forbidden: [IPAddress("127.0.0.1")!], lookups: pool)
        do {
            _ = try await gateway.dial(UpstreamTarget(host: "web.test", port: 80), on: group.next()).get()
            XCTFail("dialled the gateway's own address")
        } catch let error as DialError {
            XCTAssertTrue(error.description.contains("the gateway itself"), error.description)
        }
        try await group.shutdownGracefully()
        pool.shutdown()
    }
}

/// A `GatewayServer` serving one explicit-proxy listener on 127.0.0.1 in a `ServiceGroup`,
/// with the real `PolicyDialer` and an in-memory audit log; ready (listening, no connection
/// open) when made.
final class ServedProxy {
    let server: GatewayServer
    let port: UInt16
    private let sink = MemoryAuditSink()
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let pool = LookupThreads(numberOfThreads: 1)
    private let serviceGroup: ServiceGroup
    private let running: Task<Void, Error>

    init(policy text: String, limits: GatewayLimits = GatewayLimits()) throws {
        let audit = AuditLog(sink: sink, sandbox: "srv")
        let store = PolicyStore(initial: try Policy.parse(text, source: "/test/policy"), path: nil, extra: nil, audit: audit)
        let (fd, port) = try ServerTests.listeningSocket()
        self.port = port
        server = GatewayServer(
            configuration: GatewayConfiguration(sandbox: "srv", gatewayAddress: IPAddress("169.254.200.1")!, policy: store,
                                                audit: audit, limits: limits),
            listeners: GatewayListeners(proxy: fd), group: group, lookups: pool)
        let serviceGroup = ServiceGroup(services: [server], logger: Logger(label: "test"))
        self.serviceGroup = serviceGroup
        running = Task { try await serviceGroup.run() }
        XCTAssertTrue(Wait.forTCP(port: port), "the proxy listener serves")
        let server = self.server
        XCTAssertTrue(Wait.until { server.openConnections == 0 }, "the readiness probe's connection is gone")
    }

    /// The audit lines written so far.
    var auditLines: [String] { sink.lines }

    /// Graceful shutdown (drain included), then the event loops and the lookup threads.
    func stop() async throws {
        await serviceGroup.triggerGracefulShutdown()
        try await running.value
        try await group.shutdownGracefully()
        pool.shutdown()
    }
}
