@testable import Gateway
import NIOCore
import NIOHTTP1
import XCTest
@testable import GatewayCore

/// Route lines in the policy, and the router that turns `/api/NAME/…` into an upstream
/// request with the secret swapped in: what reaches the upstream, what is refused and why,
/// and that no secret reaches an audit line or a refusal.
final class CredentialRouteTests: XCTestCase {
    static let realKey = "sk-ant-REALkey-" + String(repeating: "k", count: 24)
    static let realOpenAI = "sk-proj-REALopenai-" + String(repeating: "o", count: 24)
    var sink: MemoryAuditSink!
    var secrets: SecretStore!

    override func setUp() {
        sink = MemoryAuditSink()
        secrets = SecretStore(["anthropic": Secret(Self.realKey), "openai": Secret(Self.realOpenAI)])
    }

    private func router(_ policyText: String) throws -> RouteRouter {
        let audit = AuditLog(sink: sink)
        let store = PolicyStore(initial: try Policy.parse(policyText, source: "policy"), path: nil, extra: nil, audit: audit)
        return RouteRouter(policy: store, secrets: secrets, trust: try RouteUpstreamTrust(caFile: nil), audit: audit)
    }

    private func head(_ method: HTTPMethod = .POST, _ uri: String, _ headers: [(String, String)] = []) -> HTTPRequestHead {
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

    // MARK: Parsing

    func testRouteLineParses() throws {
        let policy = try Policy.parse("route anthropic https://api.anthropic.com header x-api-key=secret:anthropic\n"
                                      + "route corp https://[::1]:8443/base/ header Authorization=bearer:corp header x-team=secret:team\n",
                                      source: "p")
        XCTAssertEqual(policy.routes.count, 2)
        let a = try XCTUnwrap(policy.route(named: "anthropic"))
        XCTAssertEqual(a.host, "api.anthropic.com")
        XCTAssertEqual(a.port, 443)
        XCTAssertEqual(a.basePath, "")
        XCTAssertEqual(a.headers, [CredentialRoute.Header(name: "x-api-key", secret: "anthropic", form: .secret)])
        XCTAssertEqual(a.origin, "line 1")
        let corp = try XCTUnwrap(policy.route(named: "corp"))
        XCTAssertEqual(corp.host, "::1")
        XCTAssertEqual(corp.port, 8443)
        XCTAssertEqual(corp.basePath, "/base")
        XCTAssertEqual(corp.hostHeader, "[::1]:8443")
        XCTAssertEqual(corp.headers.map(\.name), ["authorization", "x-team"])
        XCTAssertEqual(corp.headers[0].value(for: "v"), "Bearer v")
        XCTAssertEqual(policy.routeSecretNames, ["anthropic", "corp", "team"])
        XCTAssertEqual(policy.ruleCount, 0, "routes allow no host")
        XCTAssertFalse(policy.decide(host: "api.anthropic.com", port: 443).isAllowed, "a route is not an egress rule")
    }

    func testBadRouteLinesAreOneLineErrors() {
        let cases: [(String, String)] = [
            ("route a", "p:1: 'route a': expected 'route NAME https://HOST[/BASE] header HEADER=secret:SECRET [header …]'"),
            ("route a https://x.example", "p:1: 'route a https://x.example': expected 'route NAME https://HOST[/BASE] header HEADER=secret:SECRET [header …]'"),
            ("route A https://x.example header k=secret:s", "p:1: route 'A': a route name is 1–64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit"),
            ("route a http://x.example header k=secret:s", "p:1: route a: http://x.example: the upstream must start with https:// (the credential never travels unencrypted)"),
            ("route a https://u@x.example header k=secret:s", "p:1: route a: https://u@x.example: expected https://HOST[:PORT][/PATH] without user, query, fragment or escapes"),
            ("route a https://x.example/v1?x=1 header k=secret:s", "p:1: route a: https://x.example/v1?x=1: expected https://HOST[:PORT][/PATH] without user, query, fragment or escapes"),
            ("route a https://x.example/../v1 header k=secret:s", "p:1: route a: https://x.example/../v1: `.` and `..` are not allowed in the path"),
            ("route a https://x.example:0 header k=secret:s", "p:1: route a: https://x.example:0: invalid port '0'"),
            ("route a https://airlock.internal header k=secret:s", "p:1: route a: https://airlock.internal: airlock.internal is the gateway itself"),
            ("route a https://127.1 header k=secret:s", "p:1: route a: https://127.1: write an IP address in its usual form (127.0.0.1, [::1])"),
            ("route a https://x.example header k=sk-live-123", "p:1: route a: header k: the value must be secret:SECRET or bearer:SECRET (values are never written in the policy)"),
            ("route a https://x.example header k=secret:", "p:1: route a: header k: '' is not a secret name (1–64 of a-z, 0-9, '-', '_', '.')"),
            ("route a https://x.example header host=secret:s", "p:1: route a: the gateway sets host itself; a route cannot"),
            ("route a https://x.example header content-length=secret:s", "p:1: route a: the gateway sets content-length itself; a route cannot"),
            ("route a https://x.example header k=secret:s header K=secret:t", "p:1: route a: header k is set twice"),
            ("route a https://x.example query k=secret:s", "p:1: route a: unexpected 'query' (expected 'header HEADER=secret:SECRET', 'github-session HOST' or 'budget REQUESTS')"),
            ("route a https://x.example budget 5", "p:1: route a: no header; a route adds at least one 'header HEADER=secret:SECRET'"),
            ("route a https://x.example header k=secret:s budget 0", "p:1: route a: budget '0' is not a number of requests (1–999999999)"),
            ("route a https://x.example header k=secret:s budget -1", "p:1: route a: budget '-1' is not a number of requests (1–999999999)"),
            ("route a https://x.example header k=secret:s budget 1 budget 2", "p:1: route a: budget is given twice"),
            ("route a https://x.example header k=secret:s\nroute a https://y.example header k=secret:s", "p:2: route a is already defined (line 1)"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try Policy.parse(text + "\n", source: "p"), text) { error in
                XCTAssertEqual(String(describing: error), expected, text)
            }
        }
    }

    func testRouteFlagsAreParsedLikeLinesAndReplaceTheFilesRoute() throws {
        let file = try Policy.parse("route a https://file.example header k=secret:s\nexample.org\n", source: "/etc/p")
        let flags = try Policy.rules(allow: [], allowPrivate: [], resolve: [], routes: ["a https://flag.example header k=secret:s"], source: "command line")
        let merged = file.adding(rulesFrom: flags)
        XCTAssertEqual(merged.routes.map(\.host), ["flag.example"])
        XCTAssertEqual(merged.routes.first?.origin, "--route")
        XCTAssertEqual(merged.source, "/etc/p + command line")
        XCTAssertThrowsError(try Policy.rules(allow: [], allowPrivate: [], resolve: [], routes: ["a http://x header k=secret:s"], source: "c")) { error in
            XCTAssertEqual(String(describing: error), "--route: route a: http://x: the upstream must start with https:// (the credential never travels unencrypted)")
        }
    }

    func testMissingSecretsAreNamedPerRoute() throws {
        let policy = try Policy.parse("route a https://a.example header k=secret:one\nroute b https://b.example header k=secret:two header l=secret:one\n", source: "p")
        let missing = policy.missingRouteSecrets(known: ["one"])
        XCTAssertEqual(missing.map(\.route), ["b"])
        XCTAssertEqual(missing.map(\.secret), ["two"])
        XCTAssertTrue(policy.missingRouteSecrets(known: ["one", "two"]).isEmpty)
    }

    func testPresetsDefineTheRouteAndTheSandboxVariables() throws {
        let policy = try Policy.parse("@anthropic-api\n@openai-api\n@gemini-api\n", source: "p")
        XCTAssertEqual(policy.presets, ["anthropic-api", "openai-api", "gemini-api"])
        let anthropic = try XCTUnwrap(policy.route(named: "anthropic"))
        XCTAssertEqual(anthropic.url, "https://api.anthropic.com")
        XCTAssertEqual(anthropic.headers, [CredentialRoute.Header(name: "x-api-key", secret: "anthropic", form: .secret)])
        let openai = try XCTUnwrap(policy.route(named: "openai"))
        XCTAssertEqual(openai.url, "https://api.openai.com")
        XCTAssertEqual(openai.headers, [CredentialRoute.Header(name: "authorization", secret: "openai", form: .bearer)])
        XCTAssertEqual(policy.route(named: "gemini")?.headers.first?.name, "x-goog-api-key")
        let environment = RoutePreset.environment(for: policy.routes)
        XCTAssertEqual(environment["ANTHROPIC_BASE_URL"], "http://airlock.internal/api/anthropic")
        XCTAssertEqual(environment["OPENAI_BASE_URL"], "http://airlock.internal/api/openai/v1")
        XCTAssertEqual(environment["GOOGLE_GEMINI_BASE_URL"], "http://airlock.internal/api/gemini")
        for name in ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"] {
            XCTAssertEqual(environment[name], RoutePreset.placeholder, name)
        }
        // A route of the preset's name written by hand sets no variables.
        let own = try Policy.parse("route anthropic https://proxy.example header x-api-key=secret:anthropic\n", source: "p")
        XCTAssertEqual(RoutePreset.environment(for: own.routes), [:])
    }

