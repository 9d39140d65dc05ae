import XCTest
@testable import Gateway
@testable import GatewayCore

/// IP literals in every spelling are recognised and refused without a cidr rule.
final class AddressLiteralTests: XCTestCase {
    private let loopback = IPAddress.v4(0x7F00_0001)

    func testEverySpellingOfLoopbackIsRecognised() {
        let table: [(String, IPAddress)] = [
            ("127.0.0.1", loopback),
            ("2130706433", loopback),
            ("0x7f000001", loopback),
            ("0X7F000001", loopback),
            ("0177.0.0.1", loopback),
            ("0177.0000.0000.0001", loopback),
            ("127.1", loopback),
            ("127.0.1", loopback),
            ("0x7f.1", loopback),
            ("0x7f.0.0.0x1", loopback),
            ("127.0.0.1.", loopback),
            ("127.1.", loopback),
            ("017700000001", loopback),
            ("[::ffff:127.0.0.1]", .v6(0, 0xFFFF_7F00_0001)),
            ("::ffff:7f00:1", .v6(0, 0xFFFF_7F00_0001)),
            ("[::1]", .v6(0, 1)),
            ("::1", .v6(0, 1)),
            ("[fe80::1%eth0]", .v6(0xFE80_0000_0000_0000, 1)),
            ("fe80::1%eth0", .v6(0xFE80_0000_0000_0000, 1)),
            ("[fe80::1%25eth0]", .v6(0xFE80_0000_0000_0000, 1)),
            ("[0:0:0:0:0:0:0:1]", .v6(0, 1)),
            ("0", .v4(0)),
            ("0.0.0.0", .v4(0)),
            ("169.254.169.254", .v4(0xA9FE_A9FE)),
            ("0xa9.0xfe.0xa9.0xfe", .v4(0xA9FE_A9FE)),
            ("2852039166", .v4(0xA9FE_A9FE)),
            ("1.0x", .v4(0x0100_0000)),  // inet_aton reads a bare 0x as zero
        ]
        for (text, address) in table {
            XCTAssertEqual(HostLiteral.parse(text), address, text)
        }
    }

    func testNamesAreNotLiterals() {
        for name in ["pypi.org", "127.0.0.1.nip.io", "0x7f.example", "1.2.3.4.5", "256.1.1.1", "4294967296", "", "[pypi.org]", "1e100.net", "08.1.1.1"] {
            XCTAssertNil(HostLiteral.parse(name), name)
        }
    }

