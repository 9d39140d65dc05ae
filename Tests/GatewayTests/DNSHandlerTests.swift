import NIOCore
import NIOEmbedded
import NIOTestUtils
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// The UDP and TCP handlers on `EmbeddedChannel`s, and the TCP framing decoder.
final class DNSHandlerTests: XCTestCase {
    private let gateway = IPAddress.v4(0xA9FE_C801)
    private typealias Q = DNSQueryBytes

    private func store(_ text: String = "pypi.org\n", sink: MemoryAuditSink) throws -> PolicyStore {
        PolicyStore(initial: try Policy.parse(text, source: "p"), path: nil, extra: nil, audit: AuditLog(sink: sink))
    }

    func testUDPAnswersToTheSenderAndAuditsDenials() throws {
        let sink = MemoryAuditSink()
        let channel = EmbeddedChannel(handler: DNSUDPHandler(policy: try store(sink: sink), gatewayAddress: gateway,
                                                             audit: AuditLog(sink: sink, sandbox: "sbx")))
        defer { _ = try? channel.finish() }
        let client = try SocketAddress(ipAddress: "169.254.200.2", port: 40000)

        try channel.writeInbound(AddressedEnvelope(remoteAddress: client, data: ByteBuffer(bytes: Q.query(name: "pypi.org", type: 1))))
        let answer = try XCTUnwrap(channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
        XCTAssertEqual(answer.remoteAddress, client)
        XCTAssertEqual(Array(answer.data.readableBytesView),
                       Q.header(flags: 0x8580, qd: 1, an: 1) + Q.name("pypi.org") + [0, 1, 0, 1]
                       + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 169, 254, 200, 1])
        XCTAssertEqual(sink.lines, [])

        try channel.writeInbound(AddressedEnvelope(remoteAddress: client, data: ByteBuffer(bytes: Q.query(name: "exfil.example.org", type: 16))))
        let denied = try XCTUnwrap(channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
        XCTAssertEqual(try DNSMessage(parsing: Array(denied.data.readableBytesView)).header.rcode, .nameError)
        XCTAssertEqual(sink.lines.count, 1)
        XCTAssertTrue(sink.lines[0].contains(#""event":"dns_deny","sandbox":"sbx","via":"dns","host":"exfil.example.org","qtype":"TXT","reason":"exfil.example.org is not on the allowlist"}"#), sink.lines[0])

        // Garbage shorter than a header is dropped; the next query is still answered.
        try channel.writeInbound(AddressedEnvelope(remoteAddress: client, data: ByteBuffer(bytes: [1, 2, 3])))
        XCTAssertNil(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
        try channel.writeInbound(AddressedEnvelope(remoteAddress: client, data: ByteBuffer(bytes: Q.query(name: "pypi.org", type: 28))))
        XCTAssertNotNil(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
    }

    func testUDPReadsTheCurrentPolicyOnEveryQuery() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("policy.txt")
        try "pypi.org\n".write(toFile: path, atomically: true, encoding: .utf8)
        let sink = MemoryAuditSink()
        let store = PolicyStore(initial: try Policy.load(path: path), path: path, extra: nil, audit: AuditLog(sink: sink))
        let channel = EmbeddedChannel(handler: DNSUDPHandler(policy: store, gatewayAddress: gateway, audit: AuditLog(sink: sink)))
        defer { _ = try? channel.finish() }
        let client = try SocketAddress(ipAddress: "169.254.200.2", port: 40000)
        func rcode(_ name: String) throws -> DNSResponseCode {
            try channel.writeInbound(AddressedEnvelope(remoteAddress: client, data: ByteBuffer(bytes: Q.query(name: name, type: 1))))
            let answer = try XCTUnwrap(channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
            return try DNSMessage(parsing: Array(answer.data.readableBytesView)).header.rcode
        }
        XCTAssertEqual(try rcode("crates.io"), .nameError)
        try "crates.io\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(store.reload())
        XCTAssertEqual(try rcode("crates.io"), .noError)
        XCTAssertEqual(try rcode("pypi.org"), .nameError)
    }

    func testUDPBatchWritesOneAuditLinePerDenialInOneWriteBeforeAnswering() throws {
        let sink = BatchRecordingSink()
        let channel = EmbeddedChannel(handler: DNSUDPHandler(policy: try store(sink: MemoryAuditSink()), gatewayAddress: gateway,
                                                             audit: AuditLog(sink: sink, sandbox: "sbx")))
        defer { _ = try? channel.finish() }
        // The sink notes whether any answer had gone out when the lines were written.
        sink.onWrite = {
            if (try? channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self)) != nil { sink.answersSeenBeforeWrite += 1 }
        }
        let clients = try (0..<5).map { try SocketAddress(ipAddress: "169.254.200.\($0 + 2)", port: 40000 + $0) }
        // One read batch: three denied names, one allowed, one dropped, one more denied.
        let batch: [(SocketAddress, [UInt8])] = [
            (clients[0], Q.query(id: 1, name: "a.example.org", type: 1)),
            (clients[1], Q.query(id: 2, name: "pypi.org", type: 1)),
            (clients[2], Q.query(id: 3, name: "b.example.org", type: 16)),
            (clients[3], Q.query(id: 4, flags: 0x8000, name: "pypi.org", type: 1)),
            (clients[4], Q.query(id: 5, name: "c.example.org", type: 28)),
            (clients[0], Q.query(id: 6, name: "d.example.org", type: 1)),
        ]
        for (client, query) in batch {
            channel.pipeline.fireChannelRead(NIOAny(AddressedEnvelope(remoteAddress: client, data: ByteBuffer(bytes: query))))
        }
        XCTAssertEqual(sink.lines.count, 0, "lines wait for the end of the batch")
        XCTAssertNil(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self), "answers wait for the end of the batch")
        channel.pipeline.fireChannelReadComplete()

        XCTAssertEqual(sink.writes, 1)
        XCTAssertEqual(sink.answersSeenBeforeWrite, 0)
        XCTAssertEqual(sink.lines.count, 4)
        for (line, host) in zip(sink.lines, ["a.example.org\",\"qtype\":\"A\"", "b.example.org\",\"qtype\":\"TXT\"",
                                             "c.example.org\",\"qtype\":\"AAAA\"", "d.example.org\",\"qtype\":\"A\""]) {
            XCTAssertTrue(line.contains("\"host\":\"" + host), line)
        }
        XCTAssertTrue(sink.lines.allSatisfy { $0.contains(#""event":"dns_deny","sandbox":"sbx","via":"dns""#) && !$0.contains("\n") })
        let reference = ReferenceDNSResponder(gatewayAddress: gateway)
        let policy = try Policy.parse("pypi.org\n", source: "p")
        for (client, query) in batch where query[2] & 0x80 == 0 {
            let answer = try XCTUnwrap(channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
            XCTAssertEqual(answer.remoteAddress, client)
            XCTAssertEqual(Array(answer.data.readableBytesView), reference.respond(to: query, policy: policy).response)
        }
        XCTAssertNil(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))

        // The next batch starts empty.
        try channel.writeInbound(AddressedEnvelope(remoteAddress: clients[0], data: ByteBuffer(bytes: Q.query(name: "e.example.org", type: 1))))
        XCTAssertEqual(sink.writes, 2)
        XCTAssertEqual(sink.lines.count, 5)
        XCTAssertNotNil(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
        XCTAssertNil(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
    }

    func testUDPWritesTheLinesOfABatchCutShort() throws {
        let sink = MemoryAuditSink()
        let channel = EmbeddedChannel(handler: DNSUDPHandler(policy: try store(sink: sink), gatewayAddress: gateway, audit: AuditLog(sink: sink)))
        let client = try SocketAddress(ipAddress: "169.254.200.2", port: 40000)
        channel.pipeline.fireChannelRead(NIOAny(AddressedEnvelope(remoteAddress: client, data: ByteBuffer(bytes: Q.query(name: "example.org", type: 1)))))
        XCTAssertEqual(sink.lines.count, 0)
        _ = try channel.finish()
        XCTAssertEqual(sink.lines.count, 1)
    }

    func testUDPDropsOversizedDatagramsAndAnswersEDNSQueries() throws {
        let sink = MemoryAuditSink()
        let channel = EmbeddedChannel(handler: DNSUDPHandler(policy: try store(sink: sink), gatewayAddress: gateway, audit: AuditLog(sink: sink)))
        defer { _ = try? channel.finish() }
        let client = try SocketAddress(ipAddress: "169.254.200.2", port: 40000)
        let edns = Q.header(qd: 1, ar: 1) + Q.name("pypi.org") + [0, 1, 0, 1] + [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]
        try channel.writeInbound(AddressedEnvelope(remoteAddress: client, data: ByteBuffer(bytes: edns + Array(repeating: 0, count: 4096 - edns.count))))
        XCTAssertNotNil(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
        try channel.writeInbound(AddressedEnvelope(remoteAddress: client, data: ByteBuffer(bytes: edns + Array(repeating: 0, count: 4097 - edns.count))))
        XCTAssertNil(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
    }

    func testTCPFramesAnswersAndHandlesPipelinedQueries() throws {
        let sink = MemoryAuditSink()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            DNSTCPHandler.handlers(policy: try store(sink: sink), gatewayAddress: gateway, audit: AuditLog(sink: sink)))
        defer { _ = try? channel.finish() }
        let first = Q.query(id: 1, name: "pypi.org", type: 1)
        let second = Q.query(id: 2, name: "example.org", type: 1)
        // Both queries in one segment, the second split across two writes.
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt16(first.count))
        buffer.writeBytes(first)
        buffer.writeInteger(UInt16(second.count))
        buffer.writeBytes(second.prefix(5))
        try channel.writeInbound(buffer)
        try channel.writeInbound(ByteBuffer(bytes: second.dropFirst(5)))

        func readAnswer() throws -> [UInt8] {
            var out = try XCTUnwrap(channel.readOutbound(as: ByteBuffer.self))
            let length = try XCTUnwrap(out.readInteger(as: UInt16.self))
            XCTAssertEqual(Int(length), out.readableBytes)
            return Array(out.readableBytesView)
        }
        XCTAssertEqual(try readAnswer(), Q.header(id: 1, flags: 0x8580, qd: 1, an: 1) + Q.name("pypi.org") + [0, 1, 0, 1]
                       + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 169, 254, 200, 1])
        XCTAssertEqual(try readAnswer(), Q.header(id: 2, flags: 0x8583, qd: 1) + Q.name("example.org") + [0, 1, 0, 1])
        XCTAssertNil(try channel.readOutbound(as: ByteBuffer.self))
        XCTAssertEqual(sink.lines.count, 1)
    }

    func testTCPClosesOnAZeroLengthFrame() throws {
        let sink = MemoryAuditSink()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            DNSTCPHandler.handlers(policy: try store(sink: sink), gatewayAddress: gateway, audit: AuditLog(sink: sink)))
        _ = try? channel.writeInbound(ByteBuffer(bytes: [0, 0, 1, 2]))
        XCTAssertFalse(channel.isActive)
    }

    func testTCPClosesIdleAndLongLivedConnections() throws {
        let sink = MemoryAuditSink()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(DNSFrameDecoder()),
            DNSTCPHandler(policy: try store(sink: sink), gatewayAddress: gateway, audit: AuditLog(sink: sink),
                          idleTimeout: .seconds(10), maximumLifetime: .seconds(30)))
        try channel.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 1)).wait()
        // A client trickling one byte at a time never completes a query.
        try channel.writeInbound(ByteBuffer(bytes: [0]))
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        XCTAssertTrue(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        XCTAssertFalse(channel.isActive)

        // Complete queries keep it open, up to the lifetime.
        let busy = EmbeddedChannel()
        try busy.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(DNSFrameDecoder()),
            DNSTCPHandler(policy: try store(sink: sink), gatewayAddress: gateway, audit: AuditLog(sink: sink),
                          idleTimeout: .seconds(10), maximumLifetime: .seconds(30)))
        try busy.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 1)).wait()
        let query = Q.query(name: "pypi.org", type: 1)
        for _ in 0..<3 {
            busy.embeddedEventLoop.advanceTime(by: .seconds(8))
            var frame = ByteBuffer()
            frame.writeInteger(UInt16(query.count))
            frame.writeBytes(query)
            try busy.writeInbound(frame)
            XCTAssertNotNil(try busy.readOutbound(as: ByteBuffer.self))
            XCTAssertTrue(busy.isActive)
        }
        busy.embeddedEventLoop.advanceTime(by: .seconds(7))
        XCTAssertFalse(busy.isActive)
    }

    func testTCPClosesOnceTheClientHalfClosedAndItsAnswersAreWritten() throws {
        let sink = MemoryAuditSink()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            DNSTCPHandler.handlers(policy: try store(sink: sink), gatewayAddress: gateway, audit: AuditLog(sink: sink)))
        try channel.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 1)).wait()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        let query = Q.query(id: 7, name: "pypi.org", type: 1)
        var frame = ByteBuffer()
        frame.writeInteger(UInt16(query.count))
        frame.writeBytes(query)
        try channel.writeInbound(frame)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        channel.embeddedEventLoop.run()
        var answer = try XCTUnwrap(channel.readOutbound(as: ByteBuffer.self), "the answer went out before the close")
        XCTAssertEqual(answer.readInteger(as: UInt16.self).map(Int.init), answer.readableBytes)
        XCTAssertEqual(answer.getInteger(at: answer.readerIndex, as: UInt16.self), 7)
        XCTAssertFalse(channel.isActive, "a half-closed DNS connection does not linger")

        // Half-closed before any query: closed at once.
        let silent = EmbeddedChannel()
        try silent.pipeline.syncOperations.addHandlers(
            DNSTCPHandler.handlers(policy: try store(sink: sink), gatewayAddress: gateway, audit: AuditLog(sink: sink)))
        try silent.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 1)).wait()
        silent.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        silent.embeddedEventLoop.run()
        XCTAssertFalse(silent.isActive)
    }

    func testFrameDecoderDripFedAndBatched() throws {
        let messages = [Q.query(id: 1, name: "a.example", type: 1), Q.query(id: 2, name: "pypi.org", type: 28), [0xAB]]
        var stream = ByteBuffer()
        for m in messages {
            stream.writeInteger(UInt16(m.count))
            stream.writeBytes(m)
        }
        let expected = messages.map { (ByteBuffer(bytes: $0), [ByteBuffer(bytes: $0)]) }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(stream, expected.flatMap(\.1))],
            decoderFactory: { DNSFrameDecoder() })
    }

    func testFrameDecoderRefusesOversizedFrames() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(DNSFrameDecoder(maximumMessageLength: 512)))
        XCTAssertThrowsError(try channel.writeInbound(ByteBuffer(bytes: [0x02, 0x01]))) {
            XCTAssertEqual($0 as? DNSFrameDecoder.FrameError, .messageTooLong(513))
        }
    }
}

/// Counts `write(lines:)` calls and runs a hook before each.
final class BatchRecordingSink: AuditSink, @unchecked Sendable {
    var onWrite: () -> Void = {}
    var writes = 0
    var answersSeenBeforeWrite = 0
    private(set) var lines: [String] = []

    func write(line: String) {
        write(lines: [line])
    }

    func write(lines: [String]) {
        onWrite()
        writes += 1
        self.lines += lines.map { String($0.dropLast()) }
    }
}