    func testExplainShowsRoutesWithoutValues() throws {
        let policy = try Policy.parse("@anthropic-api\n", source: "p")
        let lines = policy.explainRoutes()
        XCTAssertEqual(lines, [
            "routes:",
            "  http://airlock.internal/api/anthropic/… -> https://api.anthropic.com/… (line 1); sets x-api-key=secret:anthropic; client credential headers are removed; redirects are not followed",
        ])
        XCTAssertEqual(try Policy.parse("a.example\n", source: "p").explainRoutes(), ["routes: none"])
    }

    // MARK: Routing

    func testRequestGoesToTheUpstreamWithTheSecretAndWithoutTheClientsCredentials() throws {
        let router = try router("@anthropic-api\n")
        let decided = router.decide(head(.POST, "/api/anthropic/v1/messages?beta=true", [
            ("x-api-key", "sk-from-the-sandbox"), ("X-Api-Key", "second"), ("Authorization", "Bearer stolen"),
            ("api-key", "a"), ("x-goog-api-key", "g"), ("Cookie", "c=1"), ("X-Forwarded-For", "1.2.3.4"),
            ("Content-Type", "application/json"), ("anthropic-version", "2023-06-01"), ("Connection", "x-api-key"),
        ]), sandbox: "sbx")
        let e = try XCTUnwrap(exchange(decided))
        XCTAssertEqual(e.target.host, "api.anthropic.com")
        XCTAssertEqual(e.target.port, 443)
        XCTAssertNotNil(e.target.tls, "route upstreams are always TLS")
        XCTAssertNil(e.target.address)
        XCTAssertEqual(e.head.uri, "/v1/messages?beta=true")
        XCTAssertEqual(e.head.method, .POST)
        XCTAssertEqual(e.head.headers["x-api-key"], [Self.realKey], "only the gateway's key goes upstream")
        XCTAssertEqual(e.head.headers["host"], ["api.anthropic.com"])
        for stripped in ["authorization", "api-key", "x-goog-api-key", "cookie", "x-forwarded-for"] {
            XCTAssertEqual(e.head.headers[stripped], [], stripped)
        }
        XCTAssertEqual(e.head.headers["content-type"], ["application/json"])
        XCTAssertEqual(e.head.headers["anthropic-version"], ["2023-06-01"])
        XCTAssertTrue(e.gatewayHeaders.contains("x-api-key"), "a request naming the key header in Connection cannot remove it")
        // The forwarder's hop-by-hop pass keeps the gateway's header.
        XCTAssertEqual(HopByHopHeaders.stripped(e.head.headers, keeping: e.gatewayHeaders)["x-api-key"], [Self.realKey])
    }

