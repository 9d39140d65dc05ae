import NIOCore
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// The in-place responder against the message-based one it replaced
/// (`ReferenceDNSResponder`): the same bytes and the same audit events for every query,
/// well-formed or not; and `Policy.allowsName(lowercaseBytes:)` against `allowsName(_:)`.
final class DNSInPlaceTests: XCTestCase {
    private typealias Q = DNSQueryBytes

    private let gateways: [IPAddress] = [.v4(0xA9FE_C801), IPAddress("fd00::1")!]

    private func policies() throws -> [Policy] {
        [
            .denyAll,
            try Policy.parse("pypi.org\n*.pythonhosted.org\n!evil.pythonhosted.org\napi.example.com:8443\n", source: "policy.txt"),
            try Policy.parse("*.example.org\nx_y.test\n*.beef.cafe\nfeed.face\n0x1.face\nb-c.de\n", source: "p"),
            try Policy.parse(Presets.all.keys.sorted().map { "@" + $0 }.joined(separator: "\n") + "\n!evil.github.com\n", source: "presets"),
        ]
    }

    /// Names with everything the fast paths decide on: case, '_' and '-', digits and hex,
    /// literals in several spellings, the gateway's names, odd bytes, the root.
    private let names = [
        "pypi.org", "PyPI.ORG", "pypi.org.", "files.pythonhosted.org", "FILES.PythonHosted.org", "pythonhosted.org",
        "evil.pythonhosted.org", "EVIL.pythonhosted.org", "a.evil.pythonhosted.org", "api.example.com", "example.org",
        "a.example.org", "a.b.example.org", "x_y.test", "X_Y.test", "x-y.test", "-a.example.org", "a-.example.org",
        "a--b.example.org", "_.example.org", "b-c.de", "-b-c.de", "coffee.cafe", "cafe", "beef.cafe", "a.beef.cafe", "feed.face", "0.beef.cafe", "ab.feed.face", "0x1.face", "0X1.FACE",
        "face.0x1", "127.0.0.1", "127.1", "2130706433", "0x7f.1", "0x7F000001", "1.2.3.4.5", "1.2.3.x", "10.0.0.1.example.org",
        "example.123", "example.0x1f", "example.0x", "example.0xg", "example.x", "deadbeef.cafe",
        "airlock.internal", "AIRLOCK.Internal", "x.airlock.internal", "airlock.internal.example.org",
        "1.200.254.169.in-addr.arpa", "1.200.254.169.IN-ADDR.arpa", "2.200.254.169.in-addr.arpa",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
        "github.com", "api.github.com", "evil.github.com", "raw.githubusercontent.com", "registry.npmjs.org",
        "storage.googleapis.com", "a.storage.googleapis.com", "proxy.golang.org",
        String(repeating: "a", count: 63) + ".example.org",
        (0..<4).map { _ in String(repeating: "b", count: 61) }.joined(separator: ".") + ".org",
    ]

