@testable import Gateway
import Foundation
import NIOCore
import NIOHTTP1
import XCTest
@testable import GatewayCore

/// The GitHub API route (`@github-api`, `github-session HOST`): what a session may do on
/// the REST API, row by row, for read and rw sessions; and the router around it: the
/// client's session token picks the session, the real token goes upstream, refusals are
/// GitHub-style JSON and audited, and no token reaches an answer or an audit line.
final class GitHubAPIRouteTests: XCTestCase {
    static let real = Secret("ghp_REALupstreamTOKEN_0123456789abcdef")
    static let realText = "ghp_REALupstreamTOKEN_0123456789abcdef"
    let readToken = "airlock_s_" + String(repeating: "r", count: 43)
    let rwToken = "airlock_s_" + String(repeating: "w", count: 43)
    var sink: MemoryAuditSink!

    override func setUp() {
        sink = MemoryAuditSink()
    }

    static let readScope = SessionScope([try! ScopeEntry(parsing: "Owner/Repo"), try! ScopeEntry(parsing: "ghe.example.com/owner/other:rw")])
    static let rwScope = SessionScope([try! ScopeEntry(parsing: "owner/repo:rw")])

    // MARK: The scope, row by row

    /// `nil` is allowed; a string is the refusal's reason.
    struct Row {
        let method: String
        let path: String
        let read: String?
        let rw: String?
    }

    static let outsideRepos = "(allowed: /repos/OWNER/REPO/…, /user, /rate_limit, /meta)"
    static let notAWrite = "is not one of the writes airlock passes (pull requests, issues, their comments and reviews)"
    static let notARepo = "does not name a repository as GitHub writes it (OWNER/REPO of ASCII letters, digits, `.`, `_`, `-`, without `.git`)"

    static func readOnly(_ write: String) -> String {
        "this session has read-only access to github.com/owner/repo; \(write) needs --repo github.com/owner/repo:rw"
    }

