#if canImport(Glibc)
import Glibc
#endif
import SystemCalls

/// The control socket's listening descriptor, bound and listening, mode 0600.
///
/// Made with plain syscalls and no thread, so `airlock gateway serve` can bind it while it
/// still has its privileges, then drop them and hand it to `ControlServer`. A stale socket
/// file at the path is replaced; any other file there is an error.
package struct ControlSocket: Sendable {
    /// The control socket of sandbox `name` under `runDirectory`: `/run/airlock/NAME/control.sock`.
    package static func path(sandbox name: String, runDirectory: String = "/run/airlock") -> String {
        "\(runDirectory)/\(name)/control.sock"
    }

    package let path: String
    /// The listening socket; owned by the `ControlServer` that serves it.
    package let descriptor: CInt

    /// Binds and listens at `path`, mode 0600.
    /// - Throws: `ControlServerError` naming the path and the system's reason.
    /// - Requires: write access to the socket's directory (root for `/run/airlock/NAME`).
    package init(path: String) throws {
        self.path = path
        descriptor = try Self.bindSocket(path: path)
    }

    /// A socket bound and listening at `path` by another process (the gateway daemon's
    /// opener, which has the privileges to write `/run/airlock/NAME`); owned from here on.
    package init(path: String, adopting descriptor: CInt) {
        self.path = path
        self.descriptor = descriptor
    }

    private static func bindSocket(path: String) throws -> CInt {
        try listening(at: path, type: CInt(SOCK_STREAM.rawValue), mode: 0o600, backlog: 16, name: "control socket")
    }

    /// A Unix socket of `type` bound and listening at `path` with `mode` (and `group`, when
    /// given; root otherwise owns it): the control sockets, the gateway daemon's and its
    /// user socket. A stale socket at the path is replaced; any other file there is an
    /// error. The mode is set on the socket before it is bound, so the path never appears
    /// with more access than `mode` (whatever the umask), then set exactly.
    /// - Throws: `ControlServerError` ("cannot open NAME PATH: …").
    package static func listening(at path: String, type: CInt, group: gid_t? = nil, mode: mode_t, backlog: CInt, name: String) throws -> CInt {
        func failure(_ what: String) -> ControlServerError {
            ControlServerError(description: "cannot open \(name) \(path): \(what)\(String(cString: strerror(errno)))")
        }
        guard let address = UnixSocketAddress.make(path) else {
            throw ControlServerError(description: "cannot open \(name) \(path): path too long")
        }
        var existing = stat()
        if lstat(path, &existing) == 0 {
            guard (existing.st_mode & S_IFMT) == S_IFSOCK else {
                throw ControlServerError(description: "cannot open \(name) \(path): a file that is not a socket is in the way")
            }
            guard unlink(path) == 0 else { throw failure("removing the stale socket: ") }
        }
        let fd = socket(AF_UNIX, type | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("") }
        // Linux makes the path from the socket's own mode, less the umask.
        guard fchmod(fd, mode) == 0, UnixSocketAddress.with(address, { bind(fd, $0, $1) }) == 0 else {
            let error = failure("")
            close(fd)
            throw error
        }
        guard group.map({ chown(path, 0, $0) == 0 }) ?? true, chmod(path, mode) == 0 else {
            let error = failure("setting owner and mode \(String(mode, radix: 8)): ")
            close(fd)
            unlink(path)
            throw error
        }
        guard listen(fd, backlog) == 0 else {
            let error = failure("")
            close(fd)
            unlink(path)
            throw error
        }
        return fd
    }
}
