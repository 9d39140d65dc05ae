import GatewayCore
/// The history rule of the push policy: an update of an existing ref must be a
/// fast-forward, proven from the commits of the pushed pack or, where they do not reach
/// the old commit, by the upstream.
///
/// For each update that moves an existing ref (old and new ids both non-zero), the walk
/// goes from the new id through the parents of the pack's commits; reaching the old id
/// proves the old commit is an ancestor of the new one. A walk that ends without it, inside
/// the pack (an unrelated history) or at commits the pack does not hold (an amended or
/// rebased commit sits on the old commit's parent, which the upstream has), does not prove
/// it from the pack alone: the upstream is then asked whether the old commit is an
/// ancestor of the commits where the walk stopped (`AncestryQuestion`), and the update is
/// refused unless it says so: fail closed. Creations and the commits on top of a branch,
/// merges included (their first parent leads back to the old id), pass from the pack.
package enum PushHistory {
    /// Whether `update` moves an existing ref, so that its history is checked.
    package static func isChecked(_ update: RefUpdate) -> Bool {
        update.movesExistingRef
    }

    /// The refused updates, in order: those of `updates` that are not proven fast-forward by
    /// `commits` (the pack's commits by id), without asking the upstream.
    package static func refusals(_ updates: [RefUpdate], commits: [String: PackReader.Commit]) -> [PushPolicy.Refusal] {
        updates.compactMap { update in
            guard isChecked(update), !reaches(update.old, from: update.new, through: commits) else { return nil }
            guard commits[update.new] != nil else {
                return PushPolicy.Refusal(ref: update.ref, reason: unprovenReason(new: update.new))
            }
            return PushPolicy.Refusal(ref: update.ref, reason: reason(old: update.old))
        }
    }

    /// What the pack says about one checked update.
    package enum Finding: Equatable, Sendable {
        /// The walk from the new id reached the old one.
        case proven
        /// The walk left the pack without reaching the old id: the upstream is asked
        /// whether the old id is an ancestor of where it stopped.
        case ask(AncestryQuestion)
        /// Refused without asking, for this reason.
        case refused(String)
    }

    /// What the pack's `commits` say about `update` (an update `isChecked`).
    package static func finding(_ update: RefUpdate, commits: [String: PackReader.Commit]) -> Finding {
        if reaches(update.old, from: update.new, through: commits) { return .proven }
        let stops = boundaries(from: update.new, through: commits)
        guard !stops.isEmpty else { return .refused(reason(old: update.old)) }
        guard stops.count <= AncestryQuestion.maximumBoundaries else {
            return .refused("not proven fast-forward: the pushed commits leave the push at \(stops.count) commits, more than airlock asks the upstream about (\(AncestryQuestion.maximumBoundaries))")
        }
        return .ask(AncestryQuestion(old: update.old, boundaries: stops))
    }

    /// Where the walk from `start` through `commits` leaves them: the ids it reaches that
    /// `commits` does not hold (`start` itself when it is not held), in the order found.
    static func boundaries(from start: String, through commits: [String: PackReader.Commit]) -> [String] {
        var seen: Set<String> = [start]
        var queue = [start]
        var found: [String] = []
        while let id = queue.popLast() {
            guard let commit = commits[id] else {
                found.append(id)
                continue
            }
            for parent in commit.parents where seen.insert(parent).inserted {
                queue.append(parent)
            }
        }
        return found
    }

    /// The reason an update is refused when the upstream's answer to its question could
    /// not be had or read.
    package static func unansweredReason(old: String, _ failure: AncestryFailure) -> String {
        "not proven fast-forward: cannot ask the upstream whether \(old.prefix(12)) is an ancestor of the pushed commits: \(failure.description)"
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
