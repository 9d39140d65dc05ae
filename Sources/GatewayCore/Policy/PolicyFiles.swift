#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a sandbox's policy comes from: one file given with `--policy`, or the default
/// locations, a main file plus the `*.conf` drop-ins of a directory beside it.
///
/// The default set, the same for `run`, `gateway serve` and `policy check`/`explain`:
/// as root `/etc/airlock/policy` and `/etc/airlock/policy.d/*.conf`; otherwise
/// `$XDG_CONFIG_HOME/airlock/policy` (default `~/.config/airlock/policy`) and its
/// `policy.d/*.conf`. Missing files and directories are fine (they add no rule). Drop-ins
/// are read after the main file in bytewise order of their names; names not ending in
/// `.conf`, and hidden names (starting with `.`, as editors' lock files do), are ignored.
/// The files parse as one policy: a duplicate route or a bad line in any of them fails the
/// whole set, with the file and line named.
package struct PolicyFiles: Sendable, Equatable, CustomStringConvertible {
    /// The main file (`--policy FILE`, or the default `policy`).
    package let mainFile: String
    /// The drop-in directory; nil for `--policy FILE`, which is read alone.
    package let dropInDirectory: String?

    /// The most drop-ins read; more is an error, not a silent cut.
    package static let maximumDropIns = 256
    /// The most bytes read across all files of a set.
    package static let maximumTotalSize = 4 << 20

    /// The root default set: `/etc/airlock/policy` and `/etc/airlock/policy.d/*.conf`.
    package static let system = PolicyFiles(directory: "/etc/airlock")

    /// Only `path` (`--policy FILE`).
    package init(file path: String) {
        mainFile = path
        dropInDirectory = nil
    }

    /// `DIRECTORY/policy` and `DIRECTORY/policy.d/*.conf`.
    package init(directory: String) {
        let base = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        mainFile = base + "/policy"
        dropInDirectory = base + "/policy.d"
    }

    /// The default set: `system` as root, else the user's under `$XDG_CONFIG_HOME`
    /// (an absolute path; anything else is ignored, as the XDG specification says) or
    /// `$HOME/.config`. Nil for a rootless caller with neither.
    package static func defaults(root: Bool, environment: [String: String]) -> PolicyFiles? {
        if root { return system }
        if let config = environment["XDG_CONFIG_HOME"], config.hasPrefix("/") {
            return PolicyFiles(directory: config + "/airlock")
        }
        if let home = environment["HOME"], home.hasPrefix("/") {
            return PolicyFiles(directory: (home == "/" ? "" : home) + "/.config/airlock")
        }
        return nil
    }

    /// `FILE`, or `MAIN + DIR/*.conf`: how errors, audit lines and help name the set.
    package var description: String {
        guard let dropInDirectory else { return mainFile }
        return "\(mainFile) + \(dropInDirectory)/*.conf"
    }

    /// Whether a directory entry is a drop-in: `*.conf`, not hidden.
    package static func isDropIn(_ name: String) -> Bool {
        name.hasSuffix(".conf") && !name.hasPrefix(".")
    }

    /// What a listing found: the files to read, in order, and the entries of the drop-in
    /// directory that are not drop-ins.
    package struct Listing: Equatable, Sendable {
        /// The files read, in order: the main file (if it exists), then the drop-ins.
        package var files: [String]
        /// Names in the drop-in directory that were skipped (at most 64 kept).
        package var ignored: [String]
    }

    /// The files of the set that exist, in reading order. With `--policy FILE`, that file
    /// whether it exists or not (reading it then says why it cannot be read).
    /// - Throws: `PolicyError` when the drop-in directory cannot be read or holds more
    ///   than `maximumDropIns` drop-ins.
    package func listing() throws -> Listing {
        guard let dropInDirectory else { return Listing(files: [mainFile], ignored: []) }
        var files: [String] = []
        if access(mainFile, F_OK) == 0 { files.append(mainFile) }
        var names: [String] = []
        var ignored: [String] = []
        guard let dir = opendir(dropInDirectory) else {
            if errno == ENOENT { return Listing(files: files, ignored: []) }
            throw PolicyError(file: dropInDirectory, line: 0, message: "cannot read the directory: \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            if Self.isDropIn(name) {
                names.append(name)
                if names.count > Self.maximumDropIns {
                    throw PolicyError(file: dropInDirectory, line: 0, message: "more than \(Self.maximumDropIns) *.conf files")
                }
            } else if ignored.count < 64 {
                ignored.append(name)
            }
        }
        // Bytewise, whatever the locale: 10-a.conf before 9-b.conf, B.conf before a.conf.
        names.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        ignored.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        files += names.map { dropInDirectory + "/" + $0 }
        return Listing(files: files, ignored: ignored)
    }

    /// The paths a root-owned set must keep out of other accounts' reach: every file read,
    /// and the drop-in directory and main file even when missing (so no account can add one).
    package func guardedPaths(listing: Listing) -> [String] {
        var paths = [mainFile]
        if let dropInDirectory { paths.append(dropInDirectory) }
        for file in listing.files where !paths.contains(file) { paths.append(file) }
        return paths
    }

    /// Reads and parses every file of the set as one policy.
    /// - Parameter check: called with each guarded path (see `guardedPaths`) before
    ///   anything is read; a non-nil answer is the refusal (`gateway serve` and root runs
    ///   refuse a path another account could change).
    /// - Returns: the policy and the files read.
    /// - Throws: `PolicyError` naming the file (and line) at fault.
    package func load(check: ((String) -> String?)? = nil) throws -> (policy: Policy, files: [String]) {
        let listing = try listing()
        if let check {
            for path in guardedPaths(listing: listing) {
                if let problem = check(path) { throw PolicyError(file: path, line: 0, message: problem) }
            }
        }
        if dropInDirectory == nil {
            return (try Policy.load(path: mainFile), [mainFile])
        }
        // Origins name the file once a set has more than one (`line 3` alone is ambiguous).
        let nameFiles = listing.files.count > 1
        // Named by the main file, where refusals tell the user to add a rule.
        var policy = Policy(source: listing.files.isEmpty ? Policy.denyAll.source : mainFile)
        var total = 0
        for file in listing.files {
            let text = try Policy.readText(path: file)
            total += text.utf8.count
            guard total <= Self.maximumTotalSize else {
                throw PolicyError(file: file, line: 0, message: "the policy files together are larger than \(Self.maximumTotalSize) bytes")
            }
            try policy.parseLines(text, source: file, originPrefix: nameFiles ? file + " " : "")
        }
        return (policy, listing.files)
    }

    /// What identifies the set's current contents without reading them: the stamps of the
    /// main file, the drop-in directory (entries added, removed or renamed) and each drop-in.
    package func stamp() -> [FileStamp?] {
        var stamps = [FileStamp(path: mainFile)]
        guard let dropInDirectory else { return stamps }
        stamps.append(FileStamp(path: dropInDirectory))
        if let listing = try? listing() {
            for file in listing.files where file != mainFile { stamps.append(FileStamp(path: file)) }
        }
        return stamps
    }
}

/// What identifies one version of a file without reading it.
package struct FileStamp: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedSeconds: Int
    var modifiedNanoseconds: Int
    var changedSeconds: Int
    var changedNanoseconds: Int

    /// The stamp of `path` (links followed), or nil when it cannot be stat'ed.
    package init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedSeconds = Int(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int(info.st_mtim.tv_nsec)
        changedSeconds = Int(info.st_ctim.tv_sec)
        changedNanoseconds = Int(info.st_ctim.tv_nsec)
    }
}
