@testable import Gateway
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import GatewayCore

/// A session authority with fixed answers per token.
struct FakeSessions: SessionAuthority {
    var answers: [String: SessionCheck]
    func check(token: String, sandbox: String) -> SessionCheck {
        if case let .valid(grant)? = answers[token], grant.sandbox != sandbox {
            return .otherSandbox(id: grant.id, issuedFor: grant.sandbox)
        }
        return answers[token] ?? (SessionToken.isWellFormed(token) ? .unknown : .malformed)
    }
}

final class GitRouterTests: XCTestCase {
    static let real = Secret("ghp_REALupstreamTOKEN_0123456789abcdef")
    let readToken = "airlock_s_" + String(repeating: "r", count: 43)
    let rwToken = "airlock_s_" + String(repeating: "w", count: 43)
    let expiredToken = "airlock_s_" + String(repeating: "e", count: 43)
    let revokedToken = "airlock_s_" + String(repeating: "v", count: 43)
    var sink: MemoryAuditSink!
    var router: GitRouter!

    override func setUpWithError() throws {
        sink = MemoryAuditSink()
        let upstreams = try GitUpstreams(mappings: [
            GitUpstreams.Mapping(parsing: "github.com=https://127.0.0.1:9443/base"),
            GitUpstreams.Mapping(parsing: "ghe.example.com"),
        ])
        func grant(_ id: String, _ entries: [String]) throws -> SessionCheck {
            .valid(SessionGrant(id: id, sandbox: "sbx", scope: SessionScope(try entries.map { try ScopeEntry(parsing: $0) }), upstreamToken: Self.real))
        }
        let fake = FakeSessions(answers: [
            readToken: try grant("aaaaaaaaaaaa", ["owner/repo"]),
            rwToken: try grant("bbbbbbbbbbbb", ["owner/repo:rw"]),
            expiredToken: .expired(id: "cccccccccccc"),
            revokedToken: .revoked(id: "dddddddddddd"),
        ])
        router = GitRouter(upstreams: upstreams, sessions: fake, audit: AuditLog(sink: sink))
    }

