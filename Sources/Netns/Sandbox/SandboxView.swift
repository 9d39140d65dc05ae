#if canImport(Glibc)
import Glibc
#endif
import SystemCalls

/// What a sandboxed command sees of the host's filesystem, beyond its own `/run`, `/proc`,
/// `/sys`, `/tmp` and `/dev/shm`: every path through which it could reach something the
/// gateway does not control is covered.
///
/// - credential stores (`Masks`) and airlock's own files (the token file, the policy, the
///   audit log) are covered so they can be neither read nor written;
/// - every host path socket still visible (the host namespace's sockets, over sock_diag
///   or from `/proc/net/unix`: tmux, ssh-agent, an IDE's IPC, a user-run docker) gets
///   `/dev/null` over it, so `connect` fails;
/// - every other mount of a kernel filesystem (a procfs in a chroot or build root, sysfs,
///   debugfs, tracefs, bpf, cgroup, securityfs, configfs, …) is covered by an empty tmpfs.
///
/// Computed in the parent from the host's view (the sandbox's mount namespace starts as a
/// copy of it). A socket bound after the sandbox started is not covered; one under `/tmp`,
/// `/dev/shm` or `/run` never needs to be.
package struct SandboxView: Equatable, Sendable {
    /// Credential stores and the paths given with `--mask`, as they exist.
    package var credentialMasks: [Mask]
    /// airlock's own files: the token file, the policy file, the audit log.
    package var protectedFiles: [Mask]
    /// Host path sockets.
    package var sockets: [Mask]
    /// Mount points of kernel filesystems other than the sandbox's own.
    package var kernelMounts: [Mask]

    /// Every mask, in the order they are applied.
    package var masks: [Mask] { credentialMasks + protectedFiles + kernelMounts + sockets }

    /// Why the view could not be built.
    package enum ViewError: Error, Equatable, CustomStringConvertible {
        /// More host sockets than the sandbox can cover one by one.
        case tooManySockets(Int)

        package var description: String {
            switch self {
            case .tooManySockets(let count):
                return "\(count) host path sockets are visible; airlock covers at most \(SandboxView.maximumSockets) (move them under /run or /tmp)"
            }
        }
    }

    /// Host sockets covered one by one, at most.
    package static let maximumSockets = 8192

    /// The kernel filesystems whose other mounts are covered.
    package static let kernelFilesystems: Set<String> = [
        "proc", "sysfs", "debugfs", "tracefs", "bpf", "cgroup", "cgroup2", "securityfs", "configfs",
        "pstore", "efivarfs", "fusectl", "binfmt_misc", "mqueue",
    ]

    /// Builds the view for a user whose home is `home`.
    /// - Parameters:
    ///   - extraMasks: `--mask` paths (`~` expanded to `home`).
    ///   - protectedFiles: airlock's own files (token, policy, audit log); covered by their
    ///     real paths, since a mount covers the file, not the name a link gives it.
    ///   - privateTmp: whether `/tmp` and `/dev/shm` are fresh (then nothing under them needs covering).
    /// - Throws: `Masks.PathError` for a bad `--mask`, `ViewError` when there are too many sockets.
    ///   - workingDirectory: the command's; when it lies under a fresh `/tmp` it is kept
    ///     (bound back in with what is mounted below it), so what lies under it is covered.
    package static func build(
        home: String, extraMasks: [String], protectedFiles: [String], privateTmp: Bool, workingDirectory: String?
    ) throws -> SandboxView {
        let credentials = Masks.resolve(try Masks.paths(home: home, extra: extraMasks))
        var seen = Set(credentials.map(\.path))
        var protected: [Mask] = []
        for path in protectedFiles {
            guard let real = realPath(path), !seen.contains(real) else { continue }
            seen.insert(real)
            protected.append(contentsOf: Masks.resolve([real]))
        }
        let fresh = freshRoots(privateTmp: privateTmp)
        let kept = privateTmp ? workingDirectory.flatMap(underPrivateTmp) : nil
        let mountinfo = Doctor.readText("/proc/self/mountinfo", limit: 64 << 20) ?? ""
        let mounts = kernelMountPoints(mountinfo: mountinfo, fresh: fresh, kept: kept).filter { !seen.contains($0) }
        // Over sock_diag, exact; where the kernel lacks it, or it fails, /proc/net/unix.
        let bound = (try? UnixSocketPaths.fromSocketDiagnostics()).flatMap { $0 }
            ?? UnixSocketPaths.fromProcNetUnix(Doctor.readText("/proc/net/unix", limit: 64 << 20) ?? "")
        let socketPaths = socketPaths(bound: bound, fresh: fresh, kept: kept).filter { path in
            !mounts.contains(where: { isWithin(path, $0) })
        }
        let sockets = socketPaths.compactMap { path -> Mask? in
            var info = stat()
            guard !seen.contains(path), lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else { return nil }
            return Mask(path: path, kind: .file)
        }
        if sockets.count > maximumSockets { throw ViewError.tooManySockets(sockets.count) }
        return SandboxView(
            credentialMasks: credentials, protectedFiles: protected, sockets: sockets,
            kernelMounts: mounts.map { Mask(path: $0, kind: isDirectory($0) ? .directory : .file) })
    }

    /// The directories the sandbox gets fresh, so nothing under them is the host's.
    static func freshRoots(privateTmp: Bool) -> [String] {
        var roots = ["/proc", "/sys", "/run", "/var/run"]
        if privateTmp { roots += ["/tmp", "/dev/shm"] }
        return roots
    }

    /// Whether `path` is `root` or lies under it.
    static func isWithin(_ path: String, _ root: String) -> Bool {
        path == root || path.hasPrefix(root.hasSuffix("/") ? root : root + "/")
    }

    /// `directory` when it lies under `/tmp` or `/dev/shm` (by its real path): the working
    /// directory the private `/tmp` must keep.
    package static func underPrivateTmp(_ directory: String) -> String? {
        guard let real = realPath(directory) else { return nil }
        return ["/tmp", "/dev/shm"].contains(where: { isWithin(real, $0) && real != $0 }) ? real : nil
    }

    /// Whether the sandbox sees the host's `path`: not under a fresh root, unless under the
    /// kept working directory.
    static func isHostView(_ path: String, fresh: [String], kept: String?) -> Bool {
        if let kept, isWithin(path, kept) { return true }
        return !fresh.contains(where: { isWithin(path, $0) })
    }

    /// The mount points of kernel filesystems in `/proc/self/mountinfo` text that the
    /// sandbox would see; a mount under another one listed is left out (covering the upper
    /// hides it).
    /// Split as bytes, not characters: the text is ASCII but for the paths, and splitting a
    /// `String` breaks it into grapheme clusters first (6% of `run`'s own instructions
    /// went to this parse), which would also join a separator to a combining mark after it.
    package static func kernelMountPoints(mountinfo: String, fresh: [String], kept: String? = nil) -> [String] {
        var points: [String] = []
        let space = UInt8(ascii: " "), dashByte = UInt8(ascii: "-")
        for line in Array(mountinfo.utf8).split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: space, omittingEmptySubsequences: false)
            guard let dash = fields.firstIndex(where: { $0.count == 1 && $0.first == dashByte }), dash >= 5,
                  dash + 1 < fields.count
            else { continue }
            guard kernelFilesystems.contains(String(decoding: fields[dash + 1], as: UTF8.self)) else { continue }
            let point = unescapeMountPath(String(decoding: fields[4], as: UTF8.self))
            if point == "/" || !isHostView(point, fresh: fresh, kept: kept) { continue }
            points.append(point)
        }
        points = Array(Set(points)).sorted()
        return points.filter { point in !points.contains(where: { $0 != point && isWithin(point, $0) }) }
    }

    /// Of the paths unix sockets are bound to (`UnixSocketPaths`), those the sandbox would
    /// see (abstract ones, `@…`, live in the network namespace and are the sandbox's own).
    package static func socketPaths(bound: [String], fresh: [String], kept: String? = nil) -> [String] {
        var paths = Set<String>()
        // A socket bound by a relative name cannot be located from here.
        for bound in bound where bound.hasPrefix("/") {
            // The path as the binder spelled it (`/tmp//a/./b.sock`); links resolved, as the mount will.
            let path = realPath(bound) ?? bound
            if !isHostView(path, fresh: fresh, kept: kept) { continue }
            paths.insert(path)
        }
        return paths.sorted()
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    static func unescapeMountPath(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "\\"), i + 3 < utf8.count,
               let value = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }
}
