import GatewayCore
/// What a GitHub API route (`github-session HOST`) lets a session do: the REST API of the
/// session's repositories and nothing else.
///
/// Allowed, for a repository the session covers on `HOST` (owner and name compared without
/// regard to case, as GitHub does):
/// - `GET`/`HEAD` of `/repos/OWNER/REPO` and everything below it, except the
///   administration subtrees in `administration` (webhooks, deploy keys, collaborators,
///   invitations, secrets and variables, runners, environments, secret-scanning alerts);
/// - with `rw` access, the writes in `writes`: create and update pull requests and issues,
///   comment on them, review pull requests.
///
/// Allowed for every session: `GET`/`HEAD` of exactly `/user`, `/rate_limit` and `/meta`.
///
/// Everything else is refused: other repositories, `/orgs`, `/user/…`, search, gists,
/// `DELETE` anywhere, every other write (merging, branches, contents, releases, settings),
/// and GraphQL (`/graphql`), whose queries airlock does not read. The path is matched as
/// sent, without the query: no empty segment (`//`), no `.`/`..` segment, no percent
/// escape in the first three segments (`%6Fwner` would name `owner` upstream), lowercase
/// literals (`repos`, `pulls`), numbers as ASCII digits.
package enum GitHubAPIScope {
    /// The decision for one request.
    package enum Decision: Equatable, Sendable {
        /// Pass it; `repository` is the covered repository it names, if any.
        case allow(repository: GitRepository?)
        /// Refuse it with `403` and `reason` (one line, no `airlock:` prefix).
        case deny(reason: String)
    }

    /// Repository-independent paths any session may read.
    package static let repositoryIndependentReads: Set<String> = ["/user", "/rate_limit", "/meta"]

    /// Subtrees below `/repos/OWNER/REPO/` refused for every method: repository
    /// administration and secrets, which an agent working on code never needs.
    package static let administration: [[String]] = [
        ["hooks"], ["keys"], ["collaborators"], ["invitations"], ["actions", "secrets"], ["actions", "variables"],
        ["actions", "runners"], ["dependabot"], ["codespaces"], ["environments"], ["secret-scanning"],
    ]

    /// One write a `rw` session may make: the method and the segments after
    /// `/repos/OWNER/REPO/`, where `#` stands for a number.
    package struct Write: Equatable, Sendable {
        package let method: String
        package let segments: [String]

        /// `POST /repos/{owner}/{repo}/pulls`, as the documentation lists it.
        package var text: String {
            "\(method) /repos/{owner}/{repo}/" + segments.map { $0 == "#" ? "{number}" : $0 }.joined(separator: "/")
        }
    }

    /// The writes a `rw` session may make, and nothing else.
    package static let writes: [Write] = [
        Write(method: "POST", segments: ["pulls"]),
        Write(method: "PATCH", segments: ["pulls", "#"]),
        Write(method: "POST", segments: ["pulls", "#", "comments"]),
        Write(method: "PATCH", segments: ["pulls", "comments", "#"]),
        Write(method: "POST", segments: ["pulls", "#", "reviews"]),
        Write(method: "POST", segments: ["issues"]),
        Write(method: "PATCH", segments: ["issues", "#"]),
        Write(method: "POST", segments: ["issues", "#", "comments"]),
        Write(method: "PATCH", segments: ["issues", "comments", "#"]),
    ]

    /// Request headers that never go upstream on a GitHub API route: method overrides,
    /// which a web framework could honour to turn an allowed `POST` into a `DELETE`.
    /// (`Content-Type` of a write is replaced by `application/json` for the same reason: a
    /// form body could carry `_method`.)
    package static let strippedRequestHeaders: Set<String> = ["x-http-method-override", "x-http-method", "x-method-override"]

    /// Decides `method` on `path` (the path below the route, without the query) for a
    /// session with `scope`, on the route's git host `host`. `query` is `""` or starts
    /// with `?`; a `_method` parameter in it (a method override) is refused.
    package static func decide(method: String, path: String, query: String = "", scope: SessionScope, host: String) -> Decision {
        let shown = GitRepository.printable(path)
        let lowerQuery = query.lowercased()
        if lowerQuery.contains("_method") || lowerQuery.contains("%5fmethod") {
            return .deny(reason: "a `_method` query parameter (a method override) is not passed")
        }
        guard path.hasPrefix("/") else {
            return .deny(reason: "the GitHub API root is not served; paths start at /repos/OWNER/REPO")
        }
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if segments.contains(where: { $0.isEmpty }) {
            return .deny(reason: "\(shown) has an empty segment (`//` or a trailing `/`); write the path as GitHub documents it")
        }
        if segments.contains(where: { $0 == "." || $0 == ".." }) {
            return .deny(reason: "\(shown) has a `.` or `..` segment")
        }
        let isRead = method == "GET" || method == "HEAD"
        if method == "DELETE" {
            return .deny(reason: "DELETE is never allowed through the GitHub API route")
        }
        if segments[0] == "graphql" {
            return .deny(reason: "GraphQL is not served: airlock cannot prove a query read-only and limited to the session's repositories; use the REST API")
        }
        if repositoryIndependentReads.contains(path) {
            return isRead ? .allow(repository: nil) : .deny(reason: "\(method) \(shown) is not allowed; only GET of \(shown) is")
        }
        guard segments[0] == "repos", segments.count >= 3 else {
            return .deny(reason: "\(method) \(shown) is outside the session's repositories (allowed: /repos/OWNER/REPO/…, /user, /rate_limit, /meta)")
        }
        let owner = segments[1], name = segments[2]
        // GitRepository refuses `%`, so an escape never names a repository.
        guard let repository = try? GitRepository(host: host, owner: owner, name: name),
              repository.owner == owner.lowercased(), repository.name == name.lowercased()
        else {
            return .deny(reason: "\(shown) does not name a repository as GitHub writes it (OWNER/REPO of ASCII letters, digits, `.`, `_`, `-`, without `.git`)")
        }
        guard let access = scope.access(to: repository) else {
            return .deny(reason: "this session does not cover \(repository)")
        }
        let below = Array(segments.dropFirst(3))
        if let subtree = administration.first(where: { below.starts(with: $0) }) {
            return .deny(reason: "/repos/\(owner)/\(name)/\(subtree.joined(separator: "/")) is repository administration, which the GitHub API route never passes")
        }
        if isRead { return .allow(repository: repository) }
        guard let write = writes.first(where: { $0.method == method && matches(below, $0.segments) }) else {
            return .deny(reason: "\(method) \(shown) is not one of the writes airlock passes (pull requests, issues, their comments and reviews)")
        }
        guard access >= .rw else {
            return .deny(reason: "this session has read-only access to \(repository); \(write.text) needs --repo \(repository):rw")
        }
        return .allow(repository: repository)
    }

    /// Whether `segments` fit `pattern`, where `#` is 1–18 ASCII digits.
    static func matches(_ segments: [String], _ pattern: [String]) -> Bool {
        guard segments.count == pattern.count else { return false }
        for (segment, expected) in zip(segments, pattern) {
            if expected == "#" {
                guard (1...18).contains(segment.utf8.count), segment.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
            } else if segment != expected {
                return false
            }
        }
        return true
    }
}