    private func queries() -> [[UInt8]] {
        var out: [[UInt8]] = []
        for name in names {
            for type: UInt16 in [1, 28, 12, 255, 16, 65, 5] {
                out.append(Q.query(name: name, type: type))
            }
            out.append(Q.query(flags: 0, name: name, type: 1))
            out.append(Q.query(name: name, type: 1, qclass: 3))
            out.append(Q.query(name: name, type: 1, qclass: 255))
            // EDNS: an OPT record in the additional section.
            out.append(Q.header(qd: 1, ar: 1) + Q.name(name) + [0, 1, 0, 1] + [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0])
            // EDNS with an option (cookie) and trailing bytes after the last record.
            out.append(Q.header(qd: 1, ar: 1) + Q.name(name) + [0, 28, 0, 1]
                       + [0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0xEE, 0xEE])
        }
        let pypi = Q.name("pypi.org")
        // The root, odd bytes, an uppercase label with a dot in it.
        out.append(Q.header(qd: 1) + [0, 0, 1, 0, 1])
        out.append(Q.header(qd: 1) + [4, 0x70, 0x2E, 0x0A, 0x69] + Q.name("example.org") + [0, 1, 0, 1])
        out.append(Q.header(qd: 1) + [3, 0x50, 0x2E, 0x49] + Q.name("org") + [0, 1, 0, 1])
        out.append(Q.header(qd: 1) + [4, 0xC3, 0xA9, 0x74, 0xE9] + Q.name("example.org") + [0, 1, 0, 1])
        out.append(Q.header(qd: 1) + [3, 0x41, 0x20, 0x42] + Q.name("example.org") + [0, 1, 0, 1])
        // A compression pointer in the question back into the header, which spells the
        // name's labels itself (0x03 at byte 1: a label of three bytes, and so on).
        let selfSpelled = Q.header(id: 0x0103, flags: 0x0001, qd: 1) + [0xC0, 0x01, 0, 1, 0, 1]
        out.append(selfSpelled)
        // Pointers in the answer, authority and additional sections back to the question.
        out.append(Q.header(qd: 1, an: 1) + pypi + [0, 1, 0, 1] + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4])
        out.append(Q.header(qd: 1, ns: 1) + pypi + [0, 1, 0, 1] + [0xC0, 12, 0, 2, 0, 1, 0, 0, 0, 5, 0, 2, 0xC0, 12])
        out.append(Q.header(qd: 1, ar: 1) + pypi + [0, 1, 0, 1] + [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 5, 0, 3, 1, 0x61, 0])
        // A CNAME whose data is longer than its name, and one that points forwards.
        out.append(Q.header(qd: 1, ar: 1) + pypi + [0, 1, 0, 1] + [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 5, 0, 4, 1, 0x61, 0, 0])
        out.append(Q.header(qd: 1, an: 1) + pypi + [0, 1, 0, 1] + [0xC0, 12, 0, 12, 0, 1, 0, 0, 0, 5, 0, 2, 0xC0, 50])
        // Counts that promise more than there is.
        out.append(Q.header(qd: 1, an: 3) + pypi + [0, 1, 0, 1])
        out.append(Q.header(qd: 1, ar: 1) + pypi + [0, 1, 0, 1] + [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 9, 1])
        // Pointer loops and forward pointers in the question, extended label types.
        out.append(Q.header(qd: 1) + [0xC0, 12, 0, 1, 0, 1])
        out.append(Q.header(qd: 1) + [0xC0, 14, 0, 1, 0, 1])
        out.append(Q.header(qd: 1) + [0x40, 0, 0, 1, 0, 1])
        out.append(Q.header(qd: 1) + [0x80, 0, 0, 1, 0, 1])
        // A name longer than 255 bytes.
        out.append(Q.header(qd: 1) + Array(repeating: [UInt8]([63] + Array(repeating: 0x61, count: 63)), count: 4).flatMap { $0 }
                   + [0, 0, 1, 0, 1])
        // Service lookups under allowed and other names.
        for (name, type) in [("_http._tcp.pypi.org", UInt16(33)), ("_HTTP._Tcp.PyPI.org", 33), ("_http._tcp.pypi.org", 1),
                             ("_http._tcp.example.org", 33), ("_http._tcp", 33), ("_x._y.airlock.internal", 65)] {
            out.append(Q.query(name: name, type: type))
        }
        // Header-level cases: no question, two, a response, other opcodes, short.
        out.append(Q.header(qd: 0))
        out.append(Q.header(flags: 0, qd: 0))
        out.append(Q.header(qd: 2) + pypi + [0, 1, 0, 1] + pypi + [0, 1, 0, 1])
        out.append(Q.query(flags: 0x8180, name: "pypi.org", type: 1))
        out.append(Q.query(flags: 0x1000, name: "pypi.org", type: 1))
        out.append(Q.query(flags: 0x2900, name: "pypi.org", type: 1))
        out.append(Q.query(flags: 0x7FFF, name: "pypi.org", type: 1))
        out.append(Q.query(flags: 0x06FF, name: "pypi.org", type: 1))
        out.append([])
        out.append([0x12, 0x34, 0x01])
        out.append(Array(Q.header(qd: 1).prefix(11)))
        let whole = Q.query(name: "files.pythonhosted.org", type: 1)
        for length in 12..<whole.count { out.append(Array(whole.prefix(length))) }
        return out
    }

    private func assertSame(_ query: [UInt8], _ policy: Policy, _ gateway: IPAddress, sandbox: String? = "sbx",
                            file: StaticString = #filePath, line: UInt = #line) {
        let new = DNSResponder(gatewayAddress: gateway, sandbox: sandbox).respond(to: query, policy: policy)
        let old = ReferenceDNSResponder(gatewayAddress: gateway, sandbox: sandbox).respond(to: query, policy: policy)
        XCTAssertEqual(new.response, old.response, "query \(query) under \(policy.source), gateway \(gateway)", file: file, line: line)
        XCTAssertEqual(new.audit, old.audit, "query \(query) under \(policy.source), gateway \(gateway)", file: file, line: line)
    }

    func testAnswersAreByteIdenticalToTheMessageEncoder() throws {
        let policies = try policies()
        let queries = queries()
        XCTAssertGreaterThan(queries.count, 500)
        for gateway in gateways {
            for policy in policies {
                for query in queries { assertSame(query, policy, gateway) }
            }
        }
    }

    func testRandomlyMutatedQueriesAnswerLikeTheMessageEncoder() throws {
        let policies = try policies()
        let seeds = queries().filter { $0.count >= 12 }
        var generator = SplitMix64(seed: 0xA1F_10CC)
        for round in 0..<20_000 {
            var query = seeds[Int(generator.next() % UInt64(seeds.count))]
            for _ in 0..<(1 + Int(generator.next() % 4)) {
                let position = Int(generator.next() % UInt64(query.count))
                switch generator.next() % 5 {
                case 0: query[position] = UInt8(truncatingIfNeeded: generator.next())
                case 1: query[position] ^= 0x20
                case 2: query[position] = [0, 0xC0, 12, 63, 1, 0x2D, 0x30][Int(generator.next() % 7)]
                case 3: query = Array(query.prefix(max(12, position)))
                default: query.insert(UInt8(truncatingIfNeeded: generator.next()), at: max(12, position))
                }
            }
            // Keep most of them queries, so that the question path is what gets mutated.
            if round % 4 != 0, query.count >= 3 { query[2] &= 0x07 }
            assertSame(query, policies[round % policies.count], gateways[round % 2])
        }
    }

    func testQuestionWithACompressionPointerIsAnsweredUncompressed() throws {
        // QNAME is a pointer to offset 1 (pointers may only point backwards): byte 1 (the
        // id's low byte) is 0x02, a label of two bytes (the flags, 0x01 0x00), and the
        // QDCOUNT's high byte 0x00 ends the name.
        let query = Q.header(id: 0x0002, flags: 0x0100, qd: 1) + [0xC0, 0x01, 0, 1, 0, 1]
        let outcome = DNSResponder(gatewayAddress: gateways[0], sandbox: "sbx").respond(to: query, policy: .denyAll)
        XCTAssertEqual(outcome.response, Q.header(id: 0x0002, flags: 0x8583, qd: 1) + [2, 0x01, 0x00, 0] + [0, 1, 0, 1])
        XCTAssertEqual(outcome.audit?.host, "\\001\\000")
        assertSame(query, .denyAll, gateways[0])
    }

    func testAnswersAreAppendedAfterWhatTheBufferHolds() throws {
        var buffer = ByteBuffer(bytes: [0xAA, 0xBB])
        let responder = DNSResponder(gatewayAddress: gateways[0])
        let policy = try Policy.parse("pypi.org\n", source: "p")
        let query = Q.query(name: "pypi.org", type: 1)
        XCTAssertEqual(query.withUnsafeBytes { responder.respond(to: $0, policy: policy, into: &buffer) }, .answer(audit: nil))
        let denied = Q.query(name: "example.org", type: 1)
        guard case .answer(let event?) = denied.withUnsafeBytes({ responder.respond(to: $0, policy: policy, into: &buffer) }) else {
            return XCTFail("no audit event for a denied name")
        }
        XCTAssertEqual(event.host, "example.org")
        XCTAssertEqual(Q.header(flags: 0x0100).withUnsafeBytes { responder.respond(to: $0, policy: policy, into: &buffer) },
                       .answer(audit: nil))
        XCTAssertEqual(Q.query(flags: 0x8100, name: "pypi.org", type: 1).withUnsafeBytes { responder.respond(to: $0, policy: policy, into: &buffer) },
                       .drop)
        let reference = ReferenceDNSResponder(gatewayAddress: gateways[0])
        let expected = [0xAA, 0xBB] + reference.respond(to: query, policy: policy).response!
            + reference.respond(to: denied, policy: policy).response! + Q.header(flags: 0x8581)
        XCTAssertEqual(Array(buffer.readableBytesView), expected)
    }

    func testGatewayAddressChangeMovesTheReverseName() throws {
        var responder = DNSResponder(gatewayAddress: gateways[0])
        responder.gatewayAddress = .v4(0x0A00_0001)
        let ptr = responder.respond(to: Q.query(name: "1.0.0.10.in-addr.arpa", type: 12), policy: .denyAll)
        XCTAssertNil(ptr.audit)
        XCTAssertEqual(try DNSMessage(parsing: XCTUnwrap(ptr.response)).answers.first?.target, DNSResponder.gatewayName)
        XCTAssertNotNil(responder.respond(to: Q.query(name: "1.200.254.169.in-addr.arpa", type: 12), policy: .denyAll).audit)
    }

    func testPlainNamesAreDecidedOnBytes() {
        func shape(_ name: String) -> Policy.DNSNameShape { Array(name.utf8).withUnsafeBytes { Policy.dnsShape(of: $0) } }
        for name in ["pypi.org", "files.pythonhosted.org", "a_b.example.com", "x1.crates.io", "example.xyz", "0x1.face.g", "a.b-c.io"] {
            XCTAssertEqual(shape(name), .plainName, name)
        }
        for name in ["-a.example.org", "a-.example.org", "example.org-", "a.-b.org"] {
            XCTAssertEqual(shape(name), .badLabel, name)
        }
        for name in ["1.2.3.4", "2130706433", "example.0x1f", "deadbeef.cafe", "a.face", "example.123", "a..b", ".a", "a.",
                     "", "A.org", "a b.org", "é.org", String(repeating: "a", count: 64) + ".org"] {
            XCTAssertEqual(shape(name), .needsString, name)
        }
    }

    func testDenialReasonsAreTheOnesDecideGives() throws {
        for policy in try policies() + [try Policy.parse("a.org\n!b.a.org\n*.a.org\n!*.c.a.org\n!d.c.a.org\n", source: "order")] {
            let rules = DNSNameRules(policy)
            for name in names.map({ $0.lowercased() }) + ["a.b.c.example.net", "x.airlock.internal", "airlock.internal",
                                                          "a.org", "b.a.org", "x.b.a.org", "c.a.org", "d.c.a.org", "e.c.a.org"] {
                let allowed = Array(name.utf8).withUnsafeBytes { rules.allowsName(lowercaseBytes: $0) }
                XCTAssertEqual(allowed, policy.allowsName(name), name)
                let reason = Array(name.utf8).withUnsafeBytes { rules.denialReason(lowercaseBytes: $0) }
                guard let reason else {
                    let plain = Array(name.utf8).withUnsafeBytes { Policy.dnsShape(of: $0) } == .plainName
                    XCTAssertTrue(allowed || !plain, "\(name) under \(policy.source): a plain refused name has a reason")
                    continue
                }
                XCTAssertFalse(allowed, name)
                XCTAssertEqual(policy.decide(host: name, port: 443).denial, reason, "\(name) under \(policy.source)")
            }
        }
    }

    func testByteMatchingDecidesLikeAllowsName() throws {
        let policies = try policies()
        var candidates = names.map { $0.lowercased() }.filter { !$0.hasSuffix(".") }
        candidates += ["a", "org", "0", "0x", "x", "xx", "a.0", "a.08", "a.0x", "a.-", "a._", "_", "-", "a..b", ".a", "a.", "a.b.",
                       "a.b c", "a.é", "1.2.3.4", "0.0.0.0", "1.2.3", "4294967295", "4294967296", "0xffffffff", "0x100000000",
                       "1.2.3.0x4", "01.02.03.04", "09.1.1.1", "a.b.c.d.e.f.g.h", "github.com.", String(repeating: "a", count: 64) + ".org"]
        for policy in policies {
            let rules = DNSNameRules(policy)
            for name in candidates {
                let fast = Array(name.utf8).withUnsafeBytes { policy.allowsName(lowercaseBytes: $0) }
                XCTAssertEqual(fast, policy.allowsName(name), "\(name) under \(policy.source)")
                let flat = Array(name.utf8).withUnsafeBytes { rules.allowsName(lowercaseBytes: $0) }
                XCTAssertEqual(flat, policy.allowsName(name), "\(name) under \(policy.source), flat rules")
            }
            for rule in policy.allowRules + policy.denyRules {
                switch rule.kind {
                case .host(let host), .subdomains(of: let host):
                    for name in [host, "a." + host, "a.b." + host, "x" + host, String(host.dropFirst())] {
                        let fast = Array(name.utf8).withUnsafeBytes { policy.allowsName(lowercaseBytes: $0) }
                        XCTAssertEqual(fast, policy.allowsName(name), "\(name) under \(policy.source)")
                        let flat = Array(name.utf8).withUnsafeBytes { rules.allowsName(lowercaseBytes: $0) }
                        XCTAssertEqual(flat, policy.allowsName(name), "\(name) under \(policy.source), flat rules")
                    }
                default:
                    break
                }
            }
        }
    }
}

