#if canImport(Glibc)
import Glibc
#endif
import SystemCalls

/// Writes and reads sysctls under `/proc/sys`; `net/…` entries belong to the network
/// namespace of the thread that opens them.
package enum SystemControl {
    /// Writes `value` to `/proc/sys/<key>`.
    /// - Parameters:
    ///   - optional: a missing entry is fine (IPv6 compiled out or disabled).
    ///   - backedByNetlink: a read-only `/proc/sys` (a container's) is fine, because the
    ///     caller has made the same setting for the link over netlink.
    /// - Throws: `SystemCallError`.
    static func write(_ value: String, to key: String, optional: Bool = false, backedByNetlink: Bool = false) throws {
        let path = "/proc/sys/" + key
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if optional && errno == ENOENT { return }
            if backedByNetlink && errno == EROFS { return }
            throw SystemCallError.last("open \(path)")
        }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw SystemCallError.last("write \(path)") }
    }

    /// Reads `/proc/sys/<key>` without its trailing newline, or nil if it cannot be read.
    package static func read(_ key: String) -> String? {
        let fd = open("/proc/sys/" + key, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer.prefix(count), as: UTF8.self).trimmingCharacters()
    }
}

private extension String {
    func trimmingCharacters() -> String {
        var text = self
        while let last = text.last, last == "\n" || last == " " { text.removeLast() }
        return text
    }
}
