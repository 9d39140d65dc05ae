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
        func failure(_ what: String) -> ControlServerError {
            ControlServerError(description: "cannot open control socket \(path): \(what)\(String(cString: strerror(errno)))")
        }
        guard let address = UnixSocketAddress.make(path) else {
            throw ControlServerError(description: "cannot open control socket \(path): path too long")
        }
        var existing = stat()
        if lstat(path, &existing) == 0 {
            guard (existing.st_mode & S_IFMT) == S_IFSOCK else {
                throw ControlServerError(description: "cannot open control socket \(path): a file that is not a socket is in the way")
            }
            guard unlink(path) == 0 else { throw failure("removing the stale socket: ") }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("") }
        let bound = UnixSocketAddress.with(address) { bind(fd, $0, $1) }
        guard bound == 0 else {
            let error = failure("")
            close(fd)
            throw error
        }
        guard chmod(path, 0o600) == 0 else {
            let error = failure("setting mode 0600: ")
            close(fd)
            unlink(path)
            throw error
        }
        guard listen(fd, 16) == 0 else {
            let error = failure("")
            close(fd)
            unlink(path)
            throw error
        }
        return fd
    }

}