extension DNSInPlaceTests {
    func testFlatRulesKnowWhenAReloadReplacedThem() throws {
        let first = try Policy.parse("pypi.org\n!x.pypi.org\n", source: "p")
        let rules = DNSNameRules(first)
        let copy = first
        XCTAssertTrue(rules.describes(first))
        XCTAssertTrue(rules.describes(copy))
        // The same text parsed again is another policy: rebuilt, which is cheap and right.
        XCTAssertFalse(rules.describes(try Policy.parse("pypi.org\n!x.pypi.org\n", source: "p")))
        XCTAssertFalse(rules.describes(try Policy.parse("crates.io\n", source: "p")))
        XCTAssertFalse(rules.describes(first.adding(rulesFrom: try Policy.parse("crates.io\n", source: "flag"))))
        XCTAssertTrue(DNSNameRules(.denyAll).describes(.denyAll))
        // The store's policy keeps its identity between reads, and loses it on reload.
        let dir = try TemporaryDirectory()
        let path = dir.file("policy")
        try "pypi.org\n".write(toFile: path, atomically: true, encoding: .utf8)
        let store = PolicyStore(initial: try Policy.load(path: path), path: path, extra: nil, audit: AuditLog(sink: MemoryAuditSink()))
        let cached = DNSNameRules(store.current)
        XCTAssertTrue(cached.describes(store.current))
        try "crates.io\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(store.reload())
        XCTAssertFalse(cached.describes(store.current))
    }
}

/// A small deterministic generator, so a failing mutation can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
