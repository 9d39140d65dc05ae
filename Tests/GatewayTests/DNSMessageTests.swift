import XCTest
@testable import Gateway
@testable import GatewayCore

/// Builds DNS queries byte by byte for the DNS tests.
enum DNSQueryBytes {
    static func name(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        for label in text.split(separator: ".") {
            out.append(UInt8(label.utf8.count))
            out.append(contentsOf: label.utf8)
        }
        return out + [0]
    }

    static func query(id: UInt16 = 0x1234, flags: UInt16 = 0x0100, name: String, type: UInt16, qclass: UInt16 = 1) -> [UInt8] {
        header(id: id, flags: flags, qd: 1) + self.name(name) + u16(type) + u16(qclass)
    }

    static func header(id: UInt16 = 0x1234, flags: UInt16 = 0x0100, qd: UInt16 = 0, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0) -> [UInt8] {
        u16(id) + u16(flags) + u16(qd) + u16(an) + u16(ns) + u16(ar)
    }

    static func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
}

/// The DNS message codec: parsing limits, compression, round trips.
final class DNSMessageTests: XCTestCase {
    func testParsesAQueryAndWritesItBackIdentically() throws {
        let bytes = DNSQueryBytes.query(name: "pypi.org", type: 1)
        let message = try DNSMessage(parsing: bytes)
        XCTAssertEqual(message.header.id, 0x1234)
        XCTAssertTrue(message.header.recursionDesired)
        XCTAssertFalse(message.header.isResponse)
        XCTAssertEqual(message.header.opcode, 0)
        XCTAssertEqual(message.questions, [DNSMessage.Question(name: DNSName("pypi.org")!, type: .a)])
        XCTAssertEqual(message.bytes(), bytes)
    }

