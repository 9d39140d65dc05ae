import GatewayCore
/// The history rule of the push policy: an update of an existing ref must be a
/// fast-forward, proven from the commits of the pushed pack.
///
/// For each update that moves an existing ref (old and new ids both non-zero), the walk
/// goes from the new id through the parents of the pack's commits; reaching the old id
/// proves the old commit is an ancestor of the new one. A walk that ends without it, inside
/// the pack (an unrelated history) or at commits the pack does not hold (an amended or
/// rebased commit sits on the old commit's parent, which the upstream has), does not prove
/// it, and the update is refused: fail closed. An update to a commit the pack does not
/// hold at all (already upstream on another branch) is refused for the same reason. Creations and the commits on top of a
/// branch, merges included (their first parent leads back to the old id), pass.
package enum PushHistory {
    /// Whether `update` moves an existing ref, so that its history is checked.
    package static func isChecked(_ update: RefUpdate) -> Bool {
        update.movesExistingRef
    }

    /// The refused updates, in order: those of `updates` that are not proven fast-forward by
    /// `commits` (the pack's commits by id).
    package static func refusals(_ updates: [RefUpdate], commits: [String: PackReader.Commit]) -> [PushPolicy.Refusal] {
        updates.compactMap { update in
            guard isChecked(update), !reaches(update.old, from: update.new, through: commits) else { return nil }
            guard commits[update.new] != nil else {
                return PushPolicy.Refusal(ref: update.ref, reason: unprovenReason(new: update.new))
            }
            return PushPolicy.Refusal(ref: update.ref, reason: reason(old: update.old))
        }
    }

    /// The reason an update to a commit the pack does not hold (one the upstream has
    /// already, pushed to another branch) is refused: its history cannot be seen.
    package static func unprovenReason(new: String) -> String {
        "not proven fast-forward: the push holds no commit \(new.prefix(12)) (the upstream has it already), so airlock cannot see its history; push a new commit on top"
    }

    /// The reason a non-fast-forward update is refused, as git shows it.
    package static func reason(old: String) -> String {
        "non-fast-forward (history rewrite): the pushed commits do not lead back to \(old.prefix(12)), the ref's current commit; airlock accepts only updates it can prove fast-forward"
    }

    /// Whether the walk from `start` through the parents in `commits` reaches `target`.
    static func reaches(_ target: String, from start: String, through commits: [String: PackReader.Commit]) -> Bool {
        var seen: Set<String> = [start]
        var queue = [start]
        while let id = queue.popLast() {
            if id == target { return true }
            for parent in commits[id]?.parents ?? [] where seen.insert(parent).inserted {
                queue.append(parent)
            }
        }
        return false
    }
}
