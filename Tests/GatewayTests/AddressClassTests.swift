import XCTest
@testable import Gateway
@testable import GatewayCore

/// Address classes after resolution, and `allow-private` overrides.
final class AddressClassTests: XCTestCase {
    private func address(_ text: String) throws -> IPAddress {
        try XCTUnwrap(IPAddress(text), text)
    }

    func testClassesOfSpecialAddresses() throws {
        let table: [(String, AddressClass)] = [
            ("169.254.169.254", .linkLocal),
            ("100.100.100.100", .sharedCGNAT),
            ("100.64.0.1", .sharedCGNAT),
            ("100.128.0.1", .publicUnicast),
            ("10.0.0.1", .privateUse),
            ("10.255.255.255", .privateUse),
            ("172.16.0.1", .privateUse),
            ("172.31.255.255", .privateUse),
            ("172.32.0.1", .publicUnicast),
            ("172.15.255.255", .publicUnicast),
            ("192.168.1.1", .privateUse),
            ("127.0.0.1", .loopback),
            ("127.255.255.254", .loopback),
            ("0.0.0.0", .unspecified),
            ("0.1.2.3", .thisNetwork),
            ("240.0.0.1", .reserved),
            ("255.255.255.254", .reserved),
            ("255.255.255.255", .broadcast),
            ("224.0.0.251", .multicast),
            ("239.255.255.250", .multicast),
            ("192.0.2.1", .documentation),
            ("198.51.100.53", .documentation),
            ("203.0.113.9", .documentation),
            ("198.18.0.1", .benchmarking),
            ("192.0.0.8", .reserved),
            ("8.8.8.8", .publicUnicast),
            ("1.1.1.1", .publicUnicast),
            ("::ffff:10.0.0.1", .privateUse),
            ("::ffff:127.0.0.1", .loopback),
            ("::ffff:8.8.8.8", .publicUnicast),
            ("::ffff:0:127.0.0.1", .loopback),
            ("::127.0.0.1", .loopback),
            ("64:ff9b::7f00:1", .loopback),
            ("64:ff9b::a9fe:a9fe", .linkLocal),
            ("64:ff9b::808:808", .publicUnicast),
            ("64:ff9b:1::1", .reserved),
            ("2002:7f00:1::", .loopback),
            ("2002:a00:1::1", .privateUse),
            ("2002:808:808::1", .publicUnicast),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", .loopback),  // Teredo, client 127.0.0.1 obfuscated
            ("2001:0:a00:1::f7f7:f7f7", .privateUse),            // Teredo server 10.0.0.1, client 8.8.8.8
            ("fc00::1", .uniqueLocal),
            ("fd12:3456::1", .uniqueLocal),
            ("fe80::1", .linkLocal),
            ("febf::1", .linkLocal),
            ("fec0::1", .reserved),
            ("ff00::1", .multicast),
            ("ff02::fb", .multicast),
            ("::", .unspecified),
            ("::1", .loopback),
            ("2001:db8::1", .documentation),
            ("3fff::1", .documentation),
            ("2001:2::1", .benchmarking),
            ("100::1", .reserved),
            ("2001:10::1", .reserved),
            ("4000::1", .reserved),
            ("2606:4700::1111", .publicUnicast),
            ("2a00:1450:4001::1", .publicUnicast),
        ]
        for (text, expected) in table {
            XCTAssertEqual(AddressClass.of(try address(text)), expected, text)
        }
    }

    func testEmbeddedIPv4() throws {
        XCTAssertEqual(try address("::ffff:10.0.0.1").embeddedIPv4, 0x0A00_0001)
        XCTAssertTrue(try address("::ffff:10.0.0.1").isIPv4Mapped)
        XCTAssertFalse(try address("64:ff9b::a00:1").isIPv4Mapped)
        XCTAssertEqual(try address("64:ff9b::a00:1").embeddedIPv4, 0x0A00_0001)
        XCTAssertEqual(try address("2002:a00:1::").embeddedIPv4, 0x0A00_0001)
        XCTAssertEqual(try address("::a00:1").embeddedIPv4, 0x0A00_0001)
        XCTAssertNil(try address("::1").embeddedIPv4)
        XCTAssertNil(try address("::").embeddedIPv4)
        XCTAssertNil(try address("2606:4700::1111").embeddedIPv4)
        XCTAssertNil(IPAddress.v4(1).embeddedIPv4)
    }

