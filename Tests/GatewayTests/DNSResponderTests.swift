import XCTest
@testable import Gateway
@testable import GatewayCore

/// Responses byte-checked for A, AAAA, PTR, NXDOMAIN, FORMERR and NOTIMP.
final class DNSResponderTests: XCTestCase {
    private let gateway = IPAddress.v4(0xA9FE_C801)  // 169.254.200.1
    private var responder: DNSResponder { DNSResponder(gatewayAddress: gateway, sandbox: "sbx") }

    private func policy() throws -> Policy {
        try Policy.parse("pypi.org\n*.pythonhosted.org\n!evil.pythonhosted.org\napi.example.com:8443\n", source: "policy.txt")
    }

    private typealias Q = DNSQueryBytes

    func testAllowedNameGetsTheGatewayAddress() throws {
        let query = Q.query(name: "PyPI.org", type: 1)
        let outcome = responder.respond(to: query, policy: try policy())
        XCTAssertNil(outcome.audit)
        XCTAssertEqual(outcome.response,
                       Q.header(flags: 0x8580, qd: 1, an: 1) + Q.name("PyPI.org") + [0, 1, 0, 1]
                       + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 169, 254, 200, 1])
    }

    func testSubdomainAndPortRulesAnswerToo() throws {
        for name in ["files.pythonhosted.org", "api.example.com", "files.pythonhosted.org."] {
            let response = try XCTUnwrap(responder.respond(to: Q.query(name: name, type: 1), policy: try policy()).response)
            let message = try DNSMessage(parsing: response)
            XCTAssertEqual(message.header.rcode, .noError, name)
            XCTAssertEqual(message.answers.first?.data, [169, 254, 200, 1], name)
        }
    }

    func testAAAAAndOtherTypesOfAllowedNamesGetNoErrorWithoutAnswer() throws {
        for type: UInt16 in [28, 16, 15, 65, 255, 5] {
            let outcome = responder.respond(to: Q.query(name: "pypi.org", type: type), policy: try policy())
            XCTAssertNil(outcome.audit)
            XCTAssertEqual(outcome.response, Q.header(flags: 0x8580, qd: 1) + Q.name("pypi.org") + Q.u16(type) + [0, 1], "type \(type)")
        }
    }

    /// Service lookups under an allowed name (apt's SRV, HTTPS records for a port) get
    /// NOERROR without an answer and no `dns_deny` line; under other names, and as A or
    /// AAAA lookups, they are refused as before.
    func testServiceLookupsUnderAllowedNamesGetNoDataWithoutADenyLine() throws {
        for (name, type) in [("_http._tcp.pypi.org", UInt16(33)), ("_8443._https.api.example.com", 65), ("_x.files.pythonhosted.org", 16)] {
            let outcome = responder.respond(to: Q.query(name: name, type: type), policy: try policy())
            XCTAssertNil(outcome.audit, name)
            XCTAssertEqual(outcome.response, Q.header(flags: 0x8580, qd: 1) + Q.name(name) + Q.u16(type) + [0, 1], name)
        }
        for (name, type) in [("_http._tcp.example.org", UInt16(33)), ("_http._tcp.pythonhosted.org.example", 33),
                             ("_http._tcp.pypi.org", 1), ("_http._tcp", 33), ("_x._y.airlock.internal", 33)] {
            let outcome = responder.respond(to: Q.query(name: name, type: type), policy: try policy())
            XCTAssertEqual(outcome.audit?.kind, .dnsDeny, name)
            XCTAssertEqual(outcome.response, Q.header(flags: 0x8583, qd: 1) + Q.name(name) + Q.u16(type) + [0, 1], name)
        }
    }

    func testDeniedNamesGetNXDOMAINAndAnAuditEvent() throws {
        let table: [(String, UInt16, String, String)] = [
            ("example.org", 1, "A", "example.org is not on the allowlist"),
            ("evil.pythonhosted.org", 28, "AAAA", "evil.pythonhosted.org is denied by rule !evil.pythonhosted.org (line 3)"),
            ("pythonhosted.org", 16, "TXT", "pythonhosted.org is not on the allowlist"),
            ("8.8.8.8.in-addr.arpa", 12, "PTR", "8.8.8.8.in-addr.arpa is not on the allowlist"),
            ("x.airlock.internal", 1, "A", "x.airlock.internal is the gateway itself, not an egress destination"),
            ("127.0.0.1", 1, "A", "IP literal 127.0.0.1 refused: connect by name, or add a cidr rule"),
        ]
        for (name, type, qtype, reason) in table {
            let query = Q.query(name: name, type: type)
            let outcome = responder.respond(to: query, policy: try policy())
            XCTAssertEqual(outcome.response, Q.header(flags: 0x8583, qd: 1) + Q.name(name) + Q.u16(type) + [0, 1], name)
            XCTAssertEqual(outcome.audit, AuditEvent(.dnsDeny, sandbox: "sbx", via: .dns, host: name, reason: reason, qtype: qtype), name)
        }
    }

    func testGatewayNameAndItsPTR() throws {
        let a = responder.respond(to: Q.query(name: "airlock.internal", type: 1), policy: .denyAll)
        XCTAssertNil(a.audit)
        XCTAssertEqual(a.response, Q.header(flags: 0x8580, qd: 1, an: 1) + Q.name("airlock.internal") + [0, 1, 0, 1]
                       + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 169, 254, 200, 1])
        let aaaa = responder.respond(to: Q.query(name: "AIRLOCK.internal", type: 28), policy: .denyAll)
        XCTAssertEqual(aaaa.response, Q.header(flags: 0x8580, qd: 1) + Q.name("AIRLOCK.internal") + [0, 28, 0, 1])
        let ptr = responder.respond(to: Q.query(name: "1.200.254.169.in-addr.arpa", type: 12), policy: .denyAll)
        XCTAssertNil(ptr.audit)
        XCTAssertEqual(ptr.response, Q.header(flags: 0x8580, qd: 1, an: 1) + Q.name("1.200.254.169.in-addr.arpa") + [0, 12, 0, 1]
                       + [0xC0, 12, 0, 12, 0, 1, 0, 0, 0, 5, 0, 18] + Q.name("airlock.internal"))
    }

    /// The git hosts are answered with the gateway address under any policy (their SSH
    /// spellings then reach port 22); a subdomain of one is not.
    func testGatewayNamesAreAnsweredWhateverThePolicy() throws {
        let responder = DNSResponder(gatewayAddress: gateway, sandbox: "sbx", gatewayNames: ["GitHub.com", "git.corp.test"])
        for name in ["github.com", "GITHUB.COM.", "git.corp.test"] {
            let a = responder.respond(to: Q.query(name: name, type: 1), policy: .denyAll)
            XCTAssertNil(a.audit, name)
            XCTAssertEqual(a.response, Q.header(flags: 0x8580, qd: 1, an: 1) + Q.name(name) + [0, 1, 0, 1]
                           + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 169, 254, 200, 1], name)
        }
        let aaaa = responder.respond(to: Q.query(name: "github.com", type: 28), policy: .denyAll)
        XCTAssertEqual(aaaa.response, Q.header(flags: 0x8580, qd: 1) + Q.name("github.com") + [0, 28, 0, 1])
        let sub = responder.respond(to: Q.query(name: "api.github.com", type: 1), policy: .denyAll)
        XCTAssertEqual(sub.audit?.kind, .dnsDeny)
        XCTAssertEqual(self.responder.respond(to: Q.query(name: "github.com", type: 1), policy: .denyAll).audit?.kind, .dnsDeny,
                       "without gateway names it is refused")
    }

    func testIPv6GatewayAnswersAAAA() throws {
        let v6 = DNSResponder(gatewayAddress: IPAddress("fd00::1")!)
        let response = try XCTUnwrap(v6.respond(to: Q.query(name: "airlock.internal", type: 28), policy: .denyAll).response)
        XCTAssertEqual(try DNSMessage(parsing: response).answers.first?.data, IPAddress("fd00::1")!.bytes)
        let a = try XCTUnwrap(v6.respond(to: Q.query(name: "airlock.internal", type: 1), policy: .denyAll).response)
        XCTAssertEqual(try DNSMessage(parsing: a).answers, [])
    }

    func testMalformedQueriesGetFORMERROrAreDropped() throws {
        let p = try policy()
        // Header only, no question.
        XCTAssertEqual(responder.respond(to: Q.header(qd: 0), policy: p).response, Q.header(flags: 0x8581))
        // Two questions.
        let two = Q.header(qd: 2) + Q.name("pypi.org") + [0, 1, 0, 1] + Q.name("pypi.org") + [0, 1, 0, 1]
        XCTAssertEqual(responder.respond(to: two, policy: p).response, Q.header(flags: 0x8581))
        // A question cut short.
        let cut = Array(Q.query(name: "pypi.org", type: 1).dropLast(3))
        XCTAssertEqual(responder.respond(to: cut, policy: p).response, Q.header(flags: 0x8581))
        // A compression loop.
        XCTAssertEqual(responder.respond(to: Q.header(qd: 1) + [0xC0, 12, 0, 1, 0, 1], policy: p).response, Q.header(flags: 0x8581))
        // No RD in the query: none in the answer.
        XCTAssertEqual(responder.respond(to: Q.header(flags: 0, qd: 0), policy: p).response, Q.header(flags: 0x8481))
        // Shorter than a header: dropped.
        XCTAssertEqual(responder.respond(to: [0x12, 0x34, 0x01], policy: p), .init(response: nil, audit: nil))
        XCTAssertEqual(responder.respond(to: [], policy: p), .init(response: nil, audit: nil))
        // A response (QR set) is never answered.
        XCTAssertNil(responder.respond(to: Q.query(flags: 0x8180, name: "pypi.org", type: 1), policy: p).response)
    }

    func testOtherOpcodesAreNotImplemented() throws {
        // opcode 2 (STATUS) and 5 (UPDATE)
        XCTAssertEqual(responder.respond(to: Q.query(flags: 0x1000, name: "pypi.org", type: 1), policy: try policy()).response,
                       Q.header(flags: 0x9484))
        XCTAssertEqual(responder.respond(to: Q.query(flags: 0x2900, name: "pypi.org", type: 1), policy: try policy()).response,
                       Q.header(flags: 0xAD84))
    }

    func testNonInternetClassIsRefusedAsNXDOMAIN() throws {
        let outcome = responder.respond(to: Q.query(name: "version.bind", type: 16, qclass: 3), policy: try policy())
        XCTAssertEqual(outcome.response, Q.header(flags: 0x8583, qd: 1) + Q.name("version.bind") + [0, 16, 0, 3])
        XCTAssertEqual(outcome.audit?.reason, "version.bind: only class IN is answered")
    }

    func testEDNSQueriesAreAnswered() throws {
        // dig adds an OPT record in the additional section.
        let query = Q.header(qd: 1, ar: 1) + Q.name("pypi.org") + [0, 1, 0, 1] + [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]
        let response = try XCTUnwrap(responder.respond(to: query, policy: try policy()).response)
        let message = try DNSMessage(parsing: response)
        XCTAssertEqual(message.header.rcode, .noError)
        XCTAssertEqual(message.answers.count, 1)
    }

    func testOddLabelBytesAreDeniedAndAuditedEscaped() throws {
        let query = Q.header(qd: 1) + [4, 0x70, 0x2E, 0x0A, 0x69] + Q.name("example.org") + [0, 1, 0, 1]
        let outcome = responder.respond(to: query, policy: try Policy.parse("*.example.org\n", source: "p"))
        XCTAssertEqual(try DNSMessage(parsing: XCTUnwrap(outcome.response)).header.rcode, .nameError)
        XCTAssertEqual(outcome.audit?.host, "p\\.\\010i.example.org")
    }
}
