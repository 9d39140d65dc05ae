#if canImport(Glibc)
import Glibc
#endif

/// A request the kernel refused, with the kernel's own extended-ack text when it sent one.
///
/// Prints like `RTM_NEWLINK veth sbx0: File exists (kernel: "Link already exists")`.
package struct NetlinkError: Error, CustomStringConvertible, Equatable {
    /// The request, e.g. `RTM_NEWLINK veth sbx0`.
    package var operation: String
    /// The errno the kernel answered (positive, e.g. `EEXIST`).
    package var code: Int32
    /// The kernel's extended-ack message (`NLMSGERR_ATTR_MSG`), if any.
    package var kernelMessage: String?

    /// An error for `operation` with errno `code` (positive) and the kernel's text.
    package init(operation: String, code: Int32, kernelMessage: String? = nil) {
        self.operation = operation
        self.code = code
        self.kernelMessage = kernelMessage.flatMap { $0.isEmpty ? nil : $0 }
    }

    package var description: String {
        var text = "\(operation): \(String(cString: strerror(code)))"
        if let kernelMessage { text += " (kernel: \(quoted(kernelMessage)))" }
        return text
    }
}
