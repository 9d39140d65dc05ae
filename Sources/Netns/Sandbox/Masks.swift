#if canImport(Glibc)
import Glibc
#endif

/// A path hidden inside the sandbox: an empty read-only tmpfs over a directory, `/dev/null`
/// over a file.
package struct Mask: Equatable, Sendable {
    /// What covers the path.
    package enum Kind: Equatable, Sendable {
        /// An empty read-only tmpfs.
        case directory
        /// `/dev/null`, bound read-only.
        case file
    }

    /// The absolute path masked.
    package var path: String
    /// What covers it.
    package var kind: Kind

    /// A mask of `path` covered as `kind`.
    package init(path: String, kind: Kind) {
        self.path = path
        self.kind = kind
    }
}

/// The paths hidden from sandboxed commands: credentials and sockets of the design's list.
package enum Masks {
    /// Why a mask path was refused.
    package enum PathError: Error, Equatable, CustomStringConvertible {
        /// Masks must be absolute (`~/` is expanded before).
        case notAbsolute(String)
        /// `/`, `/proc`, `/run` and paths with `..` are not maskable.
        case notMaskable(String)

        package var description: String {
            switch self {
            case .notAbsolute(let path): return "mask path '\(path)' is not absolute"
            case .notMaskable(let path): return "mask path '\(path)' cannot be masked"
            }
        }
    }

    /// The design's default list for a user whose home is `home`.
    package static func defaults(home: String) -> [String] {
        let home = home.hasSuffix("/") && home.count > 1 ? String(home.dropLast()) : home
        let inHome = [
            ".ssh", ".aws", ".config/gcloud", ".config/gh", ".azure", ".netrc", ".kube",
            ".gnupg", ".docker", ".npmrc", ".pypirc", ".git-credentials",
            // git's XDG credential store, cargo's registry tokens, Vault's and Terraform's.
            ".config/git/credentials", ".cargo/credentials", ".cargo/credentials.toml",
            ".vault-token", ".terraform.d",
        ]
        return ["/tmp/.X11-unix"] + inHome.map { (home == "/" ? "" : home) + "/" + $0 }
    }

    /// The default list plus `extra` (with `~` and `~/…` expanded to `home`), without duplicates.
    /// - Throws: `PathError` naming a path that is relative or cannot be masked.
    package static func paths(home: String, extra: [String]) throws -> [String] {
        var result = defaults(home: home)
        for raw in extra {
            let path = try normalized(raw, home: home)
            if !result.contains(path) { result.append(path) }
        }
        return result
    }

    /// Expands `~` and checks that `raw` is an absolute, maskable path.
    /// - Throws: `PathError` naming the path.
    package static func normalized(_ raw: String, home: String) throws -> String {
        var path = raw
        if path == "~" { path = home } else if path.hasPrefix("~/") { path = home + path.dropFirst(1) }
        guard path.hasPrefix("/") else { throw PathError.notAbsolute(raw) }
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        let parts = path.split(separator: "/")
        if parts.isEmpty || parts.contains("..") || parts.contains(".") { throw PathError.notMaskable(raw) }
        if ["proc", "run", "dev", "sys"].contains(parts[0]) && parts.count == 1 { throw PathError.notMaskable(raw) }
        return "/" + parts.joined(separator: "/")
    }

    /// The masks to apply for `paths`: each existing path with its kind (stat follows
    /// links, as the mount will); missing paths are left out.
    package static func resolve(_ paths: [String]) -> [Mask] {
        paths.compactMap { path in
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            return Mask(path: path, kind: (info.st_mode & S_IFMT) == S_IFDIR ? .directory : .file)
        }
    }
}
