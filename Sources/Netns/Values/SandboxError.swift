/// Why a persistent-sandbox operation refused or failed; each prints as one line.
package enum SandboxError: Error, CustomStringConvertible, Equatable {
    /// No sandbox of that name (no state, no pins).
    case notFound(NamespaceName)
    /// The sandbox exists with other parameters; each string names one difference.
    case differentParameters(NamespaceName, [String])
    /// A pin exists that airlock did not make (there is no state for it).
    case foreignPin(String)
    /// A create did not finish; destroy or gc removes it.
    case halfMade(NamespaceName)
    /// The state says complete but pins are gone.
    case pinsMissing(NamespaceName, [String])
    /// Create failed and rolling back failed too; the paths may remain.
    case rollbackFailed(cause: String, rollback: String)

    package var description: String {
        switch self {
        case .notFound(let name):
            return "no sandbox named \(quoted(name.rawValue))"
        case .differentParameters(let name, let differences):
            return "sandbox \(quoted(name.rawValue)) already exists with \(differences.joined(separator: ", ")); destroy it first to change it"
        case .foreignPin(let path):
            return "\(path) exists but was not made by airlock (no state for it); nothing changed"
        case .halfMade(let name):
            return "sandbox \(quoted(name.rawValue)) is half-made (a create did not finish); `airlock netns destroy \(name)` removes it"
        case .pinsMissing(let name, let paths):
            return "sandbox \(quoted(name.rawValue)) is recorded but \(paths.joined(separator: " and ")) \(paths.count == 1 ? "is" : "are") gone; `airlock netns destroy \(name)` removes the rest"
        case .rollbackFailed(let cause, let rollback):
            return "\(cause) (and undoing the partial create failed: \(rollback))"
        }
    }
}

extension SandboxError {
    /// Undoes a failed create: runs every step of `undo` in order (each is tried even when
    /// an earlier one failed), then rethrows `error`, or `rollbackFailed` naming it and
    /// what could not be undone.
    static func rethrow(_ error: any Error, undoing undo: [() throws -> Void]) throws -> Never {
        var failures: [String] = []
        for step in undo {
            do { try step() } catch { failures.append(String(describing: error)) }
        }
        if !failures.isEmpty {
            throw SandboxError.rollbackFailed(cause: String(describing: error), rollback: failures.joined(separator: "; "))
        }
        throw error
    }
}
