#if canImport(Glibc)
import Glibc
#endif

/// The bytes of the file at `path`, read with `open` and `read` alone (no Foundation `Data`
/// or `URL` on a command's path): the state files of `netns`, and the files `doctor` and
/// the sandbox's view inspect.
/// - Parameter truncating: past `limit` bytes, return the first `limit` or so (true) or
///   throw (false).
/// - Throws: `SystemCallError` ("open PATH: …", "read PATH: …"), or `EFBIG` when the file
///   holds more than `limit` bytes and `truncating` is false.
package func fileContents(_ path: String, limit: Int, truncating: Bool = false) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemCallError.last("open \(path)") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    // Uninitialised: zeroing 64 KB to read a 20-byte /proc file faulted in 16 pages.
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(limit + 1, 65536), alignment: 16)
    defer { buffer.deallocate() }
    while true {
        let n = retryingInterrupted { read(fd, buffer.baseAddress, buffer.count) }
        guard n >= 0 else { throw SystemCallError.last("read \(path)") }
        if n == 0 { return bytes }
        bytes += UnsafeRawBufferPointer(rebasing: buffer[0..<n])
        if truncating && bytes.count >= limit { return bytes }
        guard bytes.count <= limit else { throw SystemCallError("read \(path) (more than \(limit) bytes)", code: EFBIG) }
    }
}