    func testWritingCompressesRepeatedNames() throws {
        let name = DNSName("www.example.com")!
        let message = DNSMessage(
            header: .init(id: 1, flags: 0x8400),
            questions: [.init(name: name, type: .a)],
            answers: [
                .init(name: name, type: .a, ttl: 5, data: [192, 0, 2, 1]),
                .init(name: DNSName("EXAMPLE.com")!, type: .ptr, ttl: 5, target: DNSName("mail.example.com")!),
            ])
        let bytes = message.bytes()
        let expected: [UInt8] = DNSQueryBytes.header(id: 1, flags: 0x8400, qd: 1, an: 2)
            + DNSQueryBytes.name("www.example.com") + [0, 1, 0, 1]                      // question at 12
            + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 192, 0, 2, 1]                    // answer 1
            + [0xC0, 16, 0, 12, 0, 1, 0, 0, 0, 5, 0, 7, 4] + Array("mail".utf8) + [0xC0, 16]  // answer 2
        XCTAssertEqual(bytes, expected)
        let parsed = try DNSMessage(parsing: bytes)
        XCTAssertEqual(parsed.answers[0].name, name)
        XCTAssertEqual(parsed.answers[1].target, DNSName("mail.example.com"))
        XCTAssertTrue(parsed.answers[1].name.matches(DNSName("example.com")!))
    }

    func testCompressionPointerLoopsAreRefused() {
        // A pointer to itself.
        let selfLoop = DNSQueryBytes.header(qd: 1) + [0xC0, 12, 0, 1, 0, 1]
        XCTAssertThrowsError(try DNSMessage(parsing: selfLoop)) { XCTAssertEqual($0 as? DNSMessageError, .badPointer(offset: 12)) }
        // A label, then a pointer back to that label: a loop through a backward pointer.
        let labelLoop = DNSQueryBytes.header(qd: 1) + [1, 0x61, 0xC0, 12, 0, 1, 0, 1]
        XCTAssertThrowsError(try DNSMessage(parsing: labelLoop)) { XCTAssertEqual($0 as? DNSMessageError, .badPointer(offset: 14)) }
        // A forward pointer.
        let forward = DNSQueryBytes.header(qd: 1) + [0xC0, 18, 0, 1, 0, 1, 0]
        XCTAssertThrowsError(try DNSMessage(parsing: forward)) { XCTAssertEqual($0 as? DNSMessageError, .badPointer(offset: 12)) }
        // Two names pointing at each other.
        let pair = DNSQueryBytes.header(qd: 2) + [0xC0, 18, 0, 1, 0, 1] + [0xC0, 12, 0, 1, 0, 1]
        XCTAssertThrowsError(try DNSMessage(parsing: pair))
    }

    func testTruncatedPacketsAreRefusedAtEveryLength() {
        let full = DNSQueryBytes.query(name: "files.pythonhosted.org", type: 28)
        for length in 0..<full.count {
            XCTAssertThrowsError(try DNSMessage(parsing: Array(full[0..<length])), "length \(length)")
        }
        XCTAssertNoThrow(try DNSMessage(parsing: full))
    }

    func testLimitsOnLabelsAndNames() {
        let longLabel = DNSQueryBytes.header(qd: 1) + [64] + Array(repeating: 0x61, count: 64) + [0, 0, 1, 0, 1]
        XCTAssertThrowsError(try DNSMessage(parsing: longLabel)) { XCTAssertEqual($0 as? DNSMessageError, .badLabelType(offset: 12)) }
        // 5 labels of 63 bytes: 320 bytes on the wire, over 255.
        var longName = DNSQueryBytes.header(qd: 1)
        for _ in 0..<5 { longName += [63] + Array(repeating: 0x61, count: 63) }
        longName += [0, 0, 1, 0, 1]
        XCTAssertThrowsError(try DNSMessage(parsing: longName)) {
            guard case .nameTooLong = $0 as? DNSMessageError else { return XCTFail("\($0)") }
        }
        let extended = DNSQueryBytes.header(qd: 1) + [0x41, 0, 0, 1, 0, 1]
        XCTAssertThrowsError(try DNSMessage(parsing: extended)) { XCTAssertEqual($0 as? DNSMessageError, .badLabelType(offset: 12)) }
    }

    /// Random bytes (seeded, so a failure can be reproduced): the parser either reads them
    /// or throws a `DNSMessageError`, and under a policy that allows nothing the responder
    /// drops them or answers with the query's id and no answer record.
    func testRandomBytesAreParsedOrRefusedAndNeverAnswered() {
        var generator = SplitMix64(seed: 0xD15_97)
        var answered = 0
        for _ in 0..<2000 {
            let count = Int.random(in: 0..<80, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if bytes.count > 5 { bytes[4] = 0; bytes[5] = 1 }
            do {
                _ = try DNSMessage(parsing: bytes)
            } catch {
                XCTAssertNotNil(error as? DNSMessageError, "\(bytes): \(error)")
            }
            guard let response = DNSResponder(gatewayAddress: .v4(0xA9FE_C801)).respond(to: bytes, policy: .denyAll).response else {
                XCTAssertTrue(bytes.count < 12 || bytes[2] & 0x80 != 0, "dropped only when shorter than a header or a response: \(bytes)")
                continue
            }
            answered += 1
            XCTAssertGreaterThanOrEqual(bytes.count, 12, "\(bytes)")
            XCTAssertEqual(bytes[2] & 0x80, 0, "a response is never answered: \(bytes)")
            XCTAssertEqual(Array(response.prefix(2)), Array(bytes.prefix(2)), "the query's id: \(bytes)")
            XCTAssertEqual(response[2] & 0x80, 0x80, "QR set: \(response)")
            XCTAssertEqual(Array(response[6..<8]), [0, 0], "nothing is answered under a deny-all policy: \(bytes) -> \(response)")
        }
        XCTAssertGreaterThan(answered, 0, "some queries were answered (FORMERR, NOTIMP or NXDOMAIN)")
    }

    func testNamePresentation() {
        XCTAssertEqual(DNSName(labels: [Array("a.b".utf8), [0x20, 0x0A], Array("com".utf8)]).description, "a\\.b.\\032\\010.com")
        XCTAssertNil(DNSName(labels: [Array("a.b".utf8), Array("com".utf8)]).hostName)
        XCTAssertEqual(DNSName("PyPI.org.")?.hostName, "PyPI.org")
        XCTAssertEqual(DNSName(labels: []).description, ".")
        XCTAssertEqual(DNSName.reverse(of: .v4(0xA9FE_C801)).description, "1.200.254.169.in-addr.arpa")
        XCTAssertEqual(DNSName.reverse(of: IPAddress("2001:db8::1")!).description,
                       "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa")
    }
}