    func testTheRoutesOwnHeaderSentByTheClientIsReplaced() throws {
        let router = try router("route corp https://corp.example header x-team=secret:openai header x-api-key=secret:anthropic\n")
        let e = try XCTUnwrap(exchange(router.decide(head(.GET, "/api/corp/x", [("X-Team", "from-sandbox"), ("x-team", "again")]), sandbox: "sbx")))
        XCTAssertEqual(e.head.headers["x-team"], [Self.realOpenAI])
        XCTAssertEqual(e.head.headers["x-api-key"], [Self.realKey])
        XCTAssertEqual(e.gatewayHeaders, ["host", "x-team", "x-api-key"])
    }

    func testBearerRouteAndBasePath() throws {
        let router = try router("route corp https://127.0.0.1:9443/base header authorization=bearer:openai\n")
        let e = try XCTUnwrap(exchange(router.decide(head(.GET, "/api/corp", [("Authorization", "Bearer placeholder")]), sandbox: "sbx")))
        XCTAssertEqual(e.head.uri, "/base")
        XCTAssertEqual(e.head.headers["authorization"], ["Bearer \(Self.realOpenAI)"])
        XCTAssertEqual(e.head.headers["host"], ["127.0.0.1:9443"])
        XCTAssertEqual(e.target.address, try SocketAddress(ipAddress: "127.0.0.1", port: 9443), "an IP-literal upstream is dialled as written")
        let root = try XCTUnwrap(exchange(try self.router("@openai-api\n").decide(head(.GET, "/api/openai/v1/models?limit=2"), sandbox: "sbx")))
        XCTAssertEqual(root.head.uri, "/v1/models?limit=2")
    }

