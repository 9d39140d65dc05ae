#if canImport(Glibc)
import Glibc
#endif
import SystemPackage
import SystemCalls

/// TCP or UDP.
package enum TransportProtocol: String, Sendable, Codable {
    case tcp, udp
}

/// A socket bound inside the gateway namespace G, usable from any namespace.
///
/// The caller owns `descriptor` and closes it (or hands it to the gateway's event loop).
package struct BoundSocket: Sendable, Equatable {
    /// The socket (close-on-exec; TCP ones already listening).
    package let descriptor: FileDescriptor
    /// TCP or UDP.
    package let transport: TransportProtocol
    /// The port it is bound to.
    package let port: UInt16
}

/// Binds the gateway's listening sockets inside G.
///
/// A socket keeps the namespace it was created in, so sockets made on a thread inside G
/// accept the sandbox's connections even when served from the host namespace.
package enum ListenerSockets {
    /// The listen backlog of TCP sockets.
    package static let backlog: Int32 = 1024

    /// Creates and binds, on a dedicated thread inside `gatewayNamespace`, one TCP socket
    /// per `tcpPorts` entry (listening) and one UDP socket per `udpPorts` entry, all on
    /// `address`, with SO_REUSEADDR and close-on-exec. All or nothing: on failure every
    /// socket made so far is closed.
    /// - Throws: `SystemCallError` naming the protocol, address and port.
    /// - Requires: CAP_SYS_ADMIN (to enter G); CAP_NET_BIND_SERVICE for ports below 1024.
    package static func bind(
        in gatewayNamespace: FileDescriptor, address: IPv4Address, tcpPorts: [UInt16], udpPorts: [UInt16]
    ) throws -> [BoundSocket] {
        try NetworkNamespace.withNamespace(gatewayNamespace) {
            try bindHere(address: address, tcpPorts: tcpPorts, udpPorts: udpPorts, beforeTheAddress: false)
        }
    }

    /// `bind` on the calling thread, which is inside G already.
    /// - Parameter beforeTheAddress: G has no `address` yet (its veth end is made and
    ///   addressed next): the sockets are bound with IP_FREEBIND, and take connections once
    ///   the address exists. Without it a missing address is `EADDRNOTAVAIL`.
    package static func bindHere(
        address: IPv4Address, tcpPorts: [UInt16], udpPorts: [UInt16], beforeTheAddress: Bool
    ) throws -> [BoundSocket] {
        var sockets: [BoundSocket] = []
        do {
            for port in tcpPorts { sockets.append(try makeSocket(.tcp, address: address, port: port, freeBind: beforeTheAddress)) }
            for port in udpPorts { sockets.append(try makeSocket(.udp, address: address, port: port, freeBind: beforeTheAddress)) }
        } catch {
            for socket in sockets { try? socket.descriptor.close() }
            throw error
        }
        return sockets
    }

    private static func makeSocket(_ transport: TransportProtocol, address: IPv4Address, port: UInt16, freeBind: Bool) throws -> BoundSocket {
        let what = "\(transport.rawValue) \(address):\(port)"
        let type = transport == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
        let fd = socket(AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError.last("socket \(what)") }
        var one: Int32 = 1
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        socketAddress.sin_addr = in_addr(s_addr: address.networkOrder)
        if setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            let error = SystemCallError.last("setsockopt SO_REUSEADDR \(what)")
            close(fd)
            throw error
        }
        if freeBind, setsockopt(fd, Int32(IPPROTO_IP), IP_FREEBIND, &one, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            let error = SystemCallError.last("setsockopt IP_FREEBIND \(what)")
            close(fd)
            throw error
        }
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            let error = SystemCallError.last("bind \(what)")
            close(fd)
            throw error
        }
        if transport == .tcp && listen(fd, backlog) != 0 {
            let error = SystemCallError.last("listen \(what)")
            close(fd)
            throw error
        }
        return BoundSocket(descriptor: FileDescriptor(rawValue: fd), transport: transport, port: port)
    }
}

/// The gateway's standard sockets inside G: DNS over UDP and TCP on 53, HTTP on 80,
/// TLS on 443, the explicit proxy on 3128, and SSH on 22 (answered with "not offered").
package struct GatewaySockets: Sendable {
    /// UDP 53.
    package let dnsUDP: BoundSocket
    /// TCP 53.
    package let dnsTCP: BoundSocket
    /// TCP 80.
    package let http: BoundSocket
    /// TCP 443.
    package let tls: BoundSocket
    /// TCP 3128.
    package let proxy: BoundSocket
    /// TCP 22.
    package let ssh: BoundSocket
    /// TCP on the policy's other ports, in the order asked for.
    package let ports: [BoundSocket]

    /// Binds the standard set on `address` (the gateway address) inside `gatewayNamespace`,
    /// and one TCP listener on each of `ports`.
    /// - Throws: `SystemCallError` naming the socket that failed; none is left open then.
    /// - Requires: CAP_SYS_ADMIN and CAP_NET_BIND_SERVICE.
    package static func bind(in gatewayNamespace: FileDescriptor, address: IPv4Address, ports: [Int] = []) throws -> GatewaySockets {
        try NetworkNamespace.withNamespace(gatewayNamespace) { try bindHere(address: address, ports: ports, beforeTheAddress: false) }
    }

    /// `bind` on the calling thread, which is inside G already (`ListenerSockets.bindHere`).
    package static func bindHere(address: IPv4Address, ports: [Int] = [], beforeTheAddress: Bool) throws -> GatewaySockets {
        let extra = ports.compactMap { UInt16(exactly: $0) }
        let sockets = try ListenerSockets.bindHere(
            address: address, tcpPorts: [53, 80, 443, 3128, 22] + extra, udpPorts: [53], beforeTheAddress: beforeTheAddress)
        return GatewaySockets(dnsUDP: sockets[sockets.count - 1], dnsTCP: sockets[0], http: sockets[1], tls: sockets[2], proxy: sockets[3],
                              ssh: sockets[4], ports: Array(sockets[5..<(sockets.count - 1)]))
    }

    /// The six standard sockets, then the ports, in the order the rootless builder sends them.
    package var all: [BoundSocket] { [dnsUDP, dnsTCP, http, tls, proxy, ssh] + ports }
}
