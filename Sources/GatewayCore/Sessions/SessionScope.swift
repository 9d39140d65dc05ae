/// What a session may do to one repository.
package enum RepoAccess: String, Sendable, Codable, Equatable, Comparable {
    /// Clone and fetch (`git-upload-pack`).
    case read
    /// Clone, fetch and push (`git-upload-pack` and `git-receive-pack`).
    case rw

    package static func < (lhs: RepoAccess, rhs: RepoAccess) -> Bool {
        lhs == .read && rhs == .rw
    }
}

/// One scope entry of a session: a repository and what may be done to it.
package struct ScopeEntry: Sendable, Hashable, CustomStringConvertible {
    package let repository: GitRepository
    package let access: RepoAccess

    package init(repository: GitRepository, access: RepoAccess) {
        self.repository = repository
        self.access = access
    }

    /// Parses `[HOST/]OWNER/REPO[.git][:read|:rw]` or `https://HOST/OWNER/REPO[.git][:rw]`;
    /// the host defaults to `defaultHost`, the access to `read`.
    /// - Throws: `GitRepository.Invalid` naming the entry and what is wrong with it.
    package init(parsing text: String, defaultHost: String = "github.com") throws {
        var body = Substring(text)
        var access = RepoAccess.read
        if let colon = text.lastIndex(of: ":"), !text[text.index(after: colon)...].contains("/") {
            let suffix = String(text[text.index(after: colon)...])
            guard let parsed = RepoAccess(rawValue: suffix) else {
                throw GitRepository.Invalid(description: "scope entry \(GitRepository.printable(text)): access must be `read` or `rw`, not \(GitRepository.printable(suffix))")
            }
            access = parsed
            body = text[..<colon]
        }
        // The URL a user copies from the browser or `git remote -v` names the same repository.
        if body.hasPrefix("https://") { body = body.dropFirst("https://".count) }
        if body.hasSuffix("/") { body = body.dropLast() }
        let parts = body.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let repository: GitRepository
        do {
            switch parts.count {
            case 2: repository = try GitRepository(host: defaultHost, owner: parts[0], name: parts[1])
            case 3: repository = try GitRepository(host: parts[0], owner: parts[1], name: parts[2])
            default:
                throw GitRepository.Invalid(description: "expected [HOST/]OWNER/REPO[:rw]")
            }
        } catch let error as GitRepository.Invalid {
            throw GitRepository.Invalid(description: "scope entry \(GitRepository.printable(text)): \(error.description)")
        }
        self.init(repository: repository, access: access)
    }

    /// `host/owner/repo:read` or `host/owner/repo:rw`.
    package var description: String { "\(repository):\(access.rawValue)" }
}

/// The repositories a session may use. An empty scope grants nothing; names match exactly
/// (after canonicalisation), so `*` or a prefix never stands for more than itself.
package struct SessionScope: Sendable, Equatable {
    package let entries: [ScopeEntry]

    /// Builds a scope; a repository named twice keeps the stronger access.
    package init(_ entries: [ScopeEntry]) {
        var merged: [GitRepository: RepoAccess] = [:]
        var order: [GitRepository] = []
        for entry in entries {
            if let existing = merged[entry.repository] {
                merged[entry.repository] = max(existing, entry.access)
            } else {
                merged[entry.repository] = entry.access
                order.append(entry.repository)
            }
        }
        self.entries = order.map { ScopeEntry(repository: $0, access: merged[$0]!) }
    }

    /// The access granted to `repository`, or nil when it is not in scope.
    package func access(to repository: GitRepository) -> RepoAccess? {
        entries.first { $0.repository == repository }?.access
    }

    /// Whether `operation` on `repository` is allowed.
    package func allows(_ repository: GitRepository, _ needed: RepoAccess) -> Bool {
        guard let granted = access(to: repository) else { return false }
        return granted >= needed
    }

    /// Entries as audit and list show them: `host/owner/repo:rw`.
    package var descriptions: [String] { entries.map(\.description) }
}