    func testRefusalsSayWhyAndNeverCarryTheSecret() throws {
        let router = try router("@anthropic-api\nroute other https://x.example header k=secret:unset\n")
        let cases: [(String, HTTPResponseStatus, String)] = [
            ("/api/nope/v1", .notFound, "airlock: no route 'nope' on airlock.internal; routes: anthropic, other"),
            ("/api/anthropic/../../admin", .badRequest, "airlock: route anthropic: `.`, `..` and escaped dots or slashes are not allowed in the path"),
            ("/api/anthropic/v1/%2e%2e/x", .badRequest, "airlock: route anthropic: `.`, `..` and escaped dots or slashes are not allowed in the path"),
            ("/api/anthropic/v1%2Fx", .badRequest, "airlock: route anthropic: `.`, `..` and escaped dots or slashes are not allowed in the path"),
            ("/api/anthropic/a\\b", .badRequest, "airlock: the path has characters a route does not pass"),
            ("/api/Bad!/x", .notFound, "airlock: no route 'Bad!' on airlock.internal"),
            ("/api/other/x", .serviceUnavailable, "airlock: route other: the secret unset is not set; set it with `airlock secret set sbx unset`"),
        ]
        for (uri, status, body) in cases {
            let r = try XCTUnwrap(refusal(router.decide(head(.GET, uri), sandbox: "sbx")), uri)
            XCTAssertEqual(r.status.code, status.code, uri)
            XCTAssertEqual(r.body, body + "\n", uri)
        }
        XCTAssertEqual(sink.lines.count, cases.count, "one audit line per refused request")
        for line in sink.lines {
            XCTAssertTrue(line.contains("\"event\":\"api_deny\""), line)
            XCTAssertFalse(line.contains(Self.realKey), line)
        }
        XCTAssertTrue(sink.lines.last!.contains("\"route\":\"other\",\"method\":\"GET\",\"path\":\"/x\""), sink.lines.last!)
        let none = try self.router("a.example\n")
        XCTAssertEqual(try XCTUnwrap(refusal(none.decide(head(.GET, "/api/x/"), sandbox: "s"))).body,
                       "airlock: no route 'x' on airlock.internal; the policy defines no routes (see `route` in docs/policy.md)\n")
    }

    func testRedirectsAreRefusedNotPassedOn() throws {
        for status in [301, 302, 303, 307, 308] {
            let refusal = try XCTUnwrap(RouteRouter.refusalForUpstream(status: status, route: "anthropic"))
            XCTAssertEqual(refusal.status, .badGateway)
            XCTAssertEqual(refusal.reason, "route anthropic: the upstream answered with a redirect (HTTP \(status)); airlock does not follow redirects")
        }
        for status in [200, 304, 401, 404, 429, 500] {
            XCTAssertNil(RouteRouter.refusalForUpstream(status: status, route: "anthropic"), "\(status) is the API's own answer")
        }
    }

