@testable import Gateway
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import XCTest
@testable import GatewayCore

/// Port 22: what an SSH client receives (the identification string and an unencrypted
/// `SSH_MSG_DISCONNECT`, RFC 4253 §6 and §11.1), the audit line, and the bounds.
final class SSHRefusalTests: XCTestCase {
    /// The disconnect packet, byte for byte.
    func testDisconnectPacketBytes() {
        XCTAssertEqual(SSHRefusal.disconnect(reason: 7, description: "no"), [
            0x00, 0x00, 0x00, 0x14,  // packet_length 20 (padding length, payload, padding)
            0x04,                    // padding_length 4: 4 + 20 is a multiple of 8
            0x01,                    // SSH_MSG_DISCONNECT
            0x00, 0x00, 0x00, 0x07,  // reason 7, SSH_DISCONNECT_SERVICE_NOT_AVAILABLE
            0x00, 0x00, 0x00, 0x02, 0x6e, 0x6f,  // description "no"
            0x00, 0x00, 0x00, 0x00,  // language tag ""
            0x00, 0x00, 0x00, 0x00,  // padding
        ])
        // Padding under 4 bytes is topped up by a block: 5 + 17 = 22, padding 2 + 8.
        let packet = SSHRefusal.disconnect(reason: 2, description: "four")
        XCTAssertEqual(packet[4], 10)
        XCTAssertEqual(packet.count % 8, 0)
    }

    /// The whole answer: identification line, then one packet whose description is the
    /// one-line advice to use HTTPS.
    func testAnswerIsIdentificationThenDisconnectSayingHowToUseHTTPS() throws {
        let answer = SSHRefusal.answer
        let line = Array("SSH-2.0-airlock\r\n".utf8)
        XCTAssertEqual(Array(answer.prefix(line.count)), line)
        let packet = Array(answer.dropFirst(line.count))
        let length = Int(packet[0]) << 24 | Int(packet[1]) << 16 | Int(packet[2]) << 8 | Int(packet[3])
        XCTAssertEqual(packet.count, length + 4, "exactly one packet")
        XCTAssertEqual((length + 4) % 8, 0)
        XCTAssertEqual(packet[5], 1, "SSH_MSG_DISCONNECT")
        XCTAssertEqual(Array(packet[6..<10]), [0, 0, 0, 7])
        let textLength = Int(packet[10]) << 24 | Int(packet[11]) << 16 | Int(packet[12]) << 8 | Int(packet[13])
        let text = String(decoding: packet[14..<(14 + textLength)], as: UTF8.self)
        XCTAssertEqual(text, "airlock: SSH is not offered through the gateway; use HTTPS, e.g. git clone https://github.com/OWNER/REPO with airlock run --repo OWNER/REPO")
        XCTAssertFalse(text.contains("\n") || text.contains("\r"))
    }

