#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// One rtnetlink request, built by the libmnl builders in CNetlink.
///
/// Sequence number and port id are given so the bytes are deterministic. Kernel
/// constant names stay in this folder; callers see `Link`, `InterfaceAddress`, `Route`.
package struct NetlinkRequest: Sendable {
    /// How the request reads in errors, e.g. `RTM_NEWADDR 169.254.200.1/30 dev 2`.
    package var operation: String
    /// The encoded message.
    package var bytes: [UInt8]
    /// True for dumps (the reply is multipart and ends with NLMSG_DONE).
    package var isDump: Bool

    private static let bufferSize = 1024

    private static func build(
        _ operation: String, dump: Bool = false, _ body: (UnsafeMutableRawPointer, Int) -> Int32
    ) throws -> NetlinkRequest {
        var buffer = [UInt8](repeating: 0, count: bufferSize)
        let length = buffer.withUnsafeMutableBytes { body($0.baseAddress!, $0.count) }
        guard length > 0 else { throw NetlinkError(operation: operation, code: -length) }
        return NetlinkRequest(operation: operation, bytes: Array(buffer.prefix(Int(length))), isDump: dump)
    }

    /// RTM_NEWLINK making a veth pair: `name` in namespace `namespaceFD`, its peer
    /// `peerName` in `peerNamespaceFD`, both placed there by the one request.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func createVeth(
        name: InterfaceName, namespaceFD: Int32, peerName: InterfaceName, peerNamespaceFD: Int32,
        sequence: UInt32, portID: UInt32 = 0
    ) throws -> NetlinkRequest {
        try build("RTM_NEWLINK veth \(name) peer \(peerName)") {
            cnl_build_veth($0, $1, sequence, portID, name.rawValue, namespaceFD, peerName.rawValue, peerNamespaceFD)
        }
    }

    /// RTM_NEWLINK setting the link `index` up (or down), changing no other flag.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func setLinkUp(index: UInt32, up: Bool = true, label: String? = nil, sequence: UInt32, portID: UInt32 = 0) throws -> NetlinkRequest {
        try build("RTM_NEWLINK \(label ?? "dev \(index)") \(up ? "up" : "down")") {
            cnl_build_link_set_up($0, $1, sequence, portID, index, up ? 1 : 0)
        }
    }

    /// RTM_NEWLINK: no IPv6 address is ever generated on the link `index` (not even a
    /// link-local one), which keeps IPv6 off it without `/proc/sys`.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func disableIPv6AddressGeneration(index: UInt32, label: String? = nil, sequence: UInt32, portID: UInt32 = 0) throws -> NetlinkRequest {
        try build("RTM_NEWLINK \(label ?? "dev \(index)") addrgenmode none") {
            cnl_build_link_ipv6_addr_gen_none($0, $1, sequence, portID, index)
        }
    }

    /// RTM_NEWLINK: IPv4 forwarding off (or on) for packets arriving on the link `index`.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func setIPv4Forwarding(_ on: Bool, index: UInt32, label: String? = nil, sequence: UInt32, portID: UInt32 = 0) throws -> NetlinkRequest {
        try build("RTM_NEWLINK \(label ?? "dev \(index)") forwarding \(on ? 1 : 0)") {
            cnl_build_link_ipv4_forwarding($0, $1, sequence, portID, index, on ? 1 : 0)
        }
    }

    /// RTM_DELLINK of the link called `name`.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func deleteLink(name: InterfaceName, sequence: UInt32, portID: UInt32 = 0) throws -> NetlinkRequest {
        try build("RTM_DELLINK \(name)") { cnl_build_link_delete($0, $1, sequence, portID, name.rawValue) }
    }

    /// RTM_GETLINK of the link called `name`.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func getLink(name: InterfaceName, sequence: UInt32, portID: UInt32 = 0) throws -> NetlinkRequest {
        try build("RTM_GETLINK \(name)") { cnl_build_link_get($0, $1, sequence, portID, name.rawValue) }
    }

    /// RTM_GETLINK dump of every link.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func dumpLinks(sequence: UInt32, portID: UInt32 = 0) throws -> NetlinkRequest {
        try build("RTM_GETLINK dump", dump: true) { cnl_build_link_dump($0, $1, sequence, portID) }
    }

    /// RTM_NEWADDR of `address` on the link `index`, without a prefix route
    /// (IFA_F_NOPREFIXROUTE).
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func addAddress(_ address: IPv4CIDR, index: UInt32, label: String? = nil, sequence: UInt32, portID: UInt32 = 0) throws -> NetlinkRequest {
        try build("RTM_NEWADDR \(address) \(label ?? "dev \(index)")") {
            cnl_build_addr_add_v4($0, $1, sequence, portID, index, address.address.networkOrder, address.prefixLength)
        }
    }

    /// RTM_GETADDR dump of IPv4 and IPv6 addresses.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func dumpAddresses(sequence: UInt32, portID: UInt32 = 0) throws -> NetlinkRequest {
        try build("RTM_GETADDR dump", dump: true) { cnl_build_addr_dump($0, $1, sequence, portID, 0) }
    }

    /// RTM_NEWROUTE of the host route `destination`/32 on the link `index`, scope link,
    /// preferred source `source`.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func addHostRoute(
        to destination: IPv4Address, index: UInt32, source: IPv4Address, label: String? = nil,
        sequence: UInt32, portID: UInt32 = 0
    ) throws -> NetlinkRequest {
        try build("RTM_NEWROUTE \(destination)/32 \(label ?? "dev \(index)")") {
            cnl_build_route_add_host_v4($0, $1, sequence, portID, index, destination.networkOrder, source.networkOrder)
        }
    }

    /// RTM_DELROUTE of the IPv4 route `destination`/`prefixLength` in `table` through the
    /// link `index` (0: any link), whatever its scope, type and protocol.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func deleteRoute(
        to destination: IPv4Address, prefixLength: UInt8, table: UInt32, index: UInt32, label: String? = nil,
        sequence: UInt32, portID: UInt32 = 0
    ) throws -> NetlinkRequest {
        try build("RTM_DELROUTE \(destination)/\(prefixLength) \(label ?? "dev \(index)")") {
            cnl_build_route_delete_v4($0, $1, sequence, portID, table, destination.networkOrder, prefixLength, index)
        }
    }

    /// RTM_GETROUTE dump of IPv4 (`ipv6: false`) or IPv6 routes, all tables.
    /// - Throws: `NetlinkError` (ENOSPC) only if the request does not fit.
    package static func dumpRoutes(ipv6: Bool = false, sequence: UInt32, portID: UInt32 = 0) throws -> NetlinkRequest {
        try build("RTM_GETROUTE dump", dump: true) {
            cnl_build_route_dump($0, $1, sequence, portID, UInt8(ipv6 ? AF_INET6 : AF_INET))
        }
    }
}
