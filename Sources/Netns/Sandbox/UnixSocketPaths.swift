#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import SystemCalls

/// The unix sockets of the calling thread's network namespace that are bound to a path.
package enum UnixSocketPaths {
    /// Every bound path, as the kernel holds it, over sock_diag: `/proc/net/unix` writes a
    /// path as it is, so one holding a newline reads as two lines there, and the socket
    /// would go uncovered. Nil where the kernel has no unix_diag (`CONFIG_UNIX_DIAG`), for
    /// the caller to read `/proc/net/unix` instead.
    /// - Throws: `SystemCallError` for any other failure.
    package static func fromSocketDiagnostics() throws -> [String]? {
        final class Found {
            var paths: [String] = []
        }
        let found = Found()
        let result = withExtendedLifetime(found) {
            cnl_unix_socket_paths({ context, path, length in
                guard let context, let path else { return }
                let found = Unmanaged<Found>.fromOpaque(context).takeUnretainedValue()
                found.paths.append(String(decoding: UnsafeRawBufferPointer(start: path, count: length), as: UTF8.self))
            }, Unmanaged.passUnretained(found).toOpaque())
        }
        if result == -EPROTONOSUPPORT || result == -ENOENT { return nil }
        guard result == 0 else { throw SystemCallError("sock_diag: the unix sockets", code: -result) }
        return found.paths
    }

    /// The bound paths named in `/proc/net/unix` text (abstract names, `@…`, and relative
    /// ones are left out). A path with a newline in it is cut there: read
    /// `fromSocketDiagnostics` where the kernel has it.
    package static func fromProcNetUnix(_ text: String) -> [String] {
        var paths: [String] = []
        for line in text.split(separator: "\n").dropFirst() {
            // Num RefCount Protocol Flags Type St Inode Path (the path may hold spaces).
            var rest = Substring(line)
            var skipped = 0
            while skipped < 7, let space = rest.firstIndex(of: " ") {
                rest = rest[rest.index(after: space)...].drop(while: { $0 == " " })
                skipped += 1
            }
            guard skipped == 7, rest.hasPrefix("/") else { continue }
            paths.append(String(rest))
        }
        return paths
    }
}
