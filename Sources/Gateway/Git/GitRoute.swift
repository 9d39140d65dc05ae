import GatewayCore
/// One git Smart HTTP request under `/git/`, parsed and validated.
///
/// Accepted shapes (owner and repo matched case-insensitively, `.git` optional):
/// - `GET  /git/HOST/OWNER/REPO[.git]/info/refs?service=git-upload-pack|git-receive-pack`
/// - `POST /git/HOST/OWNER/REPO[.git]/git-upload-pack`
/// - `POST /git/HOST/OWNER/REPO[.git]/git-receive-pack`
///
/// Everything else is refused with a status and a one-line reason: malformed or
/// suspicious paths (percent escapes, `..`, `//`, backslashes, NUL, non-ASCII) 400,
/// hosts that are not configured and dumb-protocol or unknown paths 404, the wrong method
/// 405, `git-upload-archive` 403. Git LFS paths (`info/lfs/…`) are `LFSRoute`'s; here they
/// are refused with 403 (there is no session to serve them).
package struct GitRoute: Sendable, Equatable {
    /// What the request asks for.
    package enum Endpoint: Sendable, Equatable {
        /// `GET info/refs?service=…`: ref advertisement.
        case advertisement
        /// `POST git-upload-pack` or `POST git-receive-pack`.
        case rpc
    }

    package let repository: GitRepository
    package let service: GitService
    package let endpoint: Endpoint
    /// Owner as the client spelled it (validated), for the upstream path.
    package let ownerAsSent: String
    /// Repository name as the client spelled it, without `.git` (validated).
    package let nameAsSent: String

    /// The URI path prefix of every git route.
    package static let prefix = "/git/"

    /// The repository's path on the upstream: `BASE/OWNER/REPO.git`, as the client spelled it.
    package func upstreamRepositoryPath(basePath: String) -> String {
        let base = basePath.hasSuffix("/") ? String(basePath.dropLast()) : basePath
        return "\(base)/\(ownerAsSent)/\(nameAsSent).git"
    }

    /// The path and query for the upstream: `BASE/OWNER/REPO.git/info/refs?service=…` or
    /// `BASE/OWNER/REPO.git/SERVICE`, where `basePath` is the upstream URL's path (may be empty).
    package func upstreamURI(basePath: String) -> String {
        let repo = upstreamRepositoryPath(basePath: basePath)
        switch endpoint {
        case .advertisement: return "\(repo)/info/refs?service=\(service.rawValue)"
        case .rpc: return "\(repo)/\(service.rawValue)"
        }
    }

    /// A refusal: the HTTP status to answer with and one line saying why.
    package struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        package let status: Int
        /// What was refused and why, without the `airlock: ` the sandbox sees before it.
        package let why: String
        /// The line the sandbox sees.
        package var reason: String { Gateway.Refusal.prefix + why }
        /// The service the request named, when it got that far (for the audit line).
        package var service: String?
        /// The repository when it was valid, for the audit line.
        package var repository: GitRepository?

        package init(status: Int, reason: String, service: String? = nil, repository: GitRepository? = nil) {
            self.status = status
            self.why = reason
            self.service = service
            self.repository = repository
        }

        package var description: String { "\(status) \(reason)" }
    }

    /// Whether `rest` (the path after the repository) is a Git LFS path (`info/lfs/…`),
    /// served by `LFSRouter`.
    package static func isLFS(rest: String) -> Bool {
        rest == "info/lfs" || rest.hasPrefix("info/lfs/")
    }

    /// The part of a request path every route under `/git/` shares: the repository, as
    /// validated and as the client spelled it, and what follows it.
    package struct RepositoryPath: Sendable, Equatable {
        package let repository: GitRepository
        /// Owner as the client spelled it (validated).
        package let ownerAsSent: String
        /// Repository name as the client spelled it, without `.git` (validated).
        package let nameAsSent: String
        /// The path after the repository (`info/refs`, `info/lfs/objects/batch`), not validated
        /// beyond the checks on the whole path.
        package let rest: String
        /// The query string, without `?`, when there is one.
        package let query: String?
    }

    /// Parses and validates the repository part of `uri` (origin form, as received); every
    /// route under `/git/` (smart HTTP, Git LFS) goes through it.
    /// - Parameter isConfiguredHost: whether a (lowercased) host is a configured git host.
    /// - Throws: `Refusal` with the status and reason to answer.
    package static func parseRepositoryPath(uri: String, isConfiguredHost: (String) -> Bool) throws -> RepositoryPath {
        let bytes = Array(uri.utf8)
        // Control characters, spaces, NUL, backslashes and non-ASCII are never part of a git URL
        // the gateway accepts, anywhere in the target.
        for byte in bytes where byte < 0x21 || byte >= 0x7F || byte == UInt8(ascii: "\\") {
            throw Refusal(status: 400, reason: "the request path contains a character git URLs never need (control, space, backslash or non-ASCII)")
        }
        let path: Substring
        let query: Substring?
        if let q = uri.firstIndex(of: "?") {
            path = uri[..<q]
            query = uri[uri.index(after: q)...]
        } else {
            path = Substring(uri)
            query = nil
        }
        guard path.hasPrefix(prefix) else {
            throw Refusal(status: 404, reason: "not a git path; git URLs look like http://airlock.internal/git/HOST/OWNER/REPO")
        }
        if path.contains("%") {
            throw Refusal(status: 400, reason: "percent-encoded characters are not allowed in git paths")
        }
        if path.contains("//") {
            throw Refusal(status: 400, reason: "empty path segments (`//`) are not allowed in git paths")
        }
        let segments = path.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if segments.contains(where: { $0 == "." || $0 == ".." }) {
            throw Refusal(status: 400, reason: "`.` and `..` segments are not allowed in git paths")
        }
        guard segments.count >= 4 else {
            throw Refusal(status: 404, reason: "not a git path; git URLs look like http://airlock.internal/git/HOST/OWNER/REPO")
        }
        let host = segments[0].lowercased()
        do {
            try GitRepository.checkHost(host)
        } catch let error as GitRepository.Invalid {
            throw Refusal(status: 400, reason: "\(error.description)")
        }
        guard isConfiguredHost(host) else {
            throw Refusal(status: 404, reason: "\(host) is not a configured git host")
        }
        let repository: GitRepository
        do {
            repository = try GitRepository(host: host, owner: segments[1], name: segments[2])
        } catch let error as GitRepository.Invalid {
            throw Refusal(status: 400, reason: "\(error.description)")
        }
        var nameAsSent = segments[2]
        if nameAsSent.utf8.count > 4, nameAsSent.lowercased().hasSuffix(".git") { nameAsSent = String(nameAsSent.dropLast(4)) }
        let rest = segments[3...].joined(separator: "/")

        return RepositoryPath(repository: repository, ownerAsSent: segments[1], nameAsSent: nameAsSent, rest: rest,
                              query: query.map(String.init))
    }

    /// Parses `method` and `uri` (origin form, as received).
    /// - Parameter isConfiguredHost: whether a (lowercased) host is a configured git host.
    /// - Throws: `Refusal` with the status and reason to answer.
    package static func parse(method: String, uri: String, isConfiguredHost: (String) -> Bool) throws -> GitRoute {
        let parsed = try parseRepositoryPath(uri: uri, isConfiguredHost: isConfiguredHost)
        let (repository, nameAsSent, rest, query) = (parsed.repository, parsed.nameAsSent, parsed.rest, parsed.query)
        if isLFS(rest: rest) {
            // Served by `LFSRouter` where sessions exist; anywhere else there is none to use.
            throw Refusal(status: 403, reason: "Git LFS for \(repository) needs a session that covers it", repository: repository)
        }
        func make(_ service: GitService, _ endpoint: Endpoint) -> GitRoute {
            GitRoute(repository: repository, service: service, endpoint: endpoint, ownerAsSent: parsed.ownerAsSent, nameAsSent: nameAsSent)
        }
        switch rest {
        case "info/refs":
            guard method == "GET" || method == "HEAD" else {
                throw Refusal(status: 405, reason: "info/refs takes GET, not \(method)", repository: repository)
            }
            guard let query, query.hasPrefix("service=") else {
                throw Refusal(status: 404, reason: "only git smart HTTP is supported (info/refs needs ?service=git-upload-pack or git-receive-pack)", repository: repository)
            }
            let name = String(query.dropFirst("service=".count))
            if name == "git-upload-archive" {
                throw Refusal(status: 403, reason: "git-upload-archive is not offered", service: name, repository: repository)
            }
            guard let service = GitService(rawValue: name) else {
                throw Refusal(status: 404, reason: "unknown git service; only git-upload-pack and git-receive-pack are offered", repository: repository)
            }
            return make(service, .advertisement)
        case GitService.uploadPack.rawValue, GitService.receivePack.rawValue:
            let service = GitService(rawValue: rest)!
            guard method == "POST" else {
                throw Refusal(status: 405, reason: "\(rest) takes POST, not \(method)", service: rest, repository: repository)
            }
            guard query == nil || query == "" else {
                throw Refusal(status: 400, reason: "\(rest) takes no query string", service: rest, repository: repository)
            }
            return make(service, .rpc)
        case "git-upload-archive":
            throw Refusal(status: 403, reason: "git-upload-archive is not offered", service: rest, repository: repository)
        default:
            throw Refusal(status: 404, reason: "only git smart HTTP endpoints are served (info/refs, git-upload-pack, git-receive-pack)", repository: repository)
        }
    }
}