    static let rows: [Row] = [
        // Reads of a covered repository, whatever the case of its name, with anything below it.
        Row(method: "GET", path: "/repos/owner/repo", read: nil, rw: nil),
        Row(method: "GET", path: "/repos/Owner/REPO/pulls", read: nil, rw: nil),
        Row(method: "HEAD", path: "/repos/owner/repo/contents/docs/a%20b.md", read: nil, rw: nil),
        Row(method: "GET", path: "/repos/owner/repo/issues/7/comments", read: nil, rw: nil),
        Row(method: "GET", path: "/repos/owner/repo/actions/runs", read: nil, rw: nil),
        // The repository-independent reads tools need.
        Row(method: "GET", path: "/user", read: nil, rw: nil),
        Row(method: "GET", path: "/rate_limit", read: nil, rw: nil),
        Row(method: "HEAD", path: "/meta", read: nil, rw: nil),
        // The documented writes: rw only.
        Row(method: "POST", path: "/repos/owner/repo/pulls", read: readOnly("POST /repos/{owner}/{repo}/pulls"), rw: nil),
        Row(method: "PATCH", path: "/repos/Owner/Repo/pulls/12", read: readOnly("PATCH /repos/{owner}/{repo}/pulls/{number}"), rw: nil),
        Row(method: "POST", path: "/repos/owner/repo/pulls/12/comments", read: readOnly("POST /repos/{owner}/{repo}/pulls/{number}/comments"), rw: nil),
        Row(method: "PATCH", path: "/repos/owner/repo/pulls/comments/99", read: readOnly("PATCH /repos/{owner}/{repo}/pulls/comments/{number}"), rw: nil),
        Row(method: "POST", path: "/repos/owner/repo/pulls/12/reviews", read: readOnly("POST /repos/{owner}/{repo}/pulls/{number}/reviews"), rw: nil),
        Row(method: "POST", path: "/repos/owner/repo/issues", read: readOnly("POST /repos/{owner}/{repo}/issues"), rw: nil),
        Row(method: "PATCH", path: "/repos/owner/repo/issues/3", read: readOnly("PATCH /repos/{owner}/{repo}/issues/{number}"), rw: nil),
        Row(method: "POST", path: "/repos/owner/repo/issues/3/comments", read: readOnly("POST /repos/{owner}/{repo}/issues/{number}/comments"), rw: nil),
        Row(method: "PATCH", path: "/repos/owner/repo/issues/comments/99", read: readOnly("PATCH /repos/{owner}/{repo}/issues/comments/{number}"), rw: nil),
        // Other repositories: another name, another owner, the same name on another host.
        Row(method: "GET", path: "/repos/owner/repo2", read: "this session does not cover github.com/owner/repo2", rw: "this session does not cover github.com/owner/repo2"),
        Row(method: "GET", path: "/repos/owner/other", read: "this session does not cover github.com/owner/other", rw: "this session does not cover github.com/owner/other"),
        Row(method: "POST", path: "/repos/someone/repo/pulls", read: "this session does not cover github.com/someone/repo", rw: "this session does not cover github.com/someone/repo"),
        // Encoding tricks.
        Row(method: "GET", path: "/repos/%6Fwner/repo", read: "\"/repos/%6Fwner/repo\" \(notARepo)", rw: "\"/repos/%6Fwner/repo\" \(notARepo)"),
        Row(method: "GET", path: "/repos/owner/rep%6F/pulls", read: "\"/repos/owner/rep%6F/pulls\" \(notARepo)", rw: "\"/repos/owner/rep%6F/pulls\" \(notARepo)"),
        Row(method: "GET", path: "/repos/owner/repo.git", read: "\"/repos/owner/repo.git\" \(notARepo)", rw: "\"/repos/owner/repo.git\" \(notARepo)"),
        Row(method: "GET", path: "/repos//owner/repo", read: "\"/repos//owner/repo\" has an empty segment (`//` or a trailing `/`); write the path as GitHub documents it",
            rw: "\"/repos//owner/repo\" has an empty segment (`//` or a trailing `/`); write the path as GitHub documents it"),
        Row(method: "POST", path: "/repos/owner/repo/pulls/", read: "\"/repos/owner/repo/pulls/\" has an empty segment (`//` or a trailing `/`); write the path as GitHub documents it",
            rw: "\"/repos/owner/repo/pulls/\" has an empty segment (`//` or a trailing `/`); write the path as GitHub documents it"),
        Row(method: "GET", path: "/repos/owner/repo/../../orgs/owner", read: "\"/repos/owner/repo/../../orgs/owner\" has a `.` or `..` segment",
            rw: "\"/repos/owner/repo/../../orgs/owner\" has a `.` or `..` segment"),
        Row(method: "PATCH", path: "/repos/owner/repo/pulls/%31", read: "PATCH \"/repos/owner/repo/pulls/%31\" \(notAWrite)", rw: "PATCH \"/repos/owner/repo/pulls/%31\" \(notAWrite)"),
        Row(method: "PATCH", path: "/repos/owner/repo/pulls/1x", read: "PATCH \"/repos/owner/repo/pulls/1x\" \(notAWrite)", rw: "PATCH \"/repos/owner/repo/pulls/1x\" \(notAWrite)"),
        Row(method: "POST", path: "/repos/owner/repo/Pulls", read: "POST \"/repos/owner/repo/Pulls\" \(notAWrite)", rw: "POST \"/repos/owner/repo/Pulls\" \(notAWrite)"),
        Row(method: "GET", path: "/REPOS/owner/repo", read: "GET \"/REPOS/owner/repo\" is outside the session's repositories \(outsideRepos)",
            rw: "GET \"/REPOS/owner/repo\" is outside the session's repositories \(outsideRepos)"),
        Row(method: "GET", path: "", read: "the GitHub API root is not served; paths start at /repos/OWNER/REPO", rw: "the GitHub API root is not served; paths start at /repos/OWNER/REPO"),
        // Outside any repository.
        Row(method: "GET", path: "/orgs/owner", read: "GET \"/orgs/owner\" is outside the session's repositories \(outsideRepos)",
            rw: "GET \"/orgs/owner\" is outside the session's repositories \(outsideRepos)"),
        Row(method: "GET", path: "/user/repos", read: "GET \"/user/repos\" is outside the session's repositories \(outsideRepos)",
            rw: "GET \"/user/repos\" is outside the session's repositories \(outsideRepos)"),
        Row(method: "POST", path: "/user/repos", read: "POST \"/user/repos\" is outside the session's repositories \(outsideRepos)",
            rw: "POST \"/user/repos\" is outside the session's repositories \(outsideRepos)"),
        Row(method: "PATCH", path: "/user", read: "PATCH \"/user\" is not allowed; only GET of \"/user\" is", rw: "PATCH \"/user\" is not allowed; only GET of \"/user\" is"),
        Row(method: "GET", path: "/search/code", read: "GET \"/search/code\" is outside the session's repositories \(outsideRepos)",
            rw: "GET \"/search/code\" is outside the session's repositories \(outsideRepos)"),
        Row(method: "GET", path: "/repos/owner", read: "GET \"/repos/owner\" is outside the session's repositories \(outsideRepos)",
            rw: "GET \"/repos/owner\" is outside the session's repositories \(outsideRepos)"),
        // GraphQL, DELETE.
        Row(method: "POST", path: "/graphql", read: graphql, rw: graphql),
        Row(method: "GET", path: "/graphql", read: graphql, rw: graphql),
        Row(method: "DELETE", path: "/repos/owner/repo", read: delete, rw: delete),
        Row(method: "DELETE", path: "/repos/owner/repo/issues/comments/1", read: delete, rw: delete),
        // Administration, read or write.
        Row(method: "GET", path: "/repos/owner/repo/hooks", read: admin("hooks"), rw: admin("hooks")),
        Row(method: "POST", path: "/repos/owner/repo/hooks", read: admin("hooks"), rw: admin("hooks")),
        Row(method: "PUT", path: "/repos/owner/repo/collaborators/someone", read: admin("collaborators"), rw: admin("collaborators")),
        Row(method: "POST", path: "/repos/owner/repo/keys", read: admin("keys"), rw: admin("keys")),
        Row(method: "GET", path: "/repos/owner/repo/actions/secrets", read: admin("actions/secrets"), rw: admin("actions/secrets")),
        Row(method: "PUT", path: "/repos/owner/repo/actions/secrets/TOKEN", read: admin("actions/secrets"), rw: admin("actions/secrets")),
        Row(method: "GET", path: "/repos/Owner/Repo/environments/prod/secrets", read: "/repos/Owner/Repo/environments is repository administration, which the GitHub API route never passes",
            rw: "/repos/Owner/Repo/environments is repository administration, which the GitHub API route never passes"),
        // Writes that are not on the list.
        Row(method: "PUT", path: "/repos/owner/repo/pulls/12/merge", read: "PUT \"/repos/owner/repo/pulls/12/merge\" \(notAWrite)", rw: "PUT \"/repos/owner/repo/pulls/12/merge\" \(notAWrite)"),
        Row(method: "POST", path: "/repos/owner/repo/git/refs", read: "POST \"/repos/owner/repo/git/refs\" \(notAWrite)", rw: "POST \"/repos/owner/repo/git/refs\" \(notAWrite)"),
        Row(method: "PUT", path: "/repos/owner/repo/contents/a.txt", read: "PUT \"/repos/owner/repo/contents/a.txt\" \(notAWrite)", rw: "PUT \"/repos/owner/repo/contents/a.txt\" \(notAWrite)"),
        Row(method: "PATCH", path: "/repos/owner/repo", read: "PATCH \"/repos/owner/repo\" \(notAWrite)", rw: "PATCH \"/repos/owner/repo\" \(notAWrite)"),
        Row(method: "POST", path: "/repos/owner/repo/releases", read: "POST \"/repos/owner/repo/releases\" \(notAWrite)", rw: "POST \"/repos/owner/repo/releases\" \(notAWrite)"),
        Row(method: "POST", path: "/repos/owner/repo/pulls/12/requested_reviewers", read: "POST \"/repos/owner/repo/pulls/12/requested_reviewers\" \(notAWrite)",
            rw: "POST \"/repos/owner/repo/pulls/12/requested_reviewers\" \(notAWrite)"),
    ]

