#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// The sandboxed command's seccomp filter, compiled to BPF in the parent and loaded by the
/// command's own process right before `execve` (see `cnl_seccomp.h` for the rules).
///
/// Modelled on Docker's default profile: no new user namespaces, bpf, keyrings, io_uring,
/// userfaultfd, perf events, kexec, modules, mounts, `open_by_handle_at`, odd
/// personalities, terminal injection or vsock. Refused calls fail with `EPERM`.
package final class SeccompFilter {
    /// Why the filter could not be built.
    package struct BuildError: Error, CustomStringConvertible {
        /// The errno libseccomp returned.
        package var code: Int32
        package var description: String {
            "cannot build the seccomp filter: \(String(cString: strerror(code))) (see `airlock doctor`)"
        }
    }

    private var program: cnl_seccomp_program

    /// Compiles the filter.
    /// - Parameter allowNestedNamespaces: leave new user namespaces allowed.
    /// - Throws: `BuildError` when libseccomp fails or the kernel has no seccomp filters.
    package init(allowNestedNamespaces: Bool) throws {
        guard cnl_seccomp_available() == 1 else { throw BuildError(code: ENOSYS) }
        program = cnl_seccomp_program(instructions: nil, count: 0)
        let r = cnl_seccomp_build(allowNestedNamespaces ? 1 : 0, &program)
        if r < 0 { throw BuildError(code: -r) }
    }

    deinit { cnl_seccomp_free(&program) }

    /// The BPF instructions (`struct sock_filter`), valid while this object lives.
    var instructions: UnsafeRawPointer? { UnsafeRawPointer(program.instructions) }
    /// How many instructions.
    var count: UInt16 { program.count }

    /// Whether this kernel loads seccomp filters.
    package static var isAvailable: Bool { cnl_seccomp_available() == 1 }
}