    private func head(_ method: HTTPMethod = .GET, _ uri: String, _ headers: [(String, String)] = []) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "Host", value: "airlock.internal")
        for (n, v) in headers { head.headers.add(name: n, value: v) }
        return head
    }

    private func bearer(_ token: String) -> (String, String) { ("Authorization", "Bearer \(token)") }

    private func refusal(_ route: HTTPRoute, file: StaticString = #filePath, line: UInt = #line) -> LocalResponse? {
        guard case let .respond(response) = route else {
            XCTFail("expected a local refusal", file: file, line: line)
            return nil
        }
        return response
    }

    private func exchange(_ route: HTTPRoute, file: StaticString = #filePath, line: UInt = #line) -> UpstreamExchange? {
        guard case let .forward(exchange) = route else {
            XCTFail("expected a forward, got \(route)", file: file, line: line)
            return nil
        }
        return exchange
    }

    let adv = "/git/github.com/owner/repo/info/refs?service=git-upload-pack"
    let pushAdv = "/git/github.com/owner/repo/info/refs?service=git-receive-pack"

    func testMissingTokenIs401WithChallenge() throws {
        let r = try XCTUnwrap(refusal(router.decide(head(.GET, adv), sandbox: "sbx")))
        XCTAssertEqual(r.status, .unauthorized)
        XCTAssertEqual(r.headers["WWW-Authenticate"], ["Basic realm=\"airlock\""])
        XCTAssertEqual(r.headers["Content-Type"].first, "text/plain; charset=utf-8")
        XCTAssertTrue(r.body.hasPrefix("airlock: no session token"))
        XCTAssertTrue(sink.lines.last!.contains("\"event\":\"git_deny\""))
        XCTAssertTrue(sink.lines.last!.contains("\"reason\":\"missing session token\""))
        XCTAssertTrue(sink.lines.last!.contains("\"status\":401"))
        XCTAssertTrue(sink.lines.last!.contains("\"repo\":\"github.com/owner/repo\""))
    }

    func testMalformedUnknownExpiredRevokedAre401() throws {
        let cases: [(String, String)] = [
            ("garbage", "airlock: the session token is malformed\n"),
            ("airlock_s_" + String(repeating: "u", count: 43), "airlock: the session token is not known to this gateway\n"),
            (expiredToken, "airlock: the session has expired\n"),
            (revokedToken, "airlock: the session was revoked\n"),
        ]
        for (token, body) in cases {
            let r = try XCTUnwrap(refusal(router.decide(head(.GET, adv, [bearer(token)]), sandbox: "sbx")))
            XCTAssertEqual(r.status, .unauthorized, token)
            XCTAssertEqual(r.body, body)
            XCTAssertEqual(r.headers["WWW-Authenticate"].count, 1)
        }
        XCTAssertTrue(sink.lines.contains { $0.contains("\"session\":\"cccccccccccc\"") && $0.contains("the session has expired") })
    }

    func testBasicAuthWithTokenAsPasswordIsAccepted() throws {
        let basic = "Basic " + Base64.encode(Array("x:\(readToken)".utf8))
        XCTAssertNotNil(exchange(router.decide(head(.GET, adv, [("Authorization", basic)]), sandbox: "sbx")))
    }

    func testTokenFromAnotherSandboxIs401AndAudited() throws {
        let r = try XCTUnwrap(refusal(router.decide(head(.GET, adv, [bearer(readToken)]), sandbox: "other")))
        XCTAssertEqual(r.status, .unauthorized)
        XCTAssertEqual(r.body, "airlock: the session token was issued for another sandbox\n")
        let line = sink.lines.last!
        XCTAssertTrue(line.contains("\"sandbox\":\"other\""))
        XCTAssertTrue(line.contains("\"reason\":\"session issued for sandbox sbx presented on other\""))
    }

    func testOutOfScopeAndReadOnlyPushAre403() throws {
        let other = try XCTUnwrap(refusal(router.decide(head(.GET, "/git/github.com/owner/secret/info/refs?service=git-upload-pack", [bearer(rwToken)]), sandbox: "sbx")))
        XCTAssertEqual(other.status.code, 403)
        XCTAssertEqual(other.body, "airlock: this session does not cover github.com/owner/secret; ask for a session with --repo github.com/owner/secret\n")
        XCTAssertEqual(other.headers["WWW-Authenticate"], [])

        let pushAdvertisement = try XCTUnwrap(refusal(router.decide(head(.GET, pushAdv, [bearer(readToken)]), sandbox: "sbx")))
        XCTAssertEqual(pushAdvertisement.status.code, 403)
        XCTAssertEqual(pushAdvertisement.body, "airlock: this session has read-only access to github.com/owner/repo; pushing needs --repo github.com/owner/repo:rw\n")
        let pushRPC = try XCTUnwrap(refusal(router.decide(head(.POST, "/git/github.com/owner/repo/git-receive-pack", [bearer(readToken)]), sandbox: "sbx")))
        XCTAssertEqual(pushRPC.status.code, 403)
        XCTAssertTrue(sink.lines.last!.contains("\"service\":\"git-receive-pack\""))
        XCTAssertTrue(sink.lines.last!.contains("\"reason\":\"push with a read-only session\""))

        XCTAssertNotNil(exchange(router.decide(head(.POST, "/git/github.com/owner/repo/git-receive-pack", [bearer(rwToken)]), sandbox: "sbx")))
        XCTAssertNotNil(exchange(router.decide(head(.GET, "/git/github.com/OWNER/Repo.git/info/refs?service=git-upload-pack", [bearer(readToken)]), sandbox: "sbx")))
    }

    func testPathRefusalsComeBeforeAuth() throws {
        let lfs = try XCTUnwrap(refusal(router.decide(head(.POST, "/git/github.com/owner/repo.git/info/lfs/objects/batch"), sandbox: "sbx")))
        XCTAssertEqual(lfs.status.code, 403)
        XCTAssertEqual(lfs.body, "airlock: Git LFS for github.com/owner/repo needs a session that covers it\n")
        let traversal = try XCTUnwrap(refusal(router.decide(head(.GET, "/git/github.com/owner/%2e%2e/info/refs?service=git-upload-pack", [bearer(rwToken)]), sandbox: "sbx")))
        XCTAssertEqual(traversal.status, .badRequest)
        let dumb = try XCTUnwrap(refusal(router.decide(head(.GET, "/git/github.com/owner/repo/HEAD", [bearer(rwToken)]), sandbox: "sbx")))
        XCTAssertEqual(dumb.status, .notFound)
        let host = try XCTUnwrap(refusal(router.decide(head(.GET, "/git/evil.example/owner/repo/info/refs?service=git-upload-pack", [bearer(rwToken)]), sandbox: "sbx")))
        XCTAssertEqual(host.status, .notFound)
        XCTAssertEqual(host.body, "airlock: evil.example is not a configured git host\n")
    }

    func testForwardedHeadCarriesOnlyTheRealCredential() throws {
        let ex = try XCTUnwrap(exchange(router.decide(head(.POST, "/git/github.com/owner/repo.git/git-upload-pack", [
            bearer(rwToken),
            ("Authorization", "Basic " + Base64.encode(Array("x:\(rwToken)".utf8))),
            ("Cookie", "session=abc"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Git-Protocol", "version=2"),
            ("Content-Type", "application/x-git-upload-pack-request"),
            ("Accept", "application/x-git-upload-pack-result"),
            ("Content-Encoding", "gzip"),
            ("Accept-Encoding", "deflate, gzip"),
            ("User-Agent", "git/2.39.5"),
            ("Content-Length", "123"),
            ("X-Forwarded-For", "1.2.3.4"),
        ]), sandbox: "sbx")))
        let h = ex.head.headers
        XCTAssertEqual(h["Authorization"], ["Basic " + Base64.encode(Array("x-access-token:ghp_REALupstreamTOKEN_0123456789abcdef".utf8))])
        XCTAssertEqual(h["Host"], ["127.0.0.1:9443"])
        XCTAssertEqual(h["Cookie"], [])
        XCTAssertEqual(h["Proxy-Authorization"], [])
        XCTAssertEqual(h["X-Forwarded-For"], [])
        XCTAssertEqual(h["Git-Protocol"], ["version=2"])
        XCTAssertEqual(h["Content-Type"], ["application/x-git-upload-pack-request"])
        XCTAssertEqual(h["Accept"], ["application/x-git-upload-pack-result"])
        XCTAssertEqual(h["Content-Encoding"], ["gzip"])
        XCTAssertEqual(h["Accept-Encoding"], ["deflate, gzip"])
        XCTAssertEqual(h["User-Agent"], ["git/2.39.5"])
        XCTAssertEqual(h["Content-Length"], ["123"])
        XCTAssertEqual(ex.head.uri, "/base/owner/repo.git/git-upload-pack")
        XCTAssertEqual(ex.head.method, .POST)
        XCTAssertEqual(ex.target.host, "127.0.0.1")
        XCTAssertEqual(ex.target.port, 9443)
        XCTAssertNotNil(ex.target.tls)
        XCTAssertEqual(ex.target.address, try SocketAddress(ipAddress: "127.0.0.1", port: 9443))
        let flat = h.map { "\($0.name): \($0.value)" }.joined(separator: "\n")
        XCTAssertFalse(flat.contains(rwToken))
    }

    func testNamedUpstreamDefaultsToHTTPS443AndNoAddress() throws {
        let upstream = try XCTUnwrap(router.upstreams.upstream(for: "GHE.example.com"))
        XCTAssertEqual(upstream.host, "ghe.example.com")
        XCTAssertEqual(upstream.port, 443)
        XCTAssertEqual(upstream.hostHeader, "ghe.example.com")
        XCTAssertNil(upstream.address)
        XCTAssertEqual(upstream.basePath, "")
        // The session covers github.com/owner/repo only: the same owner/repo on another host is out of scope.
        let r = try XCTUnwrap(refusal(router.decide(head(.GET, "/git/ghe.example.com/owner/repo/info/refs?service=git-upload-pack", [bearer(rwToken)]), sandbox: "sbx")))
        XCTAssertEqual(r.status.code, 403)
    }

    func testUpstream401And3xxAreNeverPassedThrough() throws {
        let ex = try XCTUnwrap(exchange(router.decide(head(.GET, adv, [bearer(readToken)]), sandbox: "sbx")))
        let intercept = try XCTUnwrap(ex.interceptResponse)
        XCTAssertNil(intercept(HTTPResponseHead(version: .http1_1, status: .ok)))
        XCTAssertNil(intercept(HTTPResponseHead(version: .http1_1, status: .forbidden)))
        let r401 = try XCTUnwrap(intercept(HTTPResponseHead(version: .http1_1, status: .unauthorized)))
        XCTAssertEqual(r401.status, .badGateway)
        XCTAssertTrue(r401.body.hasPrefix("airlock: upstream rejected the gateway's credential for github.com"))
        XCTAssertEqual(r401.headers["WWW-Authenticate"], [])
        let r301 = try XCTUnwrap(intercept(HTTPResponseHead(version: .http1_1, status: .movedPermanently)))
        XCTAssertEqual(r301.status, .badGateway)
        XCTAssertTrue(r301.body.contains("airlock does not follow redirects"))
        ex.completion?(ExchangeOutcome(status: 502, bytesUp: 0, bytesDown: 0, milliseconds: 3))
        let line = sink.lines.last!
        XCTAssertTrue(line.contains("\"event\":\"git_deny\""))
        XCTAssertTrue(line.contains("redirect"))
    }

    func testCompletionAuditsAllowWithBytes() throws {
        let ex = try XCTUnwrap(exchange(router.decide(head(.POST, "/git/github.com/owner/repo/git-upload-pack", [bearer(readToken)]), sandbox: "sbx")))
        ex.completion?(ExchangeOutcome(status: 200, bytesUp: 321, bytesDown: 65536, milliseconds: 12))
        let line = sink.lines.last!
        for field in ["\"event\":\"git_allow\"", "\"sandbox\":\"sbx\"", "\"via\":\"git\"", "\"repo\":\"github.com/owner/repo\"",
                      "\"service\":\"git-upload-pack\"", "\"status\":200", "\"bytes_up\":321", "\"bytes_down\":65536", "\"ms\":12",
                      "\"session\":\"aaaaaaaaaaaa\""] {
            XCTAssertTrue(line.contains(field), "\(field) in \(line)")
        }
    }

    /// An upstream the policy refuses to dial (its address is private, say) is a refusal:
    /// the sandbox gets the 403 and the audit line is a `git_deny` with the reason, not a
    /// `git_allow` that failed.
    func testADialThePolicyRefusesIsAuditedAsADenial() throws {
        let loop = EmbeddedEventLoop()
        let dialer = EmbeddedDialer(loop: loop)
        dialer.failure = .refused(host: "127.0.0.1", reason: "private address 127.0.0.1 (no allow-private rule)")
        let client = EmbeddedChannel(loop: loop)
        var encoder = HTTPResponseEncoder.Configuration()
        encoder.automaticallySetFramingHeaders = false
        try client.pipeline.syncOperations.addHandler(HTTPResponseEncoder(configuration: encoder))
        try client.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        try client.pipeline.syncOperations.addHandler(HTTPForwarder(router: router, dialer: dialer, sandbox: "sbx", via: .http))
        try client.connect(to: SocketAddress(ipAddress: "169.254.200.2", port: 1)).wait()
        try client.writeInbound(ByteBuffer(string: "GET \(adv) HTTP/1.1\r\nHost: airlock.internal\r\nAuthorization: Bearer \(readToken)\r\n\r\n"))
        loop.run()
        let response = String(decoding: try GatewayHarness.drain(client).readableBytesView, as: UTF8.self)
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 403"), response)
        XCTAssertTrue(response.contains("airlock: 127.0.0.1 refused: private address 127.0.0.1 (no allow-private rule)"), response)
        let line = try XCTUnwrap(sink.lines.last)
        for field in ["\"event\":\"git_deny\"", "\"reason\":\"127.0.0.1 refused: private address 127.0.0.1 (no allow-private rule)\"",
                      "\"status\":403", "\"repo\":\"github.com/owner/repo\"", "\"session\":\"aaaaaaaaaaaa\""] {
            XCTAssertTrue(line.contains(field), "\(field) in \(line)")
        }
        XCTAssertFalse(sink.lines.contains { $0.contains("\"event\":\"git_allow\"") }, sink.lines.joined(separator: "\n"))
        _ = try? client.finish(acceptAlreadyClosed: true)
    }

    func testNoTokenInAnyAuditLine() throws {
        for token in [readToken, rwToken, expiredToken, revokedToken, "garbage-\(readToken)"] {
            for uri in [adv, pushAdv, "/git/github.com/owner/repo/git-upload-pack", "/git/github.com/x/y/info/refs?service=git-upload-pack"] {
                let route = router.decide(head(uri.hasSuffix("pack") ? .POST : .GET, uri, [bearer(token)]), sandbox: "sbx")
                if case let .forward(ex) = route { ex.completion?(ExchangeOutcome(status: 200, bytesUp: 1, bytesDown: 1, milliseconds: 1)) }
            }
        }
        let all = sink.lines.joined(separator: "\n")
        XCTAssertFalse(sink.lines.isEmpty)
        for secret in [readToken, rwToken, expiredToken, revokedToken, Self.real.withRevealed { $0 }] {
            XCTAssertFalse(all.contains(secret))
            XCTAssertFalse(all.contains(String(secret.suffix(16))))
        }
    }

    func testRouteAnswersOnTheContextLoop() throws {
        let loop = EmbeddedEventLoop()
        let future = router.route(head(.GET, adv, [bearer(readToken)]), context: RequestContext(sandbox: "sbx", via: .http, eventLoop: loop))
        guard case .forward = try future.wait() else { return XCTFail("forward") }
    }

    func testSandboxGitConfigEnvironment() {
        let env = GitSandboxConfig.environment(gatewayURL: "http://airlock.internal", hosts: ["github.com"], token: Secret(rwToken))
        XCTAssertEqual(env["GIT_CONFIG_COUNT"], "11")
        XCTAssertEqual(env["GIT_TERMINAL_PROMPT"], "0")
        let pairs = (0..<11).map { (env["GIT_CONFIG_KEY_\($0)"]!, env["GIT_CONFIG_VALUE_\($0)"]!) }
        XCTAssertEqual(pairs.map(\.0), Array(repeating: "url.http://airlock.internal/git/github.com/.insteadOf", count: 9) + [
            "http.http://airlock.internal/.extraHeader",
            "credential.helper",
        ])
        XCTAssertEqual(pairs.map(\.1), [
            "https://github.com/", "http://github.com/", "git@github.com:", "ssh://git@github.com/", "ssh://git@github.com:22/",
            "ssh://github.com/", "ssh://github.com:22/", "git+ssh://git@github.com/", "ssh+git://git@github.com/",
            "Authorization: Bearer \(rwToken)", "",
        ])
    }

    func testSandboxGitConfigAddsLongerPrefixesPerRepository() throws {
        let app = try GitRepository(host: "github.com", owner: "octo", name: "app")
        let env = GitSandboxConfig.environment(hosts: ["github.com"], repositories: [app, app], token: Secret(rwToken))
        XCTAssertEqual(env["GIT_CONFIG_COUNT"], "29")
        let pairs = (0..<29).map { (env["GIT_CONFIG_KEY_\($0)"]!, env["GIT_CONFIG_VALUE_\($0)"]!) }
        XCTAssertEqual(Set(pairs[9...17].map(\.0)), ["url.http://airlock.internal/git/github.com/octo/.insteadOf"])
        XCTAssertEqual(pairs[9...11].map(\.1), ["https://github.com/octo/", "http://github.com/octo/", "git@github.com:octo/"])
        XCTAssertEqual(Set(pairs[18...26].map(\.0)), ["url.http://airlock.internal/git/github.com/octo/app.insteadOf"])
        XCTAssertEqual(pairs[18...20].map(\.1), ["https://github.com/octo/app", "http://github.com/octo/app", "git@github.com:octo/app"])
        XCTAssertEqual(pairs[22].1, "ssh://git@github.com:22/octo/app")
    }

    func testUpstreamConfigurationErrors() {
        XCTAssertThrowsError(try GitUpstreams(mappings: [GitUpstreams.Mapping(parsing: "github.com=http://127.0.0.1:80")])) {
            XCTAssertTrue(String(describing: $0).contains("the URL must start with https://"))
        }
        XCTAssertThrowsError(try GitUpstreams(mappings: [GitUpstreams.Mapping(parsing: "github.com=https://user:pw@host")]))
        XCTAssertThrowsError(try GitUpstreams(mappings: [GitUpstreams.Mapping(parsing: "github.com=https://h:99999")]))
        XCTAssertThrowsError(try GitUpstreams(mappings: [GitUpstreams.Mapping(parsing: "github.com"), GitUpstreams.Mapping(parsing: "GitHub.com")])) {
            XCTAssertEqual(String(describing: $0), "--git-upstream: github.com is configured twice")
        }
        XCTAssertThrowsError(try GitUpstreams(mappings: [], caFile: "/nonexistent/ca.pem")) {
            XCTAssertTrue(String(describing: $0).hasPrefix("--upstream-ca /nonexistent/ca.pem: cannot read"))
        }
        XCTAssertThrowsError(try GitUpstreams.Mapping(parsing: "git hub=https://x"))
        XCTAssertEqual(try GitUpstreams(mappings: []).hosts, ["github.com"])
    }
}

