import Netns
import XCTest

/// Replies recorded from a Linux 6.x kernel (port id 0x793c), parsed back.
final class NetlinkReplyTests: XCTestCase {
    let portID: UInt32 = 0x793c

    func testAckCompletesTheReply() throws {
        let ack = annotatedHex("""
            24 00 00 00  02 00  00 01  07 00 00 00  3c 79 00 00   # NLMSG_ERROR, NLM_F_CAPPED, seq 7, pid 0x793c
            00 00 00 00                                           # error 0: ACK
            20 00 00 00  10 00  05 00  07 00 00 00  00 00 00 00   # the request's header (capped)
            """)
        let reply = NetlinkReply(operation: "RTM_NEWLINK lo up", sequence: 7, portID: portID)
        XCTAssertTrue(try reply.consume(ack))
    }

    func testErrorCarriesTheKernelsExtendedAckMessage() throws {
        let error = annotatedHex("""
            44 00 00 00  02 00  00 03  08 00 00 00  3c 79 00 00   # NLMSG_ERROR, NLM_F_CAPPED|NLM_F_ACK_TLVS, seq 8
            ea ff ff ff                                           # error -22 (EINVAL)
            30 00 00 00  14 00  05 06  08 00 00 00  00 00 00 00   # the request's header (RTM_NEWADDR)
            20 00 01 00                                           # NLMSGERR_ATTR_MSG, len 32
            69 70 76 34 3a 20 49 6e 76 61 6c 69 64 20 70 72       # "ipv4: Invalid pr
            65 66 69 78 20 6c 65 6e 67 74 68 00                   #  efix length\\0"
            """)
        let reply = NetlinkReply(operation: "RTM_NEWADDR 10.0.0.1/33 dev lo", sequence: 8, portID: portID)
        XCTAssertThrowsError(try reply.consume(error)) { error in
            XCTAssertEqual(error as? NetlinkError,
                           NetlinkError(operation: "RTM_NEWADDR 10.0.0.1/33 dev lo", code: EINVAL, kernelMessage: "ipv4: Invalid prefix length"))
            XCTAssertEqual(String(describing: error), "RTM_NEWADDR 10.0.0.1/33 dev lo: Invalid argument (kernel: \"ipv4: Invalid prefix length\")")
        }
    }

    func testErrorWithoutExtendedAck() throws {
        let error = annotatedHex("""
            24 00 00 00  02 00  00 01  09 00 00 00  3c 79 00 00   # NLMSG_ERROR, NLM_F_CAPPED, seq 9
            ed ff ff ff                                           # error -19 (ENODEV)
            34 00 00 00  18 00  05 06  09 00 00 00  00 00 00 00   # the request's header (RTM_NEWROUTE)
            """)
        let reply = NetlinkReply(operation: "RTM_NEWROUTE 10.0.0.1/32 dev 99", sequence: 9, portID: portID)
        XCTAssertThrowsError(try reply.consume(error)) { error in
            XCTAssertEqual(String(describing: error), "RTM_NEWROUTE 10.0.0.1/32 dev 99: No such device")
        }
    }

    func testMultipartRouteDumpAcrossTwoDatagrams() throws {
        let first = annotatedHex("""
            3c 00 00 00  18 00  02 00  0a 00 00 00  3c 79 00 00   # RTM_NEWROUTE, NLM_F_MULTI, seq 10
            02 08 00 00  ff 02 fe 02  00 00 00 00                 # AF_INET /8, table local, kernel, scope host, local
            08 00 0f 00  ff 00 00 00                              # RTA_TABLE 255
            08 00 01 00  7f 00 00 00                              # RTA_DST 127.0.0.0
            08 00 07 00  7f 00 00 01                              # RTA_PREFSRC 127.0.0.1
            08 00 04 00  01 00 00 00                              # RTA_OIF 1
            3c 00 00 00  18 00  02 00  0a 00 00 00  3c 79 00 00   # RTM_NEWROUTE, NLM_F_MULTI
            02 20 00 00  ff 02 fe 02  00 00 00 00                 # AF_INET /32, local
            08 00 0f 00  ff 00 00 00                              # RTA_TABLE 255
            08 00 01 00  7f 00 00 01                              # RTA_DST 127.0.0.1
            08 00 07 00  7f 00 00 01                              # RTA_PREFSRC 127.0.0.1
            08 00 04 00  01 00 00 00                              # RTA_OIF 1
            3c 00 00 00  18 00  02 00  0a 00 00 00  3c 79 00 00   # RTM_NEWROUTE, NLM_F_MULTI
            02 20 00 00  ff 02 fd 03  00 00 00 00                 # AF_INET /32, scope link, broadcast
            08 00 0f 00  ff 00 00 00                              # RTA_TABLE 255
            08 00 01 00  7f ff ff ff                              # RTA_DST 127.255.255.255
            08 00 07 00  7f 00 00 01                              # RTA_PREFSRC 127.0.0.1
            08 00 04 00  01 00 00 00                              # RTA_OIF 1
            """)
        let done = annotatedHex("""
            14 00 00 00  03 00  02 00  0a 00 00 00  3c 79 00 00   # NLMSG_DONE, NLM_F_MULTI, seq 10
            00 00 00 00                                           # status 0
            """)
        let reply = NetlinkReply(operation: "RTM_GETROUTE dump", sequence: 10, portID: portID)
        XCTAssertFalse(try reply.consume(first), "a dump continues until NLMSG_DONE")
        XCTAssertTrue(try reply.consume(done))
        XCTAssertEqual(reply.routes.map(\.destination), [try IPv4Address("127.0.0.0"), try IPv4Address("127.0.0.1"), try IPv4Address("127.255.255.255")])
        XCTAssertEqual(reply.routes.map(\.destinationPrefix), [8, 32, 32])
        XCTAssertEqual(reply.routes.map(\.table), [255, 255, 255])
        XCTAssertEqual(reply.routes.map(\.outputInterface), [1, 1, 1])
        XCTAssertEqual(reply.routes.first?.preferredSource, try IPv4Address("127.0.0.1"))
        XCTAssertFalse(reply.routes.contains(where: \.isMainTable))
    }

    func testReplyToAnotherSequenceIsRefused() throws {
        let ack = annotatedHex("""
            24 00 00 00  02 00  00 01  07 00 00 00  3c 79 00 00   # ACK for seq 7
            00 00 00 00
            20 00 00 00  10 00  05 00  07 00 00 00  00 00 00 00
            """)
        let reply = NetlinkReply(operation: "RTM_NEWLINK lo up", sequence: 8, portID: portID)
        XCTAssertThrowsError(try reply.consume(ack)) { error in
            XCTAssertEqual((error as? NetlinkError)?.code, EPROTO)
        }
    }

    func testTruncatedDatagramIsAnError() throws {
        let reply = NetlinkReply(operation: "RTM_GETROUTE dump", sequence: 10, portID: portID)
        XCTAssertThrowsError(try reply.consume([0x24, 0x00, 0x00]))
    }
}
