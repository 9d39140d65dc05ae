#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// An rtnetlink socket in the namespace of the thread that opened it.
///
/// A netlink socket keeps the namespace it was opened in: open it inside
/// `NetworkNamespace.withNamespace` to configure that namespace. Closed on deinit.
/// Requires: CAP_NET_ADMIN in that namespace for changes; none for dumps.
package final class RouteSocket {
    private let socket: UnsafeMutableRawPointer
    private var sequence: UInt32 = 1
    private var buffer: [UInt8]
    /// The port id the kernel gave this socket.
    package let portID: UInt32

    /// Opens a socket in the calling thread's network namespace, with NETLINK_EXT_ACK
    /// and NETLINK_CAP_ACK on.
    /// - Throws: `NetlinkError` if the socket cannot be opened or bound.
    package init() throws {
        var handle: UnsafeMutableRawPointer?
        let result = cnl_socket_open(&handle)
        guard result == 0, let handle else { throw NetlinkError(operation: "netlink socket", code: -result) }
        socket = handle
        portID = cnl_socket_portid(handle)
        buffer = [UInt8](repeating: 0, count: cnl_socket_buffer_size())
    }

    deinit { cnl_socket_close(socket) }

    /// The next sequence number for a request on this socket.
    package func nextSequence() -> UInt32 {
        sequence &+= 1
        return sequence
    }

    /// Sends a request built by `make(sequence, portID)` and reads its whole reply.
    /// - Returns: the collected reply (links, addresses, routes for dumps and gets).
    /// - Throws: `NetlinkError` with the kernel's errno and extended-ack text.
    @discardableResult
    package func perform(_ make: (_ sequence: UInt32, _ portID: UInt32) throws -> NetlinkRequest) throws -> NetlinkReply {
        let seq = nextSequence()
        let request = try make(seq, portID)
        let sent = request.bytes.withUnsafeBytes { cnl_socket_send(socket, $0.baseAddress, $0.count) }
        guard sent == request.bytes.count else {
            throw NetlinkError(operation: request.operation, code: sent < 0 ? Int32(-sent) : EIO)
        }
        let reply = NetlinkReply(operation: request.operation, sequence: seq, portID: portID)
        // Bounded: a dump of one small namespace is a few datagrams; 100 000 would be a runaway.
        for _ in 0..<100_000 {
            let count = buffer.withUnsafeMutableBytes { cnl_socket_recv(socket, $0.baseAddress, $0.count) }
            guard count > 0 else {
                throw NetlinkError(operation: request.operation, code: count < 0 ? Int32(-count) : EPROTO)
            }
            let done = try buffer.withUnsafeBytes { try reply.consume(UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
            if done { return reply }
        }
        throw NetlinkError(operation: request.operation, code: EOVERFLOW)
    }

    /// The link called `name`, or nil if there is none.
    /// - Throws: `NetlinkError` for errors other than ENODEV.
    package func link(named name: InterfaceName) throws -> Link? {
        do {
            return try perform { try .getLink(name: name, sequence: $0, portID: $1) }.links.first
        } catch let error as NetlinkError where error.code == ENODEV {
            return nil
        }
    }

    /// Every link in the namespace.
    /// - Throws: `NetlinkError`.
    package func links() throws -> [Link] {
        try perform { try .dumpLinks(sequence: $0, portID: $1) }.links
    }

    /// Every address (IPv4 and IPv6) in the namespace.
    /// - Throws: `NetlinkError`.
    package func addresses() throws -> [InterfaceAddress] {
        try perform { try .dumpAddresses(sequence: $0, portID: $1) }.addresses
    }

    /// Every IPv4 (or IPv6) route in every table of the namespace.
    /// - Throws: `NetlinkError`.
    package func routes(ipv6: Bool = false) throws -> [Route] {
        try perform { try .dumpRoutes(ipv6: ipv6, sequence: $0, portID: $1) }.routes
    }
}
