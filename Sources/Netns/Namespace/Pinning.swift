#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import SystemPackage
import SystemCalls

/// Pins of network namespaces: bind mounts of the namespace onto a file under
/// `/run/netns`, as iproute2 makes them, so `ip netns exec NAME` works too.
package enum Pinning {
    /// Where pins live.
    package static let runDirectory = "/run/netns"

    /// Makes `/run/netns` and makes it a shared mount (bind-mounting it onto itself first
    /// if it is not a mount point), so pins propagate to other mount namespaces.
    /// - Throws: `SystemCallError`.
    /// - Requires: CAP_SYS_ADMIN.
    package static func prepareRunDirectory(_ directory: String = runDirectory) throws {
        try makeDirectories(directory)
        var boundOntoItself = false
        while mount("", directory, "none", UInt(MS_SHARED | MS_REC), nil) != 0 {
            guard errno == EINVAL, !boundOntoItself else { throw SystemCallError.last("mount --make-rshared \(directory)") }
            guard mount(directory, directory, "none", UInt(MS_BIND | MS_REC), nil) == 0 else {
                throw SystemCallError.last("mount --bind \(directory) \(directory)")
            }
            boundOntoItself = true
        }
    }

    /// Creates `path` and bind-mounts the namespace `descriptor` onto it.
    /// - Throws: `SystemCallError`; `EEXIST` if `path` exists (nothing is changed then).
    /// - Requires: CAP_SYS_ADMIN.
    package static func pin(_ descriptor: FileDescriptor, at path: String) throws {
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !directory.isEmpty { try prepareRunDirectory(directory) }
        let fd = Glibc.open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0)
        guard fd >= 0 else { throw SystemCallError.last("create \(path)") }
        Glibc.close(fd)
        guard mount("/proc/self/fd/\(descriptor.rawValue)", path, "none", UInt(MS_BIND), nil) == 0 else {
            let error = SystemCallError.last("mount --bind netns \(path)")
            unlink(path)
            throw error
        }
    }

    /// Removes the pin at `path`: detaches the mount, then deletes the file.
    /// - Returns: true if something was there.
    /// - Throws: `SystemCallError` for errors other than "not mounted" / "not there".
    /// - Requires: CAP_SYS_ADMIN.
    @discardableResult
    package static func unpin(_ path: String) throws -> Bool {
        var existed = false
        if umount2(path, Int32(MNT_DETACH)) == 0 {
            existed = true
        } else if errno != EINVAL && errno != ENOENT {
            throw SystemCallError.last("umount \(path)")
        }
        if unlink(path) == 0 {
            existed = true
        } else if errno != ENOENT {
            throw SystemCallError.last("unlink \(path)")
        }
        return existed
    }

    /// True if something (pinned or not) exists at `path`.
    package static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// True if `path` is a live pin: a mounted network namespace.
    package static func isPinned(_ path: String) -> Bool {
        cnl_is_nsfs_path(path) == 1
    }

    /// True if `fd` refers to a namespace file (nsfs).
    static func isNamespaceFile(fd: Int32) -> Bool {
        cnl_is_nsfs_fd(fd) == 1
    }

    /// `mkdir -p` with mode 0755.
    static func makeDirectories(_ path: String) throws {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw SystemCallError.last("mkdir \(prefix)")
            }
        }
    }
}