/// Headers the gateway sets itself survive a request that names them as hop-by-hop.
final class GatewayHeadersTests: XCTestCase {
    func testConnectionNamingAuthorizationDoesNotStripTheUpstreamCredential() throws {
        let token = "airlock_s_" + String(repeating: "w", count: 43)
        let upstreams = try GitUpstreams(mappings: [GitUpstreams.Mapping(parsing: "github.com=https://127.0.0.1:9443/base")])
        let grant = SessionGrant(id: "bbbbbbbbbbbb", sandbox: "sbx", scope: SessionScope([try ScopeEntry(parsing: "owner/repo:rw")]),
                                 upstreamToken: GitRouterTests.real)
        let audit = AuditLog(sink: MemoryAuditSink())
        let git = GitRouter(upstreams: upstreams, sessions: FakeSessions(answers: [token: .valid(grant)]), audit: audit)
        let h = try GatewayHarness(listener: .http, internalRouter: git)
        try h.send("GET /git/github.com/owner/repo/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: airlock.internal\r\n"
                   + "Authorization: Bearer \(token)\r\nConnection: keep-alive, Authorization, Host\r\n\r\n")
        let sent = try h.sentUpstream()
        let credential = "Basic " + Base64.encode(Array("x-access-token:ghp_REALupstreamTOKEN_0123456789abcdef".utf8))
        XCTAssertTrue(sent.contains("\r\nAuthorization: \(credential)\r\n"), "the upstream credential is sent")
        XCTAssertTrue(sent.contains("\r\nHost: 127.0.0.1:9443\r\n"), sent.replacingOccurrences(of: credential, with: "<credential>"))
        XCTAssertFalse(sent.contains(token), "the session token never goes upstream")
    }

    func testConnectionNamingHostDoesNotStripTheForwardedHost() throws {
        let h = try GatewayHarness(listener: .proxy)
        try h.send("GET http://allowed.test/x HTTP/1.1\r\nHost: allowed.test\r\nConnection: Host\r\n\r\n")
        let sent = try h.sentUpstream()
        XCTAssertTrue(sent.hasPrefix("GET /x HTTP/1.1\r\n"), sent)
        XCTAssertTrue(sent.contains("\r\nHost: allowed.test\r\n"), sent)
    }
}
