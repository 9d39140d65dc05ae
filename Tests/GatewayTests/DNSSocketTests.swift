import NIOCore
import NIOPosix
import XCTest
import TestSupport
@testable import Gateway
@testable import GatewayCore

/// The DNS handlers on real sockets on 127.0.0.1, queried with `dig` over UDP and TCP.
final class DNSSocketTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var channels: [Channel] = []
    private var sink: MemoryAuditSink!
    private var udpPort = 0
    private var tcpPort = 0

    override func setUpWithError() throws {
        try Precondition.require(FileManager.default.isExecutableFile(atPath: "/usr/bin/dig"), "dig is not installed (apt-get install dnsutils)")
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        sink = MemoryAuditSink()
        let audit = AuditLog(sink: sink, sandbox: "sbx")
        let store = PolicyStore(initial: try Policy.parse("pypi.org\n*.pythonhosted.org\n", source: "p"),
                                path: nil, extra: nil, audit: audit)
        let gateway = IPAddress.v4(0xA9FE_C801)
        let udp = try DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DNSUDPHandler(policy: store, gatewayAddress: gateway, audit: audit))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        let tcp = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        DNSTCPHandler.handlers(policy: store, gatewayAddress: gateway, audit: audit))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        channels = [udp, tcp]
        udpPort = udp.localAddress?.port ?? 0
        tcpPort = tcp.localAddress?.port ?? 0
    }

    override func tearDownWithError() throws {
        for channel in channels { try? channel.close().wait() }
        try group?.syncShutdownGracefully()
    }

    private func dig(_ arguments: [String], tcp: Bool = false) throws -> String {
        let port = tcp ? tcpPort : udpPort
        let result = try Run.process(["/usr/bin/dig", "@127.0.0.1", "-p", String(port), "+time=5", "+tries=1"]
                                     + (tcp ? ["+tcp"] : []) + arguments, timeout: 30)
        XCTAssertFalse(result.timedOut, "dig timed out")
        return result.stdout
    }

    func testAllowedNameOverUDPAndTCP() throws {
        XCTAssertEqual(try dig(["+short", "pypi.org", "A"]), "169.254.200.1\n")
        XCTAssertEqual(try dig(["+short", "files.pythonhosted.org", "A"], tcp: true), "169.254.200.1\n")
        XCTAssertEqual(try dig(["+short", "airlock.internal", "A"], tcp: true), "169.254.200.1\n")
        XCTAssertEqual(try dig(["+short", "-x", "169.254.200.1"]), "airlock.internal.\n")
        let aaaa = try dig(["pypi.org", "AAAA"])
        XCTAssertTrue(aaaa.contains("status: NOERROR"), aaaa)
        XCTAssertTrue(aaaa.contains("ANSWER: 0"), aaaa)
        XCTAssertEqual(sink.lines, [])
    }

    func testDeniedNameIsNXDOMAINAndAudited() throws {
        let udp = try dig(["exfil.example.org", "TXT"])
        XCTAssertTrue(udp.contains("status: NXDOMAIN"), udp)
        let tcp = try dig(["pythonhosted.org", "A"], tcp: true)
        XCTAssertTrue(tcp.contains("status: NXDOMAIN"), tcp)
        XCTAssertTrue(Wait.until(timeout: 10) { self.sink.lines.count == 2 })
        XCTAssertTrue(sink.lines[0].contains(#""event":"dns_deny","sandbox":"sbx","via":"dns","host":"exfil.example.org","qtype":"TXT""#), sink.lines[0])
        XCTAssertTrue(sink.lines[1].contains(#""host":"pythonhosted.org","qtype":"A""#), sink.lines[1])
    }
}
