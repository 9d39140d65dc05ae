#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// A step of setting up a sandboxed or launched process failed; says which, with the errno.
package struct SandboxSetupError: Error, Equatable, CustomStringConvertible {
    /// What was being done, in words ("mount proc on /proc").
    package var step: String
    /// The errno the kernel returned.
    package var code: Int32
    /// What to do about it, when airlock knows.
    package var hint: String?

    /// An error for `step` failing with `code`.
    package init(step: String, code: Int32, hint: String? = nil) {
        self.step = step
        self.code = code
        self.hint = hint
    }

    /// `sandbox setup: mount proc on /proc: Operation not permitted`.
    package var description: String {
        "sandbox setup: \(step): \(String(cString: strerror(code)))" + (hint.map { "; \($0)" } ?? "")
    }

    /// The fix for a working directory the command's user cannot enter (a checkout under
    /// root's 0700 home, run as another user).
    static func hint(_ failure: cnl_spawn_failure, user: SandboxUser?, cwd: String?) -> String? {
        let step = cnl_spawn_step(rawValue: UInt32(bitPattern: failure.step))
        if (step == CNL_STEP_MOUNT_PROC || step == CNL_STEP_MOUNT_SYS) && failure.error == EPERM {
            return "\(Doctor.freshProcReason); \(Doctor.freshProcFix)"
        }
        guard cnl_spawn_step(rawValue: UInt32(bitPattern: failure.step)) == CNL_STEP_CHDIR,
              failure.error == EACCES || failure.error == ENOENT, let user, let cwd else { return nil }
        guard failure.error == EACCES else { return "\(cwd) does not exist in the sandbox; pass --cwd DIR" }
        var info = stat()
        let example = stat(user.home, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR ? " (for example --cwd \(user.home))" : ""
        return "\(user.name) cannot enter \(cwd); start airlock from a directory \(user.name) can enter, or pass --cwd DIR\(example)"
    }

    /// Words for a step reported by the C child. `masks` names the path of a mask step.
    static func describe(_ failure: cnl_spawn_failure, masks: [Mask] = [], user: SandboxUser? = nil, cwd: String? = nil) -> String {
        let index = Int(failure.index)
        switch cnl_spawn_step(rawValue: UInt32(bitPattern: failure.step)) {
        case CNL_STEP_CLONE: return "clone new PID and mount namespaces"
        case CNL_STEP_SETNS: return "join the sandbox network namespace"
        case CNL_STEP_PDEATHSIG: return "set the parent-death signal"
        case CNL_STEP_MAKE_PRIVATE: return "make / private"
        case CNL_STEP_MOUNT_RUN: return "mount tmpfs on /run"
        case CNL_STEP_MOUNT_VAR_RUN: return "mount tmpfs on /var/run"
        case CNL_STEP_WRITE_RESOLV: return "write resolv.conf"
        case CNL_STEP_BIND_RESOLV: return "bind resolv.conf over /etc/resolv.conf"
        case CNL_STEP_WRITE_HOSTS: return "write hosts"
        case CNL_STEP_BIND_HOSTS: return "bind hosts over /etc/hosts"
        case CNL_STEP_MASK: return index >= 0 && index < masks.count ? "mask \(masks[index].path)" : "mask a path"
        case CNL_STEP_MOUNT_PROC: return "mount proc on /proc"
        case CNL_STEP_MOUNT_SYS: return "mount sysfs on /sys (or hide /sys/class/net)"
        case CNL_STEP_SECCOMP: return "load the seccomp filter"
        case CNL_STEP_PRIVATE_TMP: return "mount a private tmpfs on /tmp and /dev/shm"
        case CNL_STEP_KEEP_CWD: return "keep the working directory \(cwd ?? "?") in the private /tmp"
        case CNL_STEP_PROC_READONLY: return "make /proc/sys read-only"
        case CNL_STEP_BOUNDING_SET: return "drop the capability bounding set"
        case CNL_STEP_AMBIENT: return "clear the ambient capabilities"
        case CNL_STEP_SETGROUPS: return "set supplementary groups" + (user.map { " of \($0.name)" } ?? "")
        case CNL_STEP_SETGID: return "setgid" + (user.map { " \($0.gid)" } ?? "")
        case CNL_STEP_SETUID: return "setuid" + (user.map { " \($0.uid)" } ?? "")
        case CNL_STEP_CAPSET: return "set capabilities"
        case CNL_STEP_NO_NEW_PRIVS: return "set no_new_privs"
        case CNL_STEP_FORK_COMMAND: return "start the command"
        case CNL_STEP_CHDIR: return "change directory to \(cwd ?? "?")" + (user.map { " as \($0.name)" } ?? "")
        case CNL_STEP_SIGNALS: return "set up signals"
        case CNL_STEP_UNSHARE: return "create user, network and mount namespaces"
        case CNL_STEP_SETGROUPS_DENY: return "write /proc/self/setgroups"
        case CNL_STEP_UID_MAP: return "write /proc/self/uid_map"
        case CNL_STEP_GID_MAP: return "write /proc/self/gid_map"
        case CNL_STEP_AMBIENT_RAISE: return "raise ambient capability \(Capability.name(of: failure.index))"
        case CNL_STEP_DUP_FDS: return "pass descriptors"
        case CNL_STEP_EXEC: return "execute"
        case CNL_STEP_DUMPABLE: return "make the sandbox builder not dumpable"
        default: return "step \(failure.step)"
        }
    }
}
