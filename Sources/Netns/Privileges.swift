#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// A Linux capability, by number. The corresponding C constants are `CAP_*`.
package struct Capability: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The capability number (`CAP_NET_ADMIN` is 12).
    package var rawValue: Int32

    /// The capability numbered `rawValue`.
    package init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// `CAP_DAC_OVERRIDE`.
    package static let dacOverride = Capability(1)
    /// `CAP_KILL`.
    package static let kill = Capability(5)
    /// `CAP_SETGID`.
    package static let setgid = Capability(6)
    /// `CAP_SETUID`.
    package static let setuid = Capability(7)
    /// `CAP_SETPCAP`.
    package static let setpcap = Capability(8)
    /// `CAP_NET_BIND_SERVICE`.
    package static let netBindService = Capability(10)
    /// `CAP_NET_ADMIN`.
    package static let netAdmin = Capability(12)
    /// `CAP_NET_RAW`.
    package static let netRaw = Capability(13)
    /// `CAP_SYS_CHROOT`.
    package static let sysChroot = Capability(18)
    /// `CAP_SYS_ADMIN`.
    package static let sysAdmin = Capability(21)

    /// The upper-case name, `CAP_NET_ADMIN`.
    package var description: String { Capability.name(of: rawValue) }

    /// The upper-case name of capability `value` as libcap knows it.
    package static func name(of value: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        guard cnl_cap_name(value, &buffer, buffer.count) == 0 else { return "capability \(value)" }
        return String(cString: buffer).uppercased()
    }

    package static func < (lhs: Capability, rhs: Capability) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The capability sets of the calling thread, as `/proc/self/status` shows them.
package struct CapabilitySets: Equatable, Sendable {
    /// CapEff.
    package var effective: UInt64
    /// CapPrm.
    package var permitted: UInt64
    /// CapInh.
    package var inheritable: UInt64
    /// CapBnd.
    package var bounding: UInt64
    /// CapAmb.
    package var ambient: UInt64

    /// The capabilities set in `bits`.
    package static func capabilities(in bits: UInt64) -> [Capability] {
        (0..<64).filter { bits & (UInt64(1) << UInt64($0)) != 0 }.map { Capability(Int32($0)) }
    }
}

/// Privilege checks for commands that need root, and the privilege drop of the gateway.
package enum Privileges {
    /// A privilege is missing or could not be given up.
    package enum PrivilegeError: Error, Equatable, CustomStringConvertible {
        /// `operation` needs these capabilities in the effective set.
        case missing(operation: String, capabilities: [Capability])
        /// Dropping privileges failed at a step.
        case dropFailed(SandboxSetupError)

        package var description: String {
            switch self {
            case .missing(let operation, let capabilities):
                let names = capabilities.map(\.description).joined(separator: ", ")
                return "\(operation) needs \(names) (run it as root, e.g. with sudo)"
            case .dropFailed(let error):
                return "dropping privileges: \(error.step): \(String(cString: strerror(error.code)))"
            }
        }
    }

    /// The capability sets of the calling thread.
    /// - Throws: `SandboxSetupError` when they cannot be read.
    package static func current() throws -> CapabilitySets {
        var sets = CapabilitySets(effective: 0, permitted: 0, inheritable: 0, bounding: 0, ambient: 0)
        let r = cnl_cap_read(&sets.effective, &sets.permitted, &sets.inheritable, &sets.bounding, &sets.ambient)
        guard r == 0 else { throw SandboxSetupError(step: "read capabilities", code: -r) }
        return sets
    }

    /// The capabilities in the calling thread's effective set (empty if they cannot be read).
    package static func effectiveCapabilities() -> Set<Capability> {
        guard let sets = try? current() else { return [] }
        return Set(CapabilitySets.capabilities(in: sets.effective))
    }

    /// The capabilities of `required` that the effective set lacks, in number order.
    package static func missing(_ required: [Capability], effective: Set<Capability>) -> [Capability] {
        required.filter { !effective.contains($0) }.sorted()
    }

    /// Checks that the effective set holds `capabilities` before `operation` changes anything.
    /// - Throws: `PrivilegeError.missing` naming the operation and the missing capabilities.
    package static func requireRoot(for operation: String, capabilities: [Capability]) throws {
        let lacking = missing(capabilities, effective: effectiveCapabilities())
        if !lacking.isEmpty { throw PrivilegeError.missing(operation: operation, capabilities: lacking) }
    }

    /// Drops the whole process to `user` for good: supplementary groups, gid and uid
    /// switched, every capability set cleared (bounding and ambient included),
    /// `PR_SET_DUMPABLE` 0 so a same-uid process cannot ptrace it or read its memory or
    /// environ, and `PR_SET_NO_NEW_PRIVS`. Call before any thread is started: setuid
    /// applies to every thread through glibc, capabilities only to the calling one.
    /// - Throws: `PrivilegeError.dropFailed` naming the step.
    /// - Requires: CAP_SETUID, CAP_SETGID, CAP_SETPCAP.
    package static func dropProcessPrivileges(to user: SandboxUser) throws {
        var step: Int32 = 0
        let r = user.groups.withUnsafeBufferPointer { groups in
            cnl_drop_process_privileges(user.uid, user.gid, groups.baseAddress, groups.count, &step)
        }
        if r < 0 {
            let failure = cnl_spawn_failure(step: step, error: -r, index: -1)
            throw PrivilegeError.dropFailed(SandboxSetupError(step: SandboxSetupError.describe(failure, user: user), code: -r))
        }
    }
}
