#if canImport(Glibc)
import Glibc
#endif

/// Whether an account could change a file airlock relies on (the policy, the audit log):
/// write it, or replace it or any directory on its path.
///
/// Judged from the mode bits and owners (ACLs are not read), for both the path as given
/// and its real path, with sticky directories (`/tmp`) honoured: there only a file's or
/// the directory's owner may rename or remove an entry.
package enum PathSafety {
    /// The first path (a directory on the way, or the file itself) that `user` could
    /// change, or nil when it can change none of them.
    package static func changeable(_ path: String, by user: SandboxUser) -> String? {
        firstChangeable(path, owns: { $0.st_uid == user.uid }, canWrite: { canWrite($0, user) })
    }

    /// The first path that an account other than root could change (owned by another
    /// account, or writable by group or others): for files a root gateway re-reads.
    package static func changeableByNonRoot(_ path: String) -> String? {
        firstChangeable(path, owns: { $0.st_uid != 0 }, canWrite: { $0.st_uid != 0 || $0.st_mode & 0o022 != 0 })
    }

    /// Walks `path` (as given and resolved) from `/`: a directory the account can write
    /// lets it replace the next entry, unless the directory is sticky and the account owns
    /// neither the directory nor the entry.
    private static func firstChangeable(_ path: String, owns: (stat) -> Bool, canWrite: (stat) -> Bool) -> String? {
        var candidates = [path]
        if let real = SandboxView.realPath(path), real != path { candidates.append(real) }
        for candidate in candidates {
            var directory = "/"
            for part in candidate.split(separator: "/") {
                let entry = (directory == "/" ? "" : directory) + "/" + part
                var info = stat()
                if lstat(directory, &info) == 0, canWrite(info) {
                    var entryInfo = stat()
                    let ownsEntry = lstat(entry, &entryInfo) == 0 && owns(entryInfo)
                    if info.st_mode & S_ISVTX == 0 || owns(info) || ownsEntry { return directory }
                }
                directory = entry
            }
            var info = stat()
            if stat(candidate, &info) == 0, canWrite(info) { return candidate }
        }
        return nil
    }

    private static func canWrite(_ info: stat, _ user: SandboxUser) -> Bool {
        if info.st_uid == user.uid { return info.st_mode & 0o200 != 0 }
        if info.st_gid == user.gid || user.groups.contains(info.st_gid) { return info.st_mode & 0o020 != 0 }
        return info.st_mode & 0o002 != 0
    }
}
