import Netns
import XCTest

/// Validated values: what is accepted, and the exact one-line refusal for everything else.
final class ValueValidationTests: XCTestCase {
    private func assertRefusal<T>(_ make: @autoclosure () throws -> T, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try make(), file: file, line: line) { error in
            XCTAssertEqual(String(describing: error), message, file: file, line: line)
        }
    }

    func testNamespaceNames() throws {
        for good in ["sbx", "a", "A-b_c.9", "abcdefghijkl", ".hidden", "x.y"] {
            XCTAssertEqual(try NamespaceName(good).rawValue, good)
        }
        XCTAssertEqual(try NamespaceName("abcdefghijkl").gatewayPinName, "abcdefghijkl.gw")
        let refusals: [(String, String)] = [
            ("", "invalid sandbox name \"\": empty"),
            ("abcdefghijklm", "invalid sandbox name \"abcdefghijklm\": 13 bytes, at most 12 (NAME.gw must fit an interface name)"),
            ("a/b", "invalid sandbox name \"a/b\": contains \"/\""),
            ("/", "invalid sandbox name \"/\": contains \"/\""),
            ("a b", "invalid sandbox name \"a b\": contains a space"),
            ("a\tb", "invalid sandbox name \"a\\tb\": contains a space"),
            (".", "invalid sandbox name \".\": \".\" is not a name"),
            ("..", "invalid sandbox name \"..\": contains \"..\""),
            ("a..b", "invalid sandbox name \"a..b\": contains \"..\""),
            ("a$b", "invalid sandbox name \"a$b\": \"$\" is not allowed (use A-Z a-z 0-9 _ . -)"),
            ("é", "invalid sandbox name \"é\": \"é\" is not allowed (use A-Z a-z 0-9 _ . -)"),
            ("-x", "invalid sandbox name \"-x\": starts with \"-\""),
            ("agent.gw", "invalid sandbox name \"agent.gw\": ends in \".gw\" (reserved: gateway pins are NAME.gw)"),
            ("gateway.sock", "invalid sandbox name \"gateway.sock\": ends in \".sock\" (reserved: airlock's sockets in /run/airlock)"),
            ("users.sock", "invalid sandbox name \"users.sock\": ends in \".sock\" (reserved: airlock's sockets in /run/airlock)"),
            ("a\u{1}", "invalid sandbox name \"a\\u{01}\": \"\\u{01}\" is not allowed (use A-Z a-z 0-9 _ . -)"),
        ]
        for (name, message) in refusals {
            assertRefusal(try NamespaceName(name), message)
        }
    }

    func testInterfaceNames() throws {
        XCTAssertEqual(try InterfaceName("abcdefghijklmno").rawValue, "abcdefghijklmno")
        assertRefusal(try InterfaceName(""), "invalid interface name \"\": empty")
        assertRefusal(try InterfaceName("abcdefghijklmnop"), "invalid interface name \"abcdefghijklmnop\": 16 bytes, at most 15")
        assertRefusal(try InterfaceName(".."), "invalid interface name \"..\": not a name")
        assertRefusal(try InterfaceName("a/b"), "invalid interface name \"a/b\": contains \"/\"")
        assertRefusal(try InterfaceName("eth0:1"), "invalid interface name \"eth0:1\": contains \":\"")
        assertRefusal(try InterfaceName("a b"), "invalid interface name \"a b\": contains a space or control character")
    }

    func testIPv4Addresses() throws {
        XCTAssertEqual(try IPv4Address("169.254.200.1").value, 0xa9fe_c801)
        XCTAssertEqual(try IPv4Address("0.0.0.0").description, "0.0.0.0")
        XCTAssertEqual(try IPv4Address("255.255.255.255").octets, [255, 255, 255, 255])
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "01.2.3.4", "1.2.3.4 ", "a.b.c.d", "1..3.4", "1234.1.1.1"] {
            assertRefusal(try IPv4Address(bad), "invalid IPv4 address \(String(reflecting: bad)): expected four numbers 0-255 like 169.254.200.1")
        }
    }

    func testCIDRs() throws {
        let cidr = try IPv4CIDR("169.254.200.1/30")
        XCTAssertEqual(cidr.address, try IPv4Address("169.254.200.1"))
        XCTAssertEqual(cidr.prefixLength, 30)
        XCTAssertEqual(cidr.network, try IPv4Address("169.254.200.0"))
        XCTAssertEqual(cidr.broadcast, try IPv4Address("169.254.200.3"))
        XCTAssertTrue(cidr.contains(try IPv4Address("169.254.200.2")))
        XCTAssertFalse(cidr.contains(try IPv4Address("169.254.200.4")))
        XCTAssertEqual(try IPv4CIDR("10.0.0.7/0").network, try IPv4Address("0.0.0.0"))
        XCTAssertEqual(try IPv4CIDR("10.0.0.7/32").broadcast, try IPv4Address("10.0.0.7"))
        let refusals: [(String, String)] = [
            ("169.254.200.1", "invalid address \"169.254.200.1\": expected ADDRESS/PREFIX like 169.254.200.1/30"),
            ("1.2.3.4/5/6", "invalid address \"1.2.3.4/5/6\": expected ADDRESS/PREFIX like 169.254.200.1/30"),
            ("1.2.3/30", "invalid address \"1.2.3/30\": \"1.2.3\" is not an IPv4 address"),
            ("1.2.3.4/33", "invalid address \"1.2.3.4/33\": prefix \"33\" is not a number 0-32"),
            ("1.2.3.4/", "invalid address \"1.2.3.4/\": prefix \"\" is not a number 0-32"),
            ("1.2.3.4/-1", "invalid address \"1.2.3.4/-1\": prefix \"-1\" is not a number 0-32"),
            ("1.2.3.4/x", "invalid address \"1.2.3.4/x\": prefix \"x\" is not a number 0-32"),
        ]
        for (text, message) in refusals {
            assertRefusal(try IPv4CIDR(text), message)
        }
    }

    func testTopologyDefaultsAndAccepted() throws {
        let topology = try SandboxTopology()
        XCTAssertEqual(topology.gatewayAddress.description, "169.254.200.1/30")
        XCTAssertEqual(topology.sandboxAddress.description, "169.254.200.2/30")
        XCTAssertEqual(topology.sandboxInterface.rawValue, "eth0")
        XCTAssertEqual(topology.gatewayInterface.rawValue, "gw0")
        // /31 (RFC 3021): both addresses usable.
        XCTAssertNoThrow(try SandboxTopology(gatewayAddress: IPv4CIDR("10.0.0.0/31"), sandboxAddress: IPv4CIDR("10.0.0.1/31")))
        XCTAssertNoThrow(try SandboxTopology(gatewayAddress: IPv4CIDR("10.0.0.1/8"), sandboxAddress: IPv4CIDR("10.200.0.1/8")))
    }

    func testTopologyClashes() throws {
        func topology(_ gateway: String, _ sandbox: String) throws -> SandboxTopology {
            try SandboxTopology(gatewayAddress: IPv4CIDR(gateway), sandboxAddress: IPv4CIDR(sandbox))
        }
        let refusals: [(String, String, String)] = [
            ("169.254.200.1/30", "169.254.200.1/30", "gateway address 169.254.200.1/30 and sandbox address 169.254.200.1/30 are the same address"),
            ("169.254.200.1/30", "169.254.200.5/30", "gateway address 169.254.200.1/30 and sandbox address 169.254.200.5/30 are not in the same subnet"),
            ("169.254.200.1/30", "169.254.200.2/29", "gateway address 169.254.200.1/30 and sandbox address 169.254.200.2/29 have different prefix lengths"),
            ("169.254.200.0/30", "169.254.200.2/30", "gateway address 169.254.200.0/30 is the network address of 169.254.200.0/30"),
            ("169.254.200.1/30", "169.254.200.3/30", "sandbox address 169.254.200.3/30 is the broadcast address of 169.254.200.0/30"),
            ("10.0.0.1/32", "10.0.0.2/32", "gateway address 10.0.0.1/32: a /32 cannot hold both gateway and sandbox, at most /31"),
            ("10.0.0.1/4", "10.0.0.2/4", "gateway address 10.0.0.1/4: prefix /4 is too short, at least /8"),
            ("127.0.0.1/8", "127.0.0.2/8", "gateway address 127.0.0.1/8 is a loopback address"),
            ("10.0.0.1/30", "224.0.0.2/30", "sandbox address 224.0.0.2/30 is a multicast address"),
            ("0.0.0.1/30", "0.0.0.2/30", "gateway address 0.0.0.1/30 is in 0.0.0.0/8 (this network)"),
            ("250.0.0.1/30", "250.0.0.2/30", "gateway address 250.0.0.1/30 is reserved (240.0.0.0/4)"),
        ]
        for (gateway, sandbox, message) in refusals {
            assertRefusal(try topology(gateway, sandbox), message)
        }
    }

    func testTopologyDifferencesNameEachField() throws {
        let standard = try SandboxTopology()
        let other = try SandboxTopology(gatewayAddress: IPv4CIDR("10.0.0.1/24"), sandboxAddress: IPv4CIDR("10.0.0.2/24"))
        XCTAssertEqual(other.differences(from: standard), [
            "gateway address 169.254.200.1/30 (requested 10.0.0.1/24)",
            "sandbox address 169.254.200.2/30 (requested 10.0.0.2/24)",
        ])
        XCTAssertEqual(standard.differences(from: standard), [])
    }

    func testRecordedTopologyIsValidatedWhenDecoded() throws {
        let json = #"{"gatewayAddress":"10.0.0.1/30","sandboxAddress":"10.0.0.1/30","sandboxInterface":"eth0","gatewayInterface":"gw0"}"#
        XCTAssertThrowsError(try JSONDecoder().decode(SandboxTopology.self, from: Data(json.utf8)))
    }

    func testNetlinkErrorReadsLikeTheKernel() {
        XCTAssertEqual(String(describing: NetlinkError(operation: "RTM_NEWLINK veth sbx0", code: EEXIST, kernelMessage: "Link already exists")),
                       "RTM_NEWLINK veth sbx0: File exists (kernel: \"Link already exists\")")
        XCTAssertEqual(String(describing: NetlinkError(operation: "RTM_NEWLINK veth sbx0", code: EEXIST, kernelMessage: "")),
                       "RTM_NEWLINK veth sbx0: File exists")
    }
}
