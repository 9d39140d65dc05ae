#if canImport(Glibc)
import Glibc
#endif

/// Makes a system call again for as long as a signal interrupts it (`EINTR`), and returns
/// its last result; on failure `errno` still holds the call's own error. The one place the
/// gateway and the namespace layer spell the retry.
///
///     let n = retryingInterrupted { read(fd, &buffer, buffer.count) }
/// Inlinable, so each caller gets it specialised for its result type: it runs around
/// every splice and accept of the socket loop.
@inlinable @inline(__always)
package func retryingInterrupted<Result: BinaryInteger>(_ call: () -> Result) -> Result {
    while true {
        let result = call()
        if result < 0 && errno == EINTR { continue }
        return result
    }
}
