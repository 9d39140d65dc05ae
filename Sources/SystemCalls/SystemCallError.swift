#if canImport(Glibc)
import Glibc
#endif

/// A system call that failed, with what it was doing and its errno: the one error type of
/// the namespace layer and the gateway's socket loop.
///
/// Prints like `mount /run/netns/sbx: Permission denied`.
package struct SystemCallError: Error, CustomStringConvertible, Equatable {
    /// What was attempted, e.g. `mount /run/netns/sbx`.
    package var operation: String
    /// The errno (positive).
    package var code: Int32

    /// The error for `operation` failing with `code`.
    package init(_ operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    /// The error for `operation` with the errno of the call just made.
    package static func last(_ operation: String) -> SystemCallError { SystemCallError(operation, code: errno) }

    package var description: String { "\(operation): \(String(cString: strerror(code)))" }
}
