#if canImport(Glibc)
import Glibc
#endif

/// A Unix socket's address by path: the one place the gateway, the daemon's sockets, their
/// clients and `doctor` fill in a `sockaddr_un`.
package enum UnixSocketAddress {
    /// `path` as a socket address; nil when it does not fit (terminator included).
    package static func make(_ path: String) -> sockaddr_un? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        return address
    }

    /// `bind(2)` or `connect(2)` of `fd` to `address`: the call's result (errno on failure).
    package static func with(_ address: sockaddr_un, _ call: (UnsafePointer<sockaddr>, socklen_t) -> CInt) -> CInt {
        var address = address
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
