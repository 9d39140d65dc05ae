#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// A link as the kernel reports it (RTM_NEWLINK).
package struct Link: Equatable, Sendable {
    /// The interface index in its namespace.
    package var index: UInt32
    /// The interface name.
    package var name: String
    /// The IFF_* flags.
    package var flags: UInt32
    /// The link kind (`veth`), empty for links without one (`lo`).
    package var kind: String

    /// True when the link is administratively up. The corresponding C constant is `IFF_UP`.
    package var isUp: Bool { flags & 0x1 != 0 }
}

/// An interface address as the kernel reports it (RTM_NEWADDR).
package struct InterfaceAddress: Equatable, Sendable {
    /// The interface index.
    package var index: UInt32
    /// True for IPv6 (AF_INET6), false for IPv4.
    package var isIPv6: Bool
    /// The prefix length.
    package var prefixLength: UInt8
    /// The IFA_F_* flags.
    package var flags: UInt32
    /// The IPv4 address, nil for IPv6.
    package var ipv4: IPv4Address?

    /// True when the address was added without a prefix route.
    /// The corresponding C constant is `IFA_F_NOPREFIXROUTE`.
    package var hasNoPrefixRoute: Bool { flags & 0x200 != 0 }
}

/// A route as the kernel reports it (RTM_NEWROUTE).
package struct Route: Equatable, Sendable {
    /// True for IPv6.
    package var isIPv6: Bool
    /// The destination (IPv4 routes only), nil for IPv6.
    package var destination: IPv4Address?
    /// The destination prefix length.
    package var destinationPrefix: UInt8
    /// The routing table (254 is main, 255 local).
    package var table: UInt32
    /// The route scope (253 is link, 0 universe, 254 host).
    package var scope: UInt8
    /// The route type (1 unicast, 2 local).
    package var type: UInt8
    /// The output interface index, 0 if none.
    package var outputInterface: UInt32
    /// The preferred source (IPv4 routes only).
    package var preferredSource: IPv4Address?
    /// True when the route goes via a gateway.
    package var hasGateway: Bool
    /// The gateway (IPv4 routes via one only).
    package var gateway: IPv4Address? = nil

    /// True for routes in the main table, what `ip route` shows.
    package var isMainTable: Bool { table == 254 }
    /// True for scope link. The corresponding C constant is `RT_SCOPE_LINK`.
    package var isLinkScope: Bool { scope == 253 }
}

/// Collects the replies to one request, datagram by datagram.
///
/// Feed each received datagram to `consume`; it returns true once the reply is complete
/// (ACK or NLMSG_DONE) and throws the kernel's error as a `NetlinkError`.
package final class NetlinkReply {
    /// Links in the reply.
    package private(set) var links: [Link] = []
    /// Addresses in the reply.
    package private(set) var addresses: [InterfaceAddress] = []
    /// Routes in the reply.
    package private(set) var routes: [Route] = []

    private let operation: String
    private let sequence: UInt32
    private let portID: UInt32

    /// A collector for the reply to `operation`, sent with `sequence` from `portID`.
    package init(operation: String, sequence: UInt32, portID: UInt32) {
        self.operation = operation
        self.sequence = sequence
        self.portID = portID
    }

    /// Parses one datagram.
    /// - Returns: true when the reply is complete.
    /// - Throws: `NetlinkError` with the kernel's errno and extended-ack text, or EPROTO
    ///   for a malformed datagram.
    @discardableResult
    package func consume(_ datagram: UnsafeRawBufferPointer) throws -> Bool {
        var sink = cnl_sink()
        sink.context = Unmanaged.passUnretained(self).toOpaque()
        sink.on_link = { context, link in
            guard let context, let link else { return }
            Unmanaged<NetlinkReply>.fromOpaque(context).takeUnretainedValue().links.append(Link(link.pointee))
        }
        sink.on_addr = { context, addr in
            guard let context, let addr else { return }
            Unmanaged<NetlinkReply>.fromOpaque(context).takeUnretainedValue().addresses.append(InterfaceAddress(addr.pointee))
        }
        sink.on_route = { context, route in
            guard let context, let route else { return }
            Unmanaged<NetlinkReply>.fromOpaque(context).takeUnretainedValue().routes.append(Route(route.pointee))
        }
        let result = withExtendedLifetime(self) {
            cnl_parse_reply(datagram.baseAddress, datagram.count, sequence, portID, &sink)
        }
        if result < 0 {
            let message = withUnsafeBytes(of: sink.message) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            throw NetlinkError(operation: operation, code: -result, kernelMessage: message)
        }
        return result == 0
    }

    /// Parses one datagram given as bytes.
    /// - Returns: true when the reply is complete.
    /// - Throws: `NetlinkError` as `consume(_:)` with a buffer.
    @discardableResult
    package func consume(_ datagram: [UInt8]) throws -> Bool {
        try datagram.withUnsafeBytes { try consume($0) }
    }
}

private func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
}

private func ipv4Address<T>(_ tuple: T) -> IPv4Address? {
    withUnsafeBytes(of: tuple) { IPv4Address(octets: $0.prefix(4)) }
}

extension Link {
    init(_ link: cnl_link) {
        self.init(index: link.index, name: cString(link.name), flags: link.flags, kind: cString(link.kind))
    }
}

extension InterfaceAddress {
    init(_ addr: cnl_addr) {
        let v6 = Int32(addr.family) == AF_INET6
        self.init(index: addr.index, isIPv6: v6, prefixLength: addr.prefixlen, flags: addr.flags,
                  ipv4: v6 ? nil : ipv4Address(addr.local))
    }
}

extension Route {
    init(_ route: cnl_route) {
        let v6 = Int32(route.family) == AF_INET6
        self.init(isIPv6: v6, destination: v6 ? nil : ipv4Address(route.dst), destinationPrefix: route.dst_len,
                  table: route.table, scope: route.scope, type: route.type, outputInterface: route.oif,
                  preferredSource: v6 ? nil : ipv4Address(route.prefsrc), hasGateway: route.has_gateway != 0,
                  gateway: v6 || route.has_gateway == 0 ? nil : ipv4Address(route.gateway))
    }
}