    func testEverySpellingIsRefusedByTheAllowlist() throws {
        let p = try Policy.parse("pypi.org\n*.example.com\n", source: "p")
        let spellings = ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]", "[::1]",
                         "[fe80::1%eth0]", "127.0.0.1.", "127.0.0.1", "0x7f.1", "::1", "169.254.169.254"]
        for host in spellings {
            XCTAssertEqual(p.decide(host: host, port: 443).denial,
                           "IP literal \(host) refused: connect by name, or add a cidr rule", host)
        }
    }

    func testNumericLookingNamesThatAreNotAddressesAreRefusedToo() throws {
        let p = try Policy.parse("pypi.org\n", source: "p")
        for host in ["1.2.3.4.5", "256.1.1.1", "4294967296", "08.1.1.1", "1.2.3.0400"] {
            XCTAssertEqual(p.decide(host: host, port: 443).denial,
                           "'\(host)' is not a valid host name: the last label is numeric, which spells an IP address", host)
        }
    }

    func testCidrRuleAdmitsLiteralsInRangeButStillChecksTheClass() throws {
        let p = try Policy.parse("cidr 203.0.113.0/24\ncidr 127.0.0.0/8\ncidr 8.8.8.0/24\n", source: "p")
        XCTAssertEqual(p.decide(host: "8.8.8.8", port: 443), .allow(rule: "cidr 8.8.8.0/24"))
        XCTAssertEqual(p.decide(host: "0x08080808", port: 80), .allow(rule: "cidr 8.8.8.0/24"))
        XCTAssertEqual(p.decide(host: "8.8.8.8", port: 22).denial,
                       "port 22 is not allowed for IP literal 8.8.8.8 (cidr rules allow only 80 and 443)")
        XCTAssertEqual(p.decide(host: "127.1", port: 443).denial,
                       "IP literal 127.1: 127.0.0.1 is loopback; add allow-private 127.0.0.0/8 to permit it")
        XCTAssertEqual(p.decide(host: "203.0.113.5", port: 443).denial,
                       "IP literal 203.0.113.5: 203.0.113.5 is documentation; add allow-private 203.0.113.0/24 to permit it")
        XCTAssertEqual(p.decide(host: "8.8.4.4", port: 443).denial,
                       "IP literal 8.8.4.4 refused: connect by name, or add a cidr rule")
        let withPrivate = try Policy.parse("cidr 127.0.0.0/8\nallow-private 127.0.0.0/8\n", source: "p")
        XCTAssertEqual(withPrivate.decide(host: "127.0.0.1", port: 443), .allow(rule: "cidr 127.0.0.0/8"))
        XCTAssertEqual(withPrivate.decide(host: "[::ffff:127.0.0.1]", port: 443), .allow(rule: "cidr 127.0.0.0/8"))
    }

    func testStrictParserTakesOnlyCanonicalLiterals() {
        XCTAssertEqual(IPAddress("127.0.0.1"), loopback)
        XCTAssertEqual(IPAddress("::1"), .v6(0, 1))
        XCTAssertEqual(IPAddress("2001:DB8::1"), .v6(0x2001_0DB8_0000_0000, 1))
        XCTAssertEqual(IPAddress("::ffff:10.0.0.1"), .v6(0, 0xFFFF_0A00_0001))
        for bad in ["127.1", "0177.0.0.1", "0x7f000001", "2130706433", "[::1]", "fe80::1%eth0", "127.0.0.1.",
                    "1:2:3:4:5:6:7:8:9", "1::2::3", ":::1", "12345::", "::g", "", "1.2.3.256", " 1.2.3.4", "01.2.3.4"] {
            XCTAssertNil(IPAddress(bad), bad)
        }
    }

    func testDescriptionIsCanonical() {
        let table: [(String, String)] = [
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("::", "::"),
            ("::ffff:7f00:1", "::ffff:127.0.0.1"),
            ("fe80::", "fe80::"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
            ("1:0:3:4:5:6:7:8", "1:0:3:4:5:6:7:8"),
            ("10.0.0.1", "10.0.0.1"),
        ]
        for (input, expected) in table {
            XCTAssertEqual(IPAddress(input)?.description, expected, input)
        }
    }

    func testBytesRoundTrip() {
        for text in ["1.2.3.4", "2001:db8::1", "::ffff:1.2.3.4", "ff02::fb"] {
            let address = IPAddress(text)!
            XCTAssertEqual(IPAddress(bytes: address.bytes), address, text)
        }
        XCTAssertEqual(IPAddress("169.254.200.1")?.bytes, [169, 254, 200, 1])
        XCTAssertNil(IPAddress(bytes: [1, 2, 3]))
    }

    func testHostNameNormalisation() throws {
        XCTAssertEqual(try HostName.normalise("PyPI.Org"), "pypi.org")
        XCTAssertEqual(try HostName.normalise("pypi.org."), "pypi.org")
        XCTAssertEqual(try HostName.normalise("xn--bcher-kva.de"), "xn--bcher-kva.de")
        XCTAssertEqual(try HostName.normalise("_dmarc.example.com"), "_dmarc.example.com")
        let refused: [(String, String)] = [
            ("pypi.org..", "empty label (two dots in a row, or a leading dot)"),
            ("pypi..org", "empty label (two dots in a row, or a leading dot)"),
            (".", "empty"),
            ("bücher.de", "non-ASCII characters; write international names as punycode (xn--…)"),
            ("ｅxample.com", "non-ASCII characters; write international names as punycode (xn--…)"),
            (String(repeating: "a", count: 64) + ".com", "label '\(String(repeating: "a", count: 64))' is longer than 63 bytes"),
            (Array(repeating: "abcdefghi", count: 26).joined(separator: "."), "longer than 253 bytes"),
            ("a b.com", "character ' ' is not allowed in a host name"),
            ("a\u{0}b.com", "character '\\x00' is not allowed in a host name"),
            ("a-.com", "label 'a-' starts or ends with '-'"),
            ("example.123", "the last label is numeric, which spells an IP address"),
        ]
        for (name, problem) in refused {
            XCTAssertThrowsError(try HostName.normalise(name), name) {
                XCTAssertEqual(($0 as? HostName.InvalidName)?.problem, problem, name)
            }
        }
    }

    /// The one-pass reader every connection's host goes through agrees with the rule-by-rule
    /// check on every name, and takes the usual ones itself.
    func testTheFastHostNameReaderAgreesWithTheFullCheck() throws {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("aZz09-_.x\u{e9} ")
        var taken = 0
        for round in 0..<20_000 {
            let length = round % 7 == 0 ? Int.random(in: 240...260, using: &generator) : Int.random(in: 0...70, using: &generator)
            let name = String((0..<length).map { _ in alphabet.randomElement(using: &generator)! })
            let full = try? HostName.checked(name)
            if let fast = HostName.plainName(name) {
                XCTAssertEqual(fast, full, name)
                taken += 1
            } else if let full, let last = full.split(separator: ".").last, !last.first!.isNumber,
                      name.unicodeScalars.allSatisfy(\.isASCII) {
                XCTFail("a valid name went the slow way: \(name)")
            }
        }
        XCTAssertGreaterThan(taken, 100)
        XCTAssertEqual(HostName.plainName("Upstream.Test."), "upstream.test")
        XCTAssertNil(HostName.plainName("example.123"))
    }

    func testCIDRParsingAndContainment() throws {
        let net = try XCTUnwrap(CIDR("10.0.0.0/8"))
        XCTAssertTrue(net.contains(.v4(0x0A01_0203)))
        XCTAssertFalse(net.contains(.v4(0x0B00_0000)))
        XCTAssertFalse(net.contains(.v6(0, 0xFFFF_0A00_0001)))
        let v6 = try XCTUnwrap(CIDR("fc00::/7"))
        XCTAssertTrue(v6.contains(IPAddress("fd12::1")!))
        XCTAssertFalse(v6.contains(IPAddress("fe00::1")!))
        XCTAssertEqual(CIDR("127.0.0.1")?.description, "127.0.0.1/32")
        XCTAssertEqual(CIDR("::/0")?.description, "::/0")
        XCTAssertTrue(CIDR("0.0.0.0/0")!.contains(.v4(0xFFFF_FFFF)))
        XCTAssertTrue(CIDR("2001:db8::/127")!.contains(IPAddress("2001:db8::1")!))
        XCTAssertFalse(CIDR("2001:db8::/128")!.contains(IPAddress("2001:db8::1")!))
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/08", "10/8", "fc00::/129", "::1/-1", "a/8", "10.0.0.0/8/8"] {
            XCTAssertNil(CIDR(bad), bad)
        }
    }
}