    static let graphql = "GraphQL is not served: airlock cannot prove a query read-only and limited to the session's repositories; use the REST API"
    static let delete = "DELETE is never allowed through the GitHub API route"
    static func admin(_ subtree: String) -> String {
        let owner = subtree == "environments" ? "Owner/Repo" : "owner/repo"
        return "/repos/\(owner)/\(subtree) is repository administration, which the GitHub API route never passes"
    }

    func testTheScopeRowByRow() {
        for row in Self.rows {
            for (scope, expected, kind) in [(Self.readScope, row.read, "read"), (Self.rwScope, row.rw, "rw")] {
                let decision = GitHubAPIScope.decide(method: row.method, path: row.path, scope: scope, host: "github.com")
                switch (decision, expected) {
                case (.allow, nil):
                    break
                case let (.deny(reason), expected?):
                    XCTAssertEqual(reason, expected, "\(kind) \(row.method) \(row.path)")
                case let (.allow, expected?):
                    XCTFail("\(kind) \(row.method) \(row.path) was allowed; expected the refusal \(expected)")
                case let (.deny(reason), nil):
                    XCTFail("\(kind) \(row.method) \(row.path) was refused (\(reason)); expected it allowed")
                }
            }
        }
    }

    func testTheScopeIsPerHost() {
        // The read session covers ghe.example.com/owner/other:rw; a route for that host allows
        // its writes, and the github.com repository is not covered there.
        let ghe = GitHubAPIScope.decide(method: "POST", path: "/repos/owner/other/pulls", scope: Self.readScope, host: "ghe.example.com")
        XCTAssertEqual(ghe, .allow(repository: try GitRepository(host: "ghe.example.com", owner: "owner", name: "other")))
        XCTAssertEqual(GitHubAPIScope.decide(method: "GET", path: "/repos/owner/repo", scope: Self.readScope, host: "ghe.example.com"),
                       .deny(reason: "this session does not cover ghe.example.com/owner/repo"))
        XCTAssertEqual(GitHubAPIScope.decide(method: "GET", path: "/repos/owner/repo", scope: SessionScope([]), host: "github.com"),
                       .deny(reason: "this session does not cover github.com/owner/repo"), "an empty scope covers nothing")
    }