    /// Records a half-close instead of passing it on (an `EmbeddedChannel` closes fully
    /// whatever the mode).
    private final class HalfCloseRecorder: ChannelOutboundHandler {
        typealias OutboundIn = Any
        var outputClosed = false

        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            guard mode == .output else { return context.close(mode: mode, promise: promise) }
            outputClosed = true
            promise?.succeed(())
        }
    }

    private var recorder = HalfCloseRecorder()

    private func activeChannel(sink: MemoryAuditSink, maxBytes: Int = 64 * 1024) throws -> EmbeddedChannel {
        recorder = HalfCloseRecorder()
        let channel = EmbeddedChannel(handlers: [
            recorder, SSHRefusalHandler(audit: AuditLog(sink: sink), sandbox: "s1", maxBytes: maxBytes),
        ])
        channel.localAddress = try SocketAddress(ipAddress: "169.254.200.1", port: 22)
        try channel.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 40000)).wait()
        return channel
    }

    /// On connect the answer goes out at once and `ssh_deny` is audited with the address
    /// dialled (SSH carries no host name); the write side is then closed.
    func testAnswersAtOnceAndAudits() throws {
        let sink = MemoryAuditSink()
        let channel = try activeChannel(sink: sink)
        var written = try XCTUnwrap(channel.readOutbound(as: ByteBuffer.self))
        XCTAssertEqual(written.readBytes(length: written.readableBytes), SSHRefusal.answer)
        XCTAssertEqual(sink.lines.count, 1)
        let line = try XCTUnwrap(sink.lines.first)
        XCTAssertTrue(line.contains(#""event":"ssh_deny","sandbox":"s1","via":"ssh","host":"169.254.200.1","port":22,"reason":"SSH is not offered; the client was told to use HTTPS""#), line)
        XCTAssertTrue(recorder.outputClosed, "half-closed after the answer")
        XCTAssertTrue(channel.isActive, "waits for the client to read the answer and close")
        _ = try? channel.finish()
    }

    /// The client's identification and key exchange are read and dropped; its close ends
    /// the connection.
    func testClientCloseEndsTheConnection() throws {
        let channel = try activeChannel(sink: MemoryAuditSink())
        _ = try channel.readOutbound(as: ByteBuffer.self)
        try channel.writeInbound(ByteBuffer(string: "SSH-2.0-OpenSSH_9.2p1\r\n"))
        XCTAssertTrue(channel.isActive)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        XCTAssertFalse(channel.isActive)
    }

    /// A client that keeps sending is cut off past the bound.
    func testClientSendingMoreThanTheBoundIsCutOff() throws {
        let channel = try activeChannel(sink: MemoryAuditSink(), maxBytes: 100)
        _ = try channel.readOutbound(as: ByteBuffer.self)
        try channel.writeInbound(ByteBuffer(bytes: [UInt8](repeating: 0x41, count: 100)))
        XCTAssertTrue(channel.isActive)
        try channel.writeInbound(ByteBuffer(bytes: [0x41]))
        XCTAssertFalse(channel.isActive)
    }

    /// A client that never closes is closed after the timeout.
    func testSilentClientIsClosedAfterTheTimeout() throws {
        let channel = try activeChannel(sink: MemoryAuditSink())
        _ = try channel.readOutbound(as: ByteBuffer.self)
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        XCTAssertTrue(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        XCTAssertFalse(channel.isActive)
    }

    /// `ssh_deny` lines share the sandbox's denial budget: a client reconnecting in a loop
    /// cannot flood the log, and what was dropped is counted in the next line.
    func testSSHRefusalsShareTheDenialBudget() throws {
        let sink = MemoryAuditSink()
        let now = NIOLockedValueBox<Double>(1)
        let audit = AuditLog(sink: sink, sandbox: "s1", denials: DenialBudget.Limits(burst: 1, perSecond: 1),
                             clock: { now.withLockedValue { $0 } })
        audit.record(AuditEvent(.egressDeny, via: .sni, host: "a.example", port: 443, reason: "a.example is not on the allowlist"))
        for _ in 0..<3 {
            let channel = EmbeddedChannel(handler: SSHRefusalHandler(audit: audit, sandbox: "s1"))
            try channel.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 40000)).wait()
            _ = try? channel.finish()
        }
        XCTAssertEqual(sink.lines.count, 1, "\(sink.lines)")
        now.withLockedValue { $0 += 1 }
        let channel = EmbeddedChannel(handler: SSHRefusalHandler(audit: audit, sandbox: "s1"))
        try channel.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 40000)).wait()
        _ = try? channel.finish()
        XCTAssertEqual(sink.lines.count, 3, "\(sink.lines)")
        XCTAssertTrue(sink.lines[1].contains(#""event":"ssh_deny","sandbox":"s1","via":"ssh","reason":"3 more refused SSH connection(s) not written one by one"#), sink.lines[1])
        XCTAssertTrue(sink.lines[2].contains(#""event":"ssh_deny""#), sink.lines[2])
    }
}

/// The transparent listeners on the policy's other ports: which ports, the limit, and what
/// the first byte decides.
final class PortListenerTests: XCTestCase {
    /// Ports of `host:port` rules, without 80, 443 and the gateway's own 22, 53 and 3128.
    func testListenerPortsAreThePortRulesOffTheStandardOnes() throws {
        let policy = try Policy.parse("a.test:8443\n*.b.test:8443\nc.test:9000\nd.test:22\ne.test:3128\nf.test:443\ng.test\n!h.test\n", source: "p")
        XCTAssertEqual(policy.listenerPorts, [8443, 9000])
        XCTAssertNoThrow(try policy.checkListenerPorts())
    }

    /// Over the limit: one line naming the count, the ports and the limit.
    func testMorePortsThanTheLimitAreRefused() throws {
        let text = (1...11).map { "h.test:\(9000 + $0)" }.joined(separator: "\n")
        let policy = try Policy.parse(text, source: "policy.txt")
        XCTAssertThrowsError(try policy.checkListenerPorts()) { error in
            XCTAssertEqual("\(error)", "policy.txt: 11 ports besides 80 and 443 are allowed (9001, 9002, 9003, 9004, 9005, 9006, 9007, 9008, 9009, 9010, 9011); the gateway listens on at most 10: allow fewer ports")
        }
        let ten = try Policy.parse((1...10).map { "h.test:\(9000 + $0)" }.joined(separator: "\n"), source: "p")
        XCTAssertNoThrow(try ten.checkListenerPorts())
    }

    func testFirstByteDecides() {
        XCTAssertEqual(FirstBytesRouter.kind(ofFirstByte: 0x16), .tls)
        XCTAssertEqual(FirstBytesRouter.kind(ofFirstByte: UInt8(ascii: "G")), .http)
        XCTAssertEqual(FirstBytesRouter.kind(ofFirstByte: UInt8(ascii: "P")), .http)
        XCTAssertEqual(FirstBytesRouter.kind(ofFirstByte: UInt8(ascii: "S")), .http)
        XCTAssertEqual(FirstBytesRouter.kind(ofFirstByte: 0), .other)
        XCTAssertEqual(FirstBytesRouter.kind(ofFirstByte: UInt8(ascii: "g")), .other)
    }

    /// Neither TLS nor HTTP: refused, audited with the port and why, closed.
    func testOtherProtocolsAreRefusedAndAudited() throws {
        let sink = MemoryAuditSink()
        var installed: [FirstBytesRouter.Kind] = []
        let channel = EmbeddedChannel(handler: FirstBytesRouter(
            port: 8443, audit: AuditLog(sink: sink), sandbox: "s1", timeout: .seconds(5)) { kind, _ in installed.append(kind) })
        try channel.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 40000)).wait()
        try channel.writeInbound(ByteBuffer(string: "SSH-2.0-OpenSSH_9.2\r\n"))
        XCTAssertTrue(channel.isActive, "an uppercase letter is taken as HTTP")
        XCTAssertEqual(installed, [.http])

        let refused = EmbeddedChannel(handler: FirstBytesRouter(
            port: 8443, audit: AuditLog(sink: sink), sandbox: "s1", timeout: .seconds(5)) { kind, _ in installed.append(kind) })
        try refused.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 40000)).wait()
        try refused.writeInbound(ByteBuffer(bytes: [0x00, 0x01, 0x02]))
        XCTAssertFalse(refused.isActive)
        XCTAssertEqual(installed, [.http])
        XCTAssertEqual(sink.lines.count, 1)
        XCTAssertTrue(sink.lines[0].contains(#""event":"egress_deny","sandbox":"s1","via":"port","port":8443,"reason":"neither a TLS ClientHello nor an HTTP request on port 8443; only TLS with a server name and HTTP with a Host can be routed""#), sink.lines[0])
    }

    /// A client that sends nothing is closed after the timeout, audited.
    func testSilentClientIsClosedAfterTheTimeout() throws {
        let sink = MemoryAuditSink()
        let channel = EmbeddedChannel(handler: FirstBytesRouter(
            port: 8443, audit: AuditLog(sink: sink), sandbox: "s1", timeout: .seconds(5)) { _, _ in })
        try channel.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 40000)).wait()
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        XCTAssertFalse(channel.isActive)
        XCTAssertTrue(sink.lines.first?.contains("nothing sent within the handshake timeout on port 8443") == true, "\(sink.lines)")
    }
}
