#if canImport(Glibc)
import Glibc
#endif

/// The account a sandboxed command runs as: ids, supplementary groups and home.
package struct SandboxUser: Equatable, Sendable {
    /// The numeric user id.
    package var uid: uid_t
    /// The primary group id.
    package var gid: gid_t
    /// Supplementary groups (from the group database, the primary group included).
    package var groups: [gid_t]
    /// The home directory; the default masks are relative to it.
    package var home: String
    /// The login name, or the uid in decimal when the account has no entry.
    package var name: String

    /// A user from explicit values.
    package init(uid: uid_t, gid: gid_t, groups: [gid_t], home: String, name: String) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home
        self.name = name
    }
}

/// Looks up accounts in the password and group databases (getpwnam_r, getgrouplist).
package enum Users {
    /// Why an account could not be found.
    package enum LookupError: Error, Equatable, CustomStringConvertible {
        /// No account has this name (or, for a number, this uid).
        case unknownUser(String)
        /// The name is empty or holds characters no account name has.
        case invalidName(String)
        /// The database could not be read.
        case databaseError(String, Int32)

        package var description: String {
            switch self {
            case .unknownUser(let name): return "unknown user '\(name)'"
            case .invalidName(let name): return "invalid user name '\(name)'"
            case .databaseError(let name, let code): return "looking up user '\(name)': \(String(cString: strerror(code)))"
            }
        }
    }

    /// Finds the account named `nameOrUID`; a decimal number is taken as a uid.
    /// - Throws: `LookupError` naming the value when there is no such account.
    package static func lookup(_ nameOrUID: String) throws -> SandboxUser {
        guard !nameOrUID.isEmpty, !nameOrUID.contains("\0"), !nameOrUID.contains("/"), !nameOrUID.contains(":") else {
            throw LookupError.invalidName(nameOrUID)
        }
        if let uid = uid_t(nameOrUID) {
            return try lookup(uid: uid, label: nameOrUID)
        }
        return try withPasswd(label: nameOrUID) { entry, buffer, size, result in
            getpwnam_r(nameOrUID, entry, buffer, size, result)
        }
    }

    /// Finds the account with `uid`.
    /// - Throws: `LookupError.unknownUser` when no account has this uid.
    package static func lookup(uid: uid_t) throws -> SandboxUser {
        try lookup(uid: uid, label: String(uid))
    }

    private static func lookup(uid: uid_t, label: String) throws -> SandboxUser {
        try withPasswd(label: label) { entry, buffer, size, result in
            getpwuid_r(uid, entry, buffer, size, result)
        }
    }

    private static func withPasswd(
        label: String,
        _ call: (UnsafeMutablePointer<passwd>, UnsafeMutablePointer<CChar>, Int, UnsafeMutablePointer<UnsafeMutablePointer<passwd>?>) -> Int32
    ) throws -> SandboxUser {
        var size = 4096
        while size <= 1 << 20 {
            var entry = passwd()
            var result: UnsafeMutablePointer<passwd>?
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
            defer { buffer.deallocate() }
            let code = call(&entry, buffer, size, &result)
            if code == ERANGE {
                size *= 4
                continue
            }
            guard code == 0 || code == ENOENT || code == ESRCH else { throw LookupError.databaseError(label, code) }
            guard result != nil else { throw LookupError.unknownUser(label) }
            let name = String(cString: entry.pw_name)
            return SandboxUser(
                uid: entry.pw_uid, gid: entry.pw_gid,
                groups: groups(of: name, primary: entry.pw_gid),
                home: entry.pw_dir.map { String(cString: $0) } ?? "/",
                name: name)
        }
        throw LookupError.databaseError(label, ERANGE)
    }

    /// The supplementary groups of `name` (getgrouplist), always including `primary`.
    private static func groups(of name: String, primary: gid_t) -> [gid_t] {
        var count: Int32 = 32
        for _ in 0..<8 {
            var list = [gid_t](repeating: 0, count: Int(count))
            let before = count
            if getgrouplist(name, primary, &list, &count) >= 0 {
                return Array(list.prefix(Int(count)))
            }
            count = max(count, before * 2)
        }
        return [primary]
    }
}

extension SandboxUser {
    /// Why an account may not run a sandboxed command as root.
    package struct HostRootError: Error, Equatable, CustomStringConvertible {
        /// The account as it was asked for.
        package var user: String
        /// "uid 0", "gid 0" or "group 0 (root)".
        package var what: String

        package var description: String {
            "--user \(user): \(what) is the host's root, which owns /etc, /usr and root's files even without capabilities; run the command as an ordinary user (--user NAME), or run airlock without root (rootless, uid 0 inside is then you)"
        }
    }

    /// Refuses an account that would be the host's root inside a sandbox built by root:
    /// uid 0, primary gid 0, or the root group among the supplementary groups.
    /// - Throws: `HostRootError` naming what is root.
    package func refuseHostRoot() throws {
        if uid == 0 { throw HostRootError(user: name, what: "uid 0") }
        if gid == 0 { throw HostRootError(user: name, what: "gid 0") }
        if groups.contains(0) { throw HostRootError(user: name, what: "the supplementary group 0 (root)") }
    }
}
