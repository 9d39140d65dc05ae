#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// The sandboxed command's seccomp filter, a BPF program made in the parent and loaded by
/// the command's own process right before `execve` (see `cnl_seccomp.h` for the rules). On
/// x86-64 the program was compiled from the rules ahead of time (`scripts/seccomp-programs`;
/// `SeccompTests` holds it to what libseccomp compiles now); elsewhere libseccomp compiles
/// it for each run.
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

    /// The filter a sandbox loads.
    /// - Parameter allowNestedNamespaces: leave new user namespaces allowed.
    /// - Throws: `BuildError` when libseccomp fails or the kernel has no seccomp filters.
    package convenience init(allowNestedNamespaces: Bool) throws {
        try self.init(allowNestedNamespaces: allowNestedNamespaces, compileNow: false)
    }

    /// The same filter compiled from its rules by libseccomp now, whatever `init` would give.
    package static func compiledNow(allowNestedNamespaces: Bool) throws -> SeccompFilter {
        try SeccompFilter(allowNestedNamespaces: allowNestedNamespaces, compileNow: true)
    }

    private init(allowNestedNamespaces: Bool, compileNow: Bool) throws {
        guard cnl_seccomp_available() == 1 else { throw BuildError(code: ENOSYS) }
        program = cnl_seccomp_program(instructions: nil, count: 0)
        let nested: Int32 = allowNestedNamespaces ? 1 : 0
        let r = compileNow ? cnl_seccomp_compile(nested, &program) : cnl_seccomp_build(nested, &program)
        if r < 0 { throw BuildError(code: -r) }
    }

    deinit { cnl_seccomp_free(&program) }

    /// The BPF instructions (`struct sock_filter`), valid while this object lives.
    var instructions: UnsafeRawPointer? { UnsafeRawPointer(program.instructions) }
    /// How many instructions.
    var count: UInt16 { program.count }

    /// The program's bytes (`struct sock_filter`, eight each).
    package var bytes: [UInt8] {
        guard let instructions = program.instructions else { return [] }
        return Array(UnsafeRawBufferPointer(start: instructions, count: Int(program.count) * 8))
    }

    /// The libseccomp version that compiled the ahead-of-time programs; nil where there are none.
    package static var precompiledWith: String? {
        let version = String(cString: cnl_seccomp_precompiled_with())
        return version.isEmpty ? nil : version
    }

    /// The libseccomp version this build links.
    package static var libseccompVersion: String {
        var buffer = [CChar](repeating: 0, count: 32)
        cnl_seccomp_library_version(&buffer, buffer.count)
        return String(cString: buffer)
    }

    /// Whether this kernel loads seccomp filters.
    package static var isAvailable: Bool { cnl_seccomp_available() == 1 }
}