    // MARK: The route line and the preset

    func testThePresetAndTheRouteLine() throws {
        let policy = try Policy.parse("@github-api\n", source: "p")
        let route = try XCTUnwrap(policy.route(named: "github"))
        XCTAssertEqual(route.url, "https://api.github.com")
        XCTAssertEqual(route.sessionHost, "github.com")
        XCTAssertEqual(route.headers, [])
        XCTAssertEqual(route.secretNames, [], "the route needs no secret")
        XCTAssertTrue(policy.missingRouteSecrets(known: []).isEmpty)
        XCTAssertEqual(policy.explainRoutes(), [
            "routes:",
            "  http://airlock.internal/api/github/… -> https://api.github.com/… (line 1); sends the git session's upstream token, only for the session's repositories on github.com (GitHub API scope); client credential headers are removed; redirects are not followed",
        ])
        let token = Secret("airlock_s_" + String(repeating: "t", count: 43))
        XCTAssertEqual(RoutePreset.environment(for: policy.routes), ["GITHUB_API_URL": "http://airlock.internal/api/github"])
        XCTAssertEqual(RoutePreset.environment(for: policy.routes, sessionToken: token), [
            "GITHUB_API_URL": "http://airlock.internal/api/github",
            "GITHUB_TOKEN": "airlock_s_" + String(repeating: "t", count: 43),
            "GH_ENTERPRISE_TOKEN": "airlock_s_" + String(repeating: "t", count: 43),
        ])
        let enterprise = try Policy.parse("route ghe https://ghe.example.com/api/v3 github-session GHE.example.com budget 10\n", source: "p")
        let ghe = try XCTUnwrap(enterprise.route(named: "ghe"))
        XCTAssertEqual(ghe.sessionHost, "ghe.example.com")
        XCTAssertEqual(ghe.basePath, "/api/v3")
        XCTAssertEqual(ghe.budget, 10)
        XCTAssertEqual(RoutePreset.environment(for: enterprise.routes, sessionToken: token), [:], "a route written by hand sets no variables")
    }

