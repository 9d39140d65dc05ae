import SystemCalls

/// Which user namespace airlock runs in.
package enum UserNamespace {
    /// Whether this process is in the host's initial user namespace, where uid 0 is the
    /// host's root. Inside `unshare -Ur`, a rootless container or a pod with user
    /// namespaces, uid 0 is only that namespace's root: it cannot move veth ends into the
    /// host's namespaces, so `run` takes the rootless path there.
    ///
    /// The initial namespace maps the whole id range onto itself (`0 0 4294967295`); any
    /// other map is a namespace someone made. Unreadable means not initial (fail closed to
    /// the path that needs fewer privileges).
    package static func isInitial(uidMap path: String = "/proc/self/uid_map") -> Bool {
        guard let text = mapText(path) else { return false }
        return isInitial(uidMapText: text)
    }

    /// The text of an id map (at most 340 lines of three numbers); nil when unreadable.
    private static func mapText(_ path: String) -> String? {
        (try? fileContents(path, limit: 1 << 16)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// `isInitial` for the text of a `uid_map`.
    package static func isInitial(uidMapText text: String) -> Bool {
        let lines = text.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        return lines.count == 1 && lines[0] == ["0", "0", "4294967295"]
    }

    /// The id outside this user namespace that `id` inside maps to, from a `uid_map` or
    /// `gid_map` text; `nil` when unmapped.
    package static func outsideID(of id: UInt32, mapText text: String) -> UInt32? {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).compactMap { UInt64($0) }
            guard fields.count == 3 else { continue }
            let (inside, outside, count) = (fields[0], fields[1], fields[2])
            if UInt64(id) >= inside && UInt64(id) < inside + count { return UInt32(outside + (UInt64(id) - inside)) }
        }
        return nil
    }

    /// Refuses to run a command rootless as uid or gid 0 of a namespace that maps 0 onto 0
    /// outside (`unshare -Ur` run by root): the command would own the host's root files.
    /// - Throws: `HostRootMapping` saying what maps to root.
    package static func refuseRootMappedToRoot(
        uid: UInt32, gid: UInt32, uidMap: String = "/proc/self/uid_map", gidMap: String = "/proc/self/gid_map"
    ) throws {
        let uidText = mapText(uidMap) ?? ""
        let gidText = mapText(gidMap) ?? ""
        if outsideID(of: uid, mapText: uidText) == 0 { throw HostRootMapping(what: "uid \(uid)") }
        if outsideID(of: gid, mapText: gidText) == 0 { throw HostRootMapping(what: "gid \(gid)") }
    }

    /// A nested user namespace whose ids are the host's root.
    package struct HostRootMapping: Error, CustomStringConvertible {
        /// `uid 0` or `gid 0`.
        package var what: String

        package var description: String {
            "\(what) of this user namespace is the host's root (a namespace made by root, such as `unshare -Ur` run as root); the command would own the host's root files: run airlock as root outside the namespace with --user NAME, or make the namespace as an ordinary user"
        }
    }
}
