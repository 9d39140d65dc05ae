import GatewayCore
/// One Git LFS request from the sandbox, parsed and validated.
///
/// - The LFS API under a repository, `http://airlock.internal/git/HOST/OWNER/REPO[.git]/info/lfs/…`
///   (the path `git-lfs` derives from the remote's URL): `POST objects/batch`, and the
///   locking API `GET locks`, `POST locks`, `POST locks/verify`, `POST locks/ID/unlock`.
///   The repository part is validated exactly as for git (`GitRoute.parseRepositoryPath`).
/// - A transfer, `http://airlock.internal/lfs/ID`: an action the gateway handed out in a
///   batch response (`LFSActionTable`).
///
/// Everything else under `info/lfs` is 404, the wrong method 405.
package enum LFSRoute: Sendable, Equatable {
    /// `POST …/info/lfs/objects/batch`.
    case batch(GitRoute.RepositoryPath)
    /// The locking API; `needs` is the access the request takes (`rw` to create or unlock).
    case locks(GitRoute.RepositoryPath, needs: RepoAccess)
    /// `/lfs/ID`: an action of an earlier batch response.
    case transfer(id: String)

    /// The path prefix of transfers.
    package static let transferPrefix = "/lfs/"

    /// Whether `uri` is an LFS request: a transfer, or a path under a repository's `info/lfs`.
    /// Only the shape is looked at; `parse` validates.
    package static func matches(_ uri: String) -> Bool {
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        if path.hasPrefix(transferPrefix) { return true }
        guard path.hasPrefix(GitRoute.prefix) else { return false }
        let segments = path.dropFirst(GitRoute.prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        return segments.count >= 5 && segments[3] == "info" && segments[4] == "lfs"
    }

    /// The upstream path for an API request: `BASE/OWNER/REPO.git/info/lfs/…[?query]`.
    package static func upstreamURI(_ path: GitRoute.RepositoryPath, basePath: String) -> String {
        let base = basePath.hasSuffix("/") ? String(basePath.dropLast()) : basePath
        let query = path.query.map { "?" + $0 } ?? ""
        return "\(base)/\(path.ownerAsSent)/\(path.nameAsSent).git/\(path.rest)\(query)"
    }

    /// Parses `method` and `uri` (origin form, as received).
    /// - Throws: `GitRoute.Refusal` with the status and reason to answer.
    package static func parse(method: String, uri: String, isConfiguredHost: (String) -> Bool) throws -> LFSRoute {
        if uri.hasPrefix(transferPrefix) {
            let id = String(uri.dropFirst(transferPrefix.count))
            guard LFSActionTable.isWellFormedID(id) else {
                throw GitRoute.Refusal(status: 404, reason: "no such LFS transfer (the id is malformed)")
            }
            guard ["GET", "PUT", "POST"].contains(method) else {
                throw GitRoute.Refusal(status: 405, reason: "LFS transfers take GET, PUT or POST, not \(method)")
            }
            return .transfer(id: id)
        }
        let path = try GitRoute.parseRepositoryPath(uri: uri, isConfiguredHost: isConfiguredHost)
        let repository = path.repository
        let rest = path.rest
        func only(_ allowed: String) throws {
            guard method == allowed else {
                throw GitRoute.Refusal(status: 405, reason: "\(rest) takes \(allowed), not \(method)", repository: repository)
            }
        }
        func noQuery() throws {
            guard path.query == nil || path.query == "" else {
                throw GitRoute.Refusal(status: 400, reason: "\(rest) takes no query string", repository: repository)
            }
        }
        switch rest {
        case "info/lfs/objects/batch":
            try only("POST")
            try noQuery()
            return .batch(path)
        case "info/lfs/locks":
            guard method == "GET" || method == "POST" else {
                throw GitRoute.Refusal(status: 405, reason: "\(rest) takes GET or POST, not \(method)", repository: repository)
            }
            if method == "POST" { try noQuery() }
            return .locks(path, needs: method == "GET" ? .read : .rw)
        case "info/lfs/locks/verify":
            try only("POST")
            try noQuery()
            return .locks(path, needs: .read)
        default:
            let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
            if parts.count == 5, parts[2] == "locks", parts[4] == "unlock", isLockID(parts[3]) {
                try only("POST")
                try noQuery()
                return .locks(path, needs: .rw)
            }
            throw GitRoute.Refusal(
                status: 404, reason: "not a Git LFS endpoint airlock serves (objects/batch, locks, locks/verify, locks/ID/unlock)",
                repository: repository)
        }
    }

    /// A lock id as servers make them: 1–128 of `[A-Za-z0-9._-]`.
    private static func isLockID(_ text: Substring) -> Bool {
        !text.isEmpty && text.utf8.count <= 128 && text.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }
}