    func testBadGitHubSessionLinesAreOneLineErrors() {
        let cases: [(String, String)] = [
            ("route g https://api.github.com github-session github.com header k=secret:s",
             "p:1: route g: a github-session route sends the session's upstream token; it sets no header"),
            ("route g https://api.github.com github-session github.com github-session ghe.example.com", "p:1: route g: github-session is given twice"),
            ("route g https://api.github.com github-session git_hub.com", "p:1: route g: github-session: git host \"git_hub.com\" may only contain ASCII letters, digits, `.` and `-`"),
            ("route g http://api.github.com github-session github.com", "p:1: route g: http://api.github.com: the upstream must start with https:// (the credential never travels unencrypted)"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try Policy.parse(text + "\n", source: "p"), text) { error in
                XCTAssertEqual(String(describing: error), expected, text)
            }
        }
    }

    // MARK: The router

    private func router(_ policyText: String = "@github-api\n") throws -> RouteRouter {
        let audit = AuditLog(sink: sink)
        let store = PolicyStore(initial: try Policy.parse(policyText, source: "policy"), path: nil, extra: nil, audit: audit)
        func grant(_ id: String, _ scope: SessionScope) -> SessionCheck {
            .valid(SessionGrant(id: id, sandbox: "sbx", scope: scope, upstreamToken: Self.real))
        }
        let sessions = FakeSessions(answers: [readToken: grant("aaaaaaaaaaaa", Self.readScope), rwToken: grant("bbbbbbbbbbbb", Self.rwScope)])
        return RouteRouter(policy: store, secrets: SecretStore(), trust: try RouteUpstreamTrust(caFile: nil), audit: audit, sessions: sessions)
    }

