/// One ref update of a push: `<old-id> <new-id> <ref>`.
package struct RefUpdate: Equatable, Sendable {
    package var old: String
    package var new: String
    package var ref: String

    package init(old: String, new: String, ref: String) {
        self.old = old
        self.new = new
        self.ref = ref
    }

    /// The new id is all zeros: the ref is deleted.
    package var isDeletion: Bool { new.allSatisfy { $0 == "0" } }
    /// The old id is all zeros: the ref is created.
    package var isCreation: Bool { old.allSatisfy { $0 == "0" } }
    /// The update moves a ref that exists to another commit: its history can be checked.
    package var movesExistingRef: Bool { !isCreation && !isDeletion }
}
