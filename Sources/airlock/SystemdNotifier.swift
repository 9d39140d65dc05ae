#if canImport(Glibc)
import Glibc
#endif

/// systemd's readiness protocol (`sd_notify(3)`) without libsystemd: datagrams such as
/// `READY=1` sent to the Unix socket named by `$NOTIFY_SOCKET`.
///
/// The socket is connected when the notifier is made, before the gateway drops its
/// privileges, so the messages still arrive when the socket's directory is closed to
/// `nobody`; the variable is removed from the environment so nothing started later sees it.
/// A missing variable gives a notifier that does nothing (not started by systemd). A
/// message that cannot be sent is dropped: readiness is systemd's business, and it times
/// the unit out by itself.
final class SystemdNotifier: Sendable {
    private let descriptor: Int32

    /// A notifier for `$NOTIFY_SOCKET`, or `nil` when the variable is not set.
    /// - Throws: `CLIError` when the variable names something that is not a usable socket.
    static func fromEnvironment() throws -> SystemdNotifier? {
        guard let raw = getenv("NOTIFY_SOCKET") else { return nil }
        let path = String(cString: raw)
        unsetenv("NOTIFY_SOCKET")
        return try SystemdNotifier(socketPath: path)
    }

    /// Connects to `socketPath`: a filesystem path, or an abstract name written `@name`.
    /// - Throws: `CLIError` for an unusable address or a socket that refuses the connection.
    init(socketPath: String) throws {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(socketPath.utf8)
        guard let first = bytes.first, first == UInt8(ascii: "/") || first == UInt8(ascii: "@") else {
            throw CLIError("NOTIFY_SOCKET=\(socketPath): not an absolute path or an abstract name (@name)")
        }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            throw CLIError("NOTIFY_SOCKET=\(socketPath): longer than a Unix socket address may be")
        }
        if first == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (first == UInt8(ascii: "@") ? 0 : 1))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw CLIError("NOTIFY_SOCKET=\(socketPath): socket: \(String(cString: strerror(errno)))")
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw CLIError("NOTIFY_SOCKET=\(socketPath): connect: \(reason)")
        }
        descriptor = fd
    }

    deinit { close(descriptor) }

    /// Sends one message: newline-separated `KEY=value` assignments.
    func send(_ assignments: String) {
        let bytes = Array(assignments.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Every listener is bound and serving.
    func ready(status: String) { send("READY=1\nSTATUS=\(status)") }

    /// The gateway has stopped serving.
    func stopping() { send("STOPPING=1\nSTATUS=stopped") }
}
