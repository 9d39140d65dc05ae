import Netns
import XCTest

/// The rtnetlink requests byte for byte (little-endian hosts: x86-64, arm64).
/// Each line is one field, named after the kernel structure or attribute.
final class NetlinkRequestTests: XCTestCase {
    private func assertBytes(_ request: NetlinkRequest, _ golden: String, file: StaticString = #filePath, line: UInt = #line) {
        let expected = annotatedHex(golden)
        XCTAssertEqual(request.bytes, expected, "got:\n\(hexDump(request.bytes))\nexpected:\n\(hexDump(expected))", file: file, line: line)
    }

    func testVethPairWithEachEndPlacedInItsNamespace() throws {
        let request = try NetlinkRequest.createVeth(
            name: InterfaceName("gw0"), namespaceFD: 5, peerName: InterfaceName("eth0"), peerNamespaceFD: 6, sequence: 1, portID: 0)
        assertBytes(request, """
            6c 00 00 00        # nlmsghdr.nlmsg_len = 108
            10 00              # nlmsg_type = RTM_NEWLINK (16)
            05 06              # nlmsg_flags = NLM_F_REQUEST|NLM_F_ACK|NLM_F_EXCL|NLM_F_CREATE (0x605)
            01 00 00 00        # nlmsg_seq = 1
            00 00 00 00        # nlmsg_pid = 0
            00 00 00 00        # ifinfomsg: ifi_family AF_UNSPEC, pad, ifi_type 0
            00 00 00 00        # ifi_index = 0 (new)
            00 00 00 00        # ifi_flags
            00 00 00 00        # ifi_change
            08 00 03 00        # IFLA_IFNAME, len 8
            67 77 30 00        #   "gw0\\0"
            08 00 1c 00        # IFLA_NET_NS_FD (28), len 8
            05 00 00 00        #   fd 5: the gateway end goes straight into G
            3c 00 12 80        # IFLA_LINKINFO (18) | NLA_F_NESTED, len 60
            09 00 01 00        #   IFLA_INFO_KIND, len 9
            76 65 74 68 00     #     "veth\\0"
            00 00 00           #     padding
            2c 00 02 80        #   IFLA_INFO_DATA | NLA_F_NESTED, len 44
            28 00 01 80        #     VETH_INFO_PEER | NLA_F_NESTED, len 40
            00 00 00 00        #       peer ifinfomsg: family, pad, type
            00 00 00 00        #       ifi_index
            00 00 00 00        #       ifi_flags
            00 00 00 00        #       ifi_change
            09 00 03 00        #       IFLA_IFNAME, len 9
            65 74 68 30 00     #         "eth0\\0"
            00 00 00           #         padding
            08 00 1c 00        #       IFLA_NET_NS_FD, len 8
            06 00 00 00        #         fd 6: the sandbox end goes straight into S
            """)
        XCTAssertEqual(request.operation, "RTM_NEWLINK veth gw0 peer eth0")
    }

    func testLinkUpChangesOnlyIFFUp() throws {
        let request = try NetlinkRequest.setLinkUp(index: 3, sequence: 2, portID: 0)
        assertBytes(request, """
            20 00 00 00        # nlmsg_len = 32
            10 00              # RTM_NEWLINK
            05 00              # NLM_F_REQUEST|NLM_F_ACK
            02 00 00 00        # seq 2
            00 00 00 00        # pid 0
            00 00 00 00        # ifi_family, pad, ifi_type
            03 00 00 00        # ifi_index = 3
            01 00 00 00        # ifi_flags = IFF_UP
            01 00 00 00        # ifi_change = IFF_UP: no other flag is touched
            """)
    }

    func testIPv4AddressWithoutPrefixRoute() throws {
        let request = try NetlinkRequest.addAddress(IPv4CIDR("169.254.200.1/30"), index: 2, sequence: 3, portID: 0)
        assertBytes(request, """
            30 00 00 00        # nlmsg_len = 48
            14 00              # RTM_NEWADDR (20)
            05 06              # NLM_F_REQUEST|NLM_F_ACK|NLM_F_EXCL|NLM_F_CREATE
            03 00 00 00        # seq 3
            00 00 00 00        # pid 0
            02                 # ifaddrmsg.ifa_family = AF_INET
            1e                 # ifa_prefixlen = 30
            00                 # ifa_flags
            00                 # ifa_scope = RT_SCOPE_UNIVERSE
            02 00 00 00        # ifa_index = 2
            08 00 02 00        # IFA_LOCAL, len 8
            a9 fe c8 01        #   169.254.200.1
            08 00 01 00        # IFA_ADDRESS, len 8
            a9 fe c8 01        #   169.254.200.1
            08 00 08 00        # IFA_FLAGS, len 8
            00 02 00 00        #   IFA_F_NOPREFIXROUTE (0x200): no /30 route appears
            """)
    }

    func testHostRouteToThePeer() throws {
        let request = try NetlinkRequest.addHostRoute(
            to: IPv4Address("169.254.200.1"), index: 2, source: IPv4Address("169.254.200.2"), sequence: 4, portID: 0)
        assertBytes(request, """
            34 00 00 00        # nlmsg_len = 52
            18 00              # RTM_NEWROUTE (24)
            05 06              # NLM_F_REQUEST|NLM_F_ACK|NLM_F_EXCL|NLM_F_CREATE
            04 00 00 00        # seq 4
            00 00 00 00        # pid 0
            02                 # rtmsg.rtm_family = AF_INET
            20                 # rtm_dst_len = 32
            00                 # rtm_src_len
            00                 # rtm_tos
            fe                 # rtm_table = RT_TABLE_MAIN
            04                 # rtm_protocol = RTPROT_STATIC
            fd                 # rtm_scope = RT_SCOPE_LINK
            01                 # rtm_type = RTN_UNICAST
            00 00 00 00        # rtm_flags
            08 00 01 00        # RTA_DST, len 8
            a9 fe c8 01        #   169.254.200.1
            08 00 04 00        # RTA_OIF, len 8
            02 00 00 00        #   ifindex 2
            08 00 07 00        # RTA_PREFSRC, len 8
            a9 fe c8 02        #   169.254.200.2
            """)
    }

    func testLinkDeleteAndDumps() throws {
        assertBytes(try .deleteLink(name: InterfaceName("gw0"), sequence: 5, portID: 0), """
            28 00 00 00  11 00  05 00  05 00 00 00  00 00 00 00   # RTM_DELLINK (17), REQUEST|ACK, seq 5
            00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00    # ifinfomsg, all zero
            08 00 03 00  67 77 30 00                              # IFLA_IFNAME "gw0"
            """)
        assertBytes(try .dumpAddresses(sequence: 6, portID: 0), """
            18 00 00 00  16 00  01 03  06 00 00 00  00 00 00 00   # RTM_GETADDR (22), REQUEST|DUMP (0x301), seq 6
            00 00 00 00  00 00 00 00                              # ifaddrmsg, family AF_UNSPEC
            """)
        XCTAssertTrue(try NetlinkRequest.dumpRoutes(sequence: 1).isDump)
    }

    func testPortIDIsWrittenIntoTheHeader() throws {
        let request = try NetlinkRequest.setLinkUp(index: 1, sequence: 9, portID: 0x0102_0304)
        XCTAssertEqual(Array(request.bytes[12..<16]), [0x04, 0x03, 0x02, 0x01])
        XCTAssertEqual(Array(request.bytes[8..<12]), [0x09, 0x00, 0x00, 0x00])
    }
}
