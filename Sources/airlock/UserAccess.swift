#if canImport(Glibc)
import Glibc
#endif

/// Who may use the gateway daemon's user socket, and which sandboxes: the one place that
/// decides (`UserBroker` asks it for every request).
enum UserAccess {
    /// Sandboxes one account may hold at a time through the user socket.
    static let maxSandboxesPerUser = 8

    /// Whether a caller is let in: root, or a member of the socket's group (its primary
    /// group or a supplementary one, as `SO_PEERCRED` and `SO_PEERGROUPS` report them).
    static func admits(uid: UInt32, gid: UInt32, groups: [UInt32], group: UInt32) -> Bool {
        uid == 0 || gid == group || groups.contains(group)
    }

    /// The refusal of a caller `admits` turned away.
    static func refusal(uid: UInt32, groupName: String) -> String {
        "permission denied: uid \(uid) is not in group \(groupName), which may use the gateway daemon's user socket; ask an admin to add you"
    }

    /// Whether `caller` may use or destroy a sandbox owned by `owner` (nil: not made
    /// through the user socket, so an admin's): root may use any, an account only its own.
    static func mayUse(owner: UInt32?, caller: UInt32) -> Bool {
        caller == 0 || (owner != nil && owner == caller)
    }

    /// The refusal of a sandbox the caller may not use. The same words whether it exists
    /// or not, so no account learns the names of others' sandboxes.
    static func notYours(_ sandbox: String) -> String {
        "sandbox \(sandbox): no sandbox of yours by that name (`airlock sandbox list` shows yours)"
    }

    /// A group by name or number.
    /// - Throws: `CLIError` when there is no such group.
    static func group(_ nameOrID: String) throws -> (gid: gid_t, name: String) {
        if let number = gid_t(nameOrID) {
            guard let entry = getgrgid(number) else { return (number, nameOrID) }
            return (number, String(cString: entry.pointee.gr_name))
        }
        guard let entry = getgrnam(nameOrID) else {
            throw CLIError("--users \(nameOrID): no such group (create it with groupadd, and add the accounts that may make sandboxes)")
        }
        return (entry.pointee.gr_gid, nameOrID)
    }
}