    func testResolvedAddressesAreRefusedWithTheRuleThatWouldPermitThem() throws {
        let p = try Policy.parse("pypi.org\n", source: "p")
        let table: [(String, String)] = [
            ("127.0.0.1", "127.0.0.1 is loopback; add allow-private 127.0.0.0/8 to permit it"),
            ("169.254.169.254", "169.254.169.254 is link-local; add allow-private 169.254.0.0/16 to permit it"),
            ("100.100.100.100", "100.100.100.100 is shared (CGNAT); add allow-private 100.64.0.0/10 to permit it"),
            ("10.1.2.3", "10.1.2.3 is private; add allow-private 10.0.0.0/8 to permit it"),
            ("::ffff:10.0.0.1", "::ffff:10.0.0.1 (10.0.0.1) is private; add allow-private 10.0.0.0/8 to permit it"),
            ("64:ff9b::7f00:1", "64:ff9b::7f00:1 (127.0.0.1) is loopback; add allow-private 127.0.0.0/8 to permit it"),
            ("fd00::1", "fd00::1 is unique-local; add allow-private fc00::/7 to permit it"),
            ("fe80::1", "fe80::1 is link-local; add allow-private fe80::/10 to permit it"),
            ("::1", "::1 is loopback; add allow-private ::1/128 to permit it"),
            ("240.1.2.3", "240.1.2.3 is reserved; add allow-private 240.0.0.0/4 to permit it"),
            ("0.0.0.0", "0.0.0.0 is unspecified and can never be a destination"),
            ("::", ":: is unspecified and can never be a destination"),
            ("255.255.255.255", "255.255.255.255 is broadcast and can never be a destination"),
            ("224.0.0.1", "224.0.0.1 is multicast and can never be a destination"),
            ("ff02::1", "ff02::1 is multicast and can never be a destination"),
        ]
        for (text, reason) in table {
            XCTAssertEqual(p.checkResolved(try address(text)), .refused(reason: reason), text)
        }
        XCTAssertEqual(p.checkResolved(try address("8.8.8.8")), .allowed(rule: nil))
        XCTAssertEqual(p.checkResolved(try address("2606:4700::1111")), .allowed(rule: nil))
    }

    func testAllowPrivateOverridesOnlyItsRange() throws {
        let p = try Policy.parse("allow-private 127.0.0.0/8\nallow-private 10.1.0.0/16\nallow-private fd00::/8\nallow-private 0.0.0.0/0\n", source: "p")
        XCTAssertEqual(p.checkResolved(.v4(0x7F00_0001)), .allowed(rule: "allow-private 127.0.0.0/8"))
        XCTAssertEqual(p.checkResolved(try address("::ffff:127.0.0.1")), .allowed(rule: "allow-private 127.0.0.0/8"))
        XCTAssertEqual(p.checkResolved(try address("64:ff9b::7f00:1")), .allowed(rule: "allow-private 127.0.0.0/8"))
        XCTAssertEqual(p.checkResolved(try address("10.1.2.3")), .allowed(rule: "allow-private 10.1.0.0/16"))
        XCTAssertEqual(p.checkResolved(try address("fd00::5")), .allowed(rule: "allow-private fd00::/8"))
        // A catch-all range still never admits unspecified, multicast or broadcast.
        XCTAssertFalse(p.checkResolved(try address("0.0.0.0")).isAllowed)
        XCTAssertFalse(p.checkResolved(try address("224.0.0.1")).isAllowed)
        let narrow = try Policy.parse("allow-private 10.1.0.0/16\n", source: "p")
        XCTAssertEqual(narrow.checkResolved(try address("10.2.0.1")),
                       .refused(reason: "10.2.0.1 is private; add allow-private 10.0.0.0/8 to permit it"))
        XCTAssertFalse(narrow.checkResolved(try address("::1")).isAllowed)
    }
}