    func testOneAuditLinePerExchangeWithoutQueryHeadersOrBodies() throws {
        let router = try router("@anthropic-api\n")
        let e = try XCTUnwrap(exchange(router.decide(head(.POST, "/api/anthropic/v1/messages?key=\(Self.realKey)", [("x-api-key", "sent")]), sandbox: "sbx")))
        XCTAssertTrue(sink.lines.isEmpty, "the line is written when the exchange ends")
        e.completion?(ExchangeOutcome(status: 200, bytesUp: 120, bytesDown: 4096, milliseconds: 35))
        XCTAssertEqual(sink.lines.count, 1)
        let line = sink.lines[0]
        XCTAssertTrue(line.contains("\"event\":\"api_allow\",\"sandbox\":\"sbx\",\"via\":\"api\",\"host\":\"api.anthropic.com\",\"route\":\"anthropic\",\"method\":\"POST\",\"path\":\"/v1/messages\",\"status\":200"), line)
        XCTAssertTrue(line.contains("\"bytes_up\":120,\"bytes_down\":4096,\"ms\":35"), line)
        XCTAssertFalse(line.contains(Self.realKey), line)
        XCTAssertFalse(line.contains("sent"), line)
        // An intercepted redirect is audited as a refusal.
        var response = HTTPResponseHead(version: .http1_1, status: .found)
        response.headers.add(name: "Location", value: "https://elsewhere.example/")
        let replaced = try XCTUnwrap(e.interceptResponse?(response))
        XCTAssertEqual(replaced.status, .badGateway)
        e.completion?(ExchangeOutcome(status: 502, bytesUp: 0, bytesDown: 0, milliseconds: 3))
        XCTAssertTrue(sink.lines[1].contains("\"event\":\"api_deny\""), sink.lines[1])
        XCTAssertTrue(sink.lines[1].contains("redirect (HTTP 302)"), sink.lines[1])
    }

    func testSecretsReloadWithThePolicyAndAreReadPerRequest() throws {
        let audit = AuditLog(sink: sink)
        let dir = try TemporaryPolicyFile("route a https://a.example header k=secret:s\n")
        let store = PolicyStore(initial: try Policy.load(path: dir.path), path: dir.path, extra: nil, audit: audit)
        let router = RouteRouter(policy: store, secrets: secrets, trust: try RouteUpstreamTrust(caFile: nil), audit: audit)
        XCTAssertEqual(try XCTUnwrap(refusal(router.decide(head(.GET, "/api/a/x"), sandbox: "sbx"))).status, .serviceUnavailable)
        secrets.set("s", Secret("later"))
        XCTAssertEqual(try XCTUnwrap(exchange(router.decide(head(.GET, "/api/a/x"), sandbox: "sbx"))).head.headers["k"], ["later"])
        try dir.write("route b https://b.example header k=secret:s\n")
        XCTAssertTrue(store.reload())
        XCTAssertEqual(try XCTUnwrap(refusal(router.decide(head(.GET, "/api/a/x"), sandbox: "sbx"))).status, .notFound)
        XCTAssertEqual(try XCTUnwrap(exchange(router.decide(head(.GET, "/api/b/x"), sandbox: "sbx"))).target.host, "b.example")
    }

    func testABudgetAllowsThatManyRequestsThen429() throws {
        let policy = try Policy.parse("route a https://a.example header k=secret:anthropic budget 2\n", source: "p")
        XCTAssertEqual(policy.route(named: "a")?.budget, 2)
        XCTAssertTrue(policy.explainRoutes()[1].contains("; budget 2 requests;"), policy.explainRoutes()[1])
        let router = try router("route a https://a.example header k=secret:anthropic budget 2\n@openai-api\n")
        XCTAssertNotNil(exchange(router.decide(head(.POST, "/api/a/1"), sandbox: "sbx")))
        XCTAssertNotNil(exchange(router.decide(head(.POST, "/api/a/2"), sandbox: "sbx")))
        let spent = try XCTUnwrap(refusal(router.decide(head(.POST, "/api/a/3"), sandbox: "sbx")))
        XCTAssertEqual(spent.status, .tooManyRequests)
        XCTAssertEqual(spent.body, "airlock: route a: its budget of 2 requests is spent; the route's `budget` allows no more requests in this run\n")
        XCTAssertTrue(sink.lines.last!.contains(#""event":"api_deny""#), sink.lines.last!)
        XCTAssertEqual(router.budgets.used("a"), 2)
        for _ in 0..<5 { XCTAssertNotNil(exchange(router.decide(head(.GET, "/api/openai/v1/models"), sandbox: "sbx")), "a route without a budget") }
    }

    func testSecretsNeverPrint() {
        let store = SecretStore(["a": Secret(Self.realKey)])
        XCTAssertEqual(store.names, ["a"])
        XCTAssertFalse(String(describing: store.secret(named: "a")!).contains(Self.realKey))
        XCTAssertFalse(String(reflecting: store).contains(Self.realKey))
    }
}

/// A policy file in a fresh directory, removed at the end.
final class TemporaryPolicyFile {
    let directory: String
    var path: String { directory + "/policy" }

    init(_ text: String) throws {
        directory = NSTemporaryDirectory() + "airlock-route-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try write(text)
    }

    func write(_ text: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
}