    private func head(_ method: HTTPMethod, _ uri: String, _ headers: [(String, String)] = []) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "Host", value: "airlock.internal")
        for (n, v) in headers { head.headers.add(name: n, value: v) }
        return head
    }

    private func exchange(_ route: HTTPRoute, file: StaticString = #filePath, line: UInt = #line) -> UpstreamExchange? {
        guard case let .forward(exchange) = route else {
            XCTFail("expected a forward, got \(route)", file: file, line: line)
            return nil
        }
        return exchange
    }

    private func refusal(_ route: HTTPRoute, file: StaticString = #filePath, line: UInt = #line) -> LocalResponse? {
        guard case let .respond(response) = route else {
            XCTFail("expected a refusal", file: file, line: line)
            return nil
        }
        return response
    }

    func testAPullRequestGoesUpstreamWithTheSessionsRealTokenOnly() throws {
        let router = try router()
        for authorization in ["token \(rwToken)", "Bearer \(rwToken)", "Basic " + Base64.encode(Array("x-access-token:\(rwToken)".utf8))] {
            let e = try XCTUnwrap(exchange(router.decide(head(.POST, "/api/github/repos/Owner/Repo/pulls?x=1", [
                ("Authorization", authorization), ("Cookie", "c=1"), ("Accept", "application/vnd.github+json"),
                ("X-GitHub-Api-Version", "2022-11-28"), ("Content-Type", "application/json"),
            ]), sandbox: "sbx")), authorization)
            XCTAssertEqual(e.head.uri, "/repos/Owner/Repo/pulls?x=1", "the path and query go upstream as the client wrote them")
            XCTAssertEqual(e.head.headers["authorization"], ["Bearer \(Self.realText)"], "only the session's real token goes upstream")
            XCTAssertEqual(e.head.headers["host"], ["api.github.com"])
            XCTAssertEqual(e.head.headers["cookie"], [])
            XCTAssertEqual(e.head.headers["accept"], ["application/vnd.github+json"])
            XCTAssertEqual(e.head.headers["x-github-api-version"], ["2022-11-28"])
            XCTAssertTrue(e.gatewayHeaders.contains("authorization"), "Connection: authorization cannot remove the real token")
            XCTAssertEqual(e.target.host, "api.github.com")
            e.completion?(ExchangeOutcome(status: 201, bytesUp: 40, bytesDown: 300, milliseconds: 12))
        }
        let line = try XCTUnwrap(sink.lines.last)
        XCTAssertTrue(line.contains(#""event":"api_allow""#) && line.contains(#""session":"bbbbbbbbbbbb""#) && line.contains(#""route":"github""#)
                      && line.contains(#""method":"POST""#) && line.contains(#""path":"/repos/Owner/Repo/pulls""#) && line.contains(#""status":201"#), line)
    }

    func testRefusalsAreGitHubStyleJSONAndAudited() throws {
        let router = try router()
        let cases: [(HTTPRequestHead, Int, String)] = [
            (head(.POST, "/api/github/repos/owner/repo/pulls"), 401,
             "airlock: route github: no session token; send the git session's token as `Authorization: token …` (airlock run --repo sets GITHUB_TOKEN to it)"),
            (head(.GET, "/api/github/user", [("Authorization", "token ghp_someoneElsesToken")]), 401, "airlock: route github: the session token is malformed"),
            (head(.GET, "/api/github/user", [("Authorization", "token airlock_s_" + String(repeating: "u", count: 43))]), 401,
             "airlock: route github: the session token is not known to this gateway"),
            (head(.POST, "/api/github/repos/owner/repo/pulls", [("Authorization", "token \(readToken)")]), 403,
             "airlock: route github: this session has read-only access to github.com/owner/repo; POST /repos/{owner}/{repo}/pulls needs --repo github.com/owner/repo:rw"),
            (head(.GET, "/api/github/repos/owner/elsewhere", [("Authorization", "token \(rwToken)")]), 403,
             "airlock: route github: this session does not cover github.com/owner/elsewhere"),
            (head(.POST, "/api/github/graphql", [("Authorization", "token \(rwToken)")]), 403, "airlock: route github: \(Self.graphql)"),
            (head(.GET, "/api/github/repos/owner%2Frepo/pulls", [("Authorization", "token \(rwToken)")]), 400,
             "airlock: route github: `.`, `..` and escaped dots or slashes are not allowed in the path"),
        ]
        for (request, status, message) in cases {
            let r = try XCTUnwrap(refusal(router.decide(request, sandbox: "sbx")), request.uri)
            XCTAssertEqual(Int(r.status.code), status, request.uri)
            XCTAssertEqual(r.headers["content-type"], ["application/json; charset=utf-8"], request.uri)
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: String], r.body)
            XCTAssertEqual(object, ["message": message], request.uri)
        }
        XCTAssertEqual(sink.lines.count, cases.count, "one audit line per refusal")
        XCTAssertTrue(sink.lines.allSatisfy { $0.contains(#""event":"api_deny""#) }, "\(sink.lines)")
        XCTAssertTrue(sink.lines[4].contains(#""session":"bbbbbbbbbbbb""#) && sink.lines[4].contains(#""status":403"#), sink.lines[4])
        for line in sink.lines {
            for secret in [Self.realText, readToken, rwToken, "ghp_someoneElsesToken"] {
                XCTAssertFalse(line.contains(secret), line)
            }
        }
    }

    func testMethodOverridesNeverGoUpstream() throws {
        let router = try router()
        let e = try XCTUnwrap(exchange(router.decide(head(.POST, "/api/github/repos/owner/repo/issues", [
            ("Authorization", "token \(rwToken)"), ("X-HTTP-Method-Override", "DELETE"), ("X-HTTP-Method", "DELETE"),
            ("X-Method-Override", "DELETE"), ("Content-Type", "application/x-www-form-urlencoded"),
        ]), sandbox: "sbx")))
        for name in ["x-http-method-override", "x-http-method", "x-method-override"] {
            XCTAssertEqual(e.head.headers[name], [], name)
        }
        XCTAssertEqual(e.head.headers["content-type"], ["application/json"], "a form body (which could carry _method) goes up as JSON")
        XCTAssertEqual(e.head.method, .POST)
        for query in ["?_method=DELETE", "?x=1&%5Fmethod=delete"] {
            let r = try XCTUnwrap(refusal(router.decide(head(.POST, "/api/github/repos/owner/repo/issues" + query, [("Authorization", "token \(rwToken)")]), sandbox: "sbx")))
            XCTAssertEqual(r.status.code, 403, query)
            XCTAssertEqual(r.body, #"{"message":"airlock: route github: a `_method` query parameter (a method override) is not passed"}"# + "\n", query)
        }
    }

    func testASessionFromAnotherSandboxIsRefused() throws {
        let r = try XCTUnwrap(refusal(try router().decide(head(.GET, "/api/github/user", [("Authorization", "token \(rwToken)")]), sandbox: "other")))
        XCTAssertEqual(r.status.code, 401)
        XCTAssertEqual(r.body, #"{"message":"airlock: route github: the session token was issued for another sandbox"}"# + "\n")
        XCTAssertTrue(sink.lines.last?.contains("session issued for sandbox sbx presented on other") == true, "\(sink.lines)")
    }

    func testWithoutSessionsEveryRequestIsRefused() throws {
        let audit = AuditLog(sink: sink)
        let store = PolicyStore(initial: try Policy.parse("@github-api\n", source: "p"), path: nil, extra: nil, audit: audit)
        let router = RouteRouter(policy: store, secrets: SecretStore(), trust: try RouteUpstreamTrust(caFile: nil), audit: audit)
        let r = try XCTUnwrap(refusal(router.decide(head(.GET, "/api/github/user", [("Authorization", "token \(rwToken)")]), sandbox: "sbx")))
        XCTAssertEqual(r.status.code, 401)
        XCTAssertEqual(r.body, #"{"message":"airlock: route github: this gateway holds no git sessions"}"# + "\n")
    }

    func testAnUpstreamRedirectIsRefusedInJSON() throws {
        let e = try XCTUnwrap(exchange(try router().decide(head(.GET, "/api/github/repos/owner/repo", [("Authorization", "token \(readToken)")]), sandbox: "sbx")))
        var response = HTTPResponseHead(version: .http1_1, status: .movedPermanently)
        response.headers.add(name: "Location", value: "https://api.github.com/repositories/1")
        let replaced = try XCTUnwrap(e.interceptResponse?(response))
        XCTAssertEqual(replaced.status.code, 502)
        XCTAssertEqual(replaced.body, #"{"message":"airlock: route github: the upstream answered with a redirect (HTTP 301); airlock does not follow redirects"}"# + "\n")
    }
}
