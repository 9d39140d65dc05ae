import NIOCore
import NIOEmbedded
import NIOSSL
import XCTest
@testable import Gateway

/// Transparent TLS on 443: ClientHello parsing and the peek handler.
final class SNITests: XCTestCase {
    /// A real ClientHello, as NIOSSL's client writes it for `serverName`.
    private func clientHello(serverName: String?) throws -> ByteBuffer {
        let context = try NIOSSLContext(configuration: .makeClientConfiguration())
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        var all = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&part) }
        _ = try? channel.finish(acceptAlreadyClosed: true)
        return all
    }

    /// Re-frames one TLS record's payload into records of at most `size` bytes.
    private func fragment(_ record: ByteBuffer, size: Int) -> ByteBuffer {
        var input = record
        var out = ByteBuffer()
        while input.readableBytes >= 5 {
            let header = input.readBytes(length: 5)!
            let length = Int(header[3]) << 8 | Int(header[4])
            var payload = input.readSlice(length: length)!
            while payload.readableBytes > 0 {
                let piece = payload.readSlice(length: min(size, payload.readableBytes))!
                out.writeBytes(header[0..<3])
                out.writeInteger(UInt16(piece.readableBytes))
                out.writeImmutableBuffer(piece)
            }
        }
        return out
    }

    func testServerNameFromARealClientHello() throws {
        XCTAssertEqual(ClientHello.peek(try clientHello(serverName: "pypi.org")), .serverName("pypi.org"))
    }

    func testClientHelloSplitOverSmallRecordsIsReassembled() throws {
        let split = fragment(try clientHello(serverName: "files.pythonhosted.org"), size: 7)
        XCTAssertEqual(ClientHello.peek(split), .serverName("files.pythonhosted.org"))
    }

    func testPartialClientHelloNeedsMoreBytes() throws {
        let hello = try clientHello(serverName: "pypi.org")
        for cut in [1, 5, 40, hello.readableBytes - 1] {
            XCTAssertEqual(ClientHello.peek(hello.getSlice(at: 0, length: cut)!), .needMoreBytes, "cut at \(cut)")
        }
    }

    func testClientHelloWithoutServerName() throws {
        XCTAssertEqual(ClientHello.peek(try clientHello(serverName: nil)), .noServerName)
    }

    func testGarbageIsInvalid() {
        for text in ["GET / HTTP/1.1\r\n\r\n", "\u{16}\u{07}\u{01}\u{00}\u{05}hello", "\u{16}\u{03}\u{01}\u{00}\u{00}"] {
            guard case .invalid = ClientHello.peek(ByteBuffer(string: text)) else {
                return XCTFail("\(text.debugDescription) was not refused")
            }
        }
        var notHello = ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00])
        guard case .invalid = ClientHello.peek(notHello) else { return XCTFail("ServerHello accepted") }
        notHello.clear()
    }

    func testAllowedServerNameIsDialledOn443AndTheHelloReplayed() throws {
        let h = try GatewayHarness(listener: .tls)
        let hello = fragment(try clientHello(serverName: "allowed.test"), size: 100)
        let half = hello.readableBytes / 2
        try h.send(hello.getSlice(at: 0, length: half)!)
        XCTAssertTrue(h.tunnels.targets.isEmpty, "nothing is dialled before the hello is complete")
        try h.send(hello.getSlice(at: half, length: hello.readableBytes - half)!)
        XCTAssertEqual(h.tunnels.targets.map { "\($0.host):\($0.port)" }, ["allowed.test:443"])
        let tunnel = try XCTUnwrap(h.tunnels.last)
        XCTAssertEqual(tunnel.toUpstream.map { ByteBuffer(bytes: $0) }, hello, "the upstream gets exactly the bytes the sandbox sent")
        XCTAssertEqual(tunnel.toClient, "", "transparent TLS has no answer of its own")
        XCTAssertFalse(h.clientIsOpen, "the connection left NIO for the socket loop")
        tunnel.end(up: UInt64(hello.readableBytes), down: 12, ending: "no bytes for 300 s")
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_allow\",\"sandbox\":\"sbx\",\"via\":\"sni\",\"host\":\"allowed.test\",\"port\":443"), line)
        XCTAssertTrue(line.contains("\"bytes_up\":\(hello.readableBytes),\"bytes_down\":12"), line)
    }

    func testSNIDialFailureClosesAndIsAudited() throws {
        let h = try GatewayHarness(listener: .tls)
        h.tunnels.failure = .connectFailed(host: "allowed.test", port: 443, reason: "Connection refused")
        try h.send(try clientHello(serverName: "allowed.test"))
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertEqual(try h.received(), "", "transparent TLS never answers in plain text")
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_deny\",\"sandbox\":\"sbx\",\"via\":\"sni\",\"host\":\"allowed.test\",\"port\":443"), line)
        XCTAssertTrue(line.contains("cannot connect to allowed.test:443: Connection refused"), line)
    }

    func testDeniedServerNameClosesAndIsAudited() throws {
        let h = try GatewayHarness(listener: .tls)
        try h.send(try clientHello(serverName: "evil.test"))
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertTrue(h.tunnels.targets.isEmpty)
        XCTAssertEqual(try h.received(), "", "transparent TLS never answers in plain text")
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"event\":\"egress_deny\",\"sandbox\":\"sbx\",\"via\":\"sni\",\"host\":\"evil.test\",\"port\":443"), line)
        XCTAssertTrue(line.contains("not on the allowlist"), line)
    }

    func testNoServerNameClosesAndIsAudited() throws {
        let h = try GatewayHarness(listener: .tls)
        try h.send(try clientHello(serverName: nil))
        XCTAssertFalse(h.clientIsOpen)
        let line = try XCTUnwrap(h.auditLines.last)
        XCTAssertTrue(line.contains("\"via\":\"sni\""), line)
        XCTAssertTrue(line.contains("without a server name"), line)
    }

    func testGarbageOn443ClosesAndIsAudited() throws {
        let h = try GatewayHarness(listener: .tls)
        try h.send("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertTrue(h.tunnels.targets.isEmpty)
        XCTAssertTrue(try XCTUnwrap(h.auditLines.last).contains("not TLS"))
    }

    func testOversizedHelloIsCutOff() throws {
        var limits = GatewayLimits()
        limits.clientHelloBytes = 64
        let h = try GatewayHarness(listener: .tls, limits: limits)
        try h.send(ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x40, 0x00] + [UInt8](repeating: 1, count: 100)))
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertTrue(try XCTUnwrap(h.auditLines.last).contains("larger than 64 bytes"))
    }

    func testSlowHelloIsCutOffAtTheDeadline() throws {
        var limits = GatewayLimits()
        limits.clientHelloTimeout = .seconds(5)
        let h = try GatewayHarness(listener: .tls, limits: limits)
        let hello = try clientHello(serverName: "allowed.test")
        try h.send(hello.getSlice(at: 0, length: 10)!)
        h.loop.advanceTime(by: .seconds(4))
        XCTAssertTrue(h.clientIsOpen)
        h.loop.advanceTime(by: .seconds(2))
        XCTAssertFalse(h.clientIsOpen)
        XCTAssertTrue(h.tunnels.targets.isEmpty)
        XCTAssertTrue(try XCTUnwrap(h.auditLines.last).contains("no complete TLS ClientHello"))
    }
}
