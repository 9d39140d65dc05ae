import Foundation
import NIOCore
import NIOHTTP1
import XCTest
@testable import Gateway
@testable import GatewayCore

/// Git LFS paths, the batch rewrite, the action table and the LFS router's decisions.
final class LFSTests: XCTestCase {
    static let real = Secret("ghp_REALupstreamTOKEN_0123456789abcdef")
    let readToken = "airlock_s_" + String(repeating: "r", count: 43)
    let rwToken = "airlock_s_" + String(repeating: "w", count: 43)
    let otherToken = "airlock_s_" + String(repeating: "o", count: 43)
    var sink: MemoryAuditSink!
    var table: LFSActionTable!
    var router: LFSRouter!

    override func setUpWithError() throws {
        sink = MemoryAuditSink()
        table = LFSActionTable(capacity: 8)
        let upstreams = try GitUpstreams(mappings: [GitUpstreams.Mapping(parsing: "github.com=https://127.0.0.1:9443/base")])
        func grant(_ id: String, _ entries: [String]) throws -> SessionCheck {
            .valid(SessionGrant(id: id, sandbox: "sbx", scope: SessionScope(try entries.map { try ScopeEntry(parsing: $0) }), upstreamToken: Self.real))
        }
        let fake = FakeSessions(answers: [
            readToken: try grant("aaaaaaaaaaaa", ["owner/repo"]),
            rwToken: try grant("bbbbbbbbbbbb", ["owner/repo:rw"]),
            otherToken: try grant("cccccccccccc", ["owner/repo:rw"]),
        ])
        router = LFSRouter(upstreams: upstreams, sessions: fake, audit: AuditLog(sink: sink), actions: table)
    }

    private func head(_ method: HTTPMethod, _ uri: String, token: String? = nil, _ headers: [(String, String)] = []) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "Host", value: "airlock.internal")
        if let token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (n, v) in headers { head.headers.add(name: n, value: v) }
        return head
    }

    private func answer(_ route: HTTPRoute, file: StaticString = #filePath, line: UInt = #line) -> LocalResponse? {
        guard case let .respond(response) = route else {
            XCTFail("expected a local answer, got \(route)", file: file, line: line)
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

    let batchPath = "/git/github.com/owner/repo.git/info/lfs/objects/batch"
    let oid = String(repeating: "ab", count: 32)

    private func batchResponse(_ actions: String, transfer: String = "\"basic\"") -> ByteBuffer {
        ByteBuffer(string: "{\"transfer\":\(transfer),\"objects\":[{\"oid\":\"\(oid)\",\"size\":5,\"actions\":{\(actions)}}],\"hash_algo\":\"sha256\"}")
    }

    let downloadAction = "\"download\":{\"href\":\"https://storage.example.net:8443/o/abab?sig=xyz\",\"header\":{\"Authorization\":\"RemoteAuth s3cret\"},\"expires_in\":120}"

    // MARK: paths

    func testRoutesAndTheAccessTheyNeed() throws {
        let configured: (String) -> Bool = { $0 == "github.com" }
        guard case .batch(let path) = try LFSRoute.parse(method: "POST", uri: batchPath, isConfiguredHost: configured) else { return XCTFail() }
        XCTAssertEqual(LFSRoute.upstreamURI(path, basePath: "/base"), "/base/owner/repo.git/info/lfs/objects/batch")
        func needs(_ method: String, _ rest: String) throws -> RepoAccess? {
            if case .locks(_, let needs) = try LFSRoute.parse(method: method, uri: "/git/github.com/owner/repo/info/lfs/\(rest)", isConfiguredHost: configured) {
                return needs
            }
            return nil
        }
        XCTAssertEqual(try needs("GET", "locks?path=a.bin"), .read)
        XCTAssertEqual(try needs("POST", "locks/verify"), .read)
        XCTAssertEqual(try needs("POST", "locks"), .rw)
        XCTAssertEqual(try needs("POST", "locks/17/unlock"), .rw)
        XCTAssertTrue(LFSRoute.matches(batchPath))
        XCTAssertTrue(LFSRoute.matches("/lfs/x"))
        XCTAssertFalse(LFSRoute.matches("/git/github.com/owner/repo/info/refs?service=git-upload-pack"))
    }

    func testMalformedLFSPathsAreRefusedAsGitPathsAre() {
        func refusal(_ method: String, _ uri: String) -> String? {
            do {
                _ = try LFSRoute.parse(method: method, uri: uri) { $0 == "github.com" }
                return nil
            } catch let refusal as GitRoute.Refusal {
                return "\(refusal.status) \(refusal.reason)"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(refusal("POST", "/git/github.com/owner/%2e%2e/info/lfs/objects/batch"), "400 airlock: percent-encoded characters are not allowed in git paths")
        XCTAssertEqual(refusal("POST", "/git/github.com/owner/repo/../other/info/lfs/objects/batch"), "400 airlock: `.` and `..` segments are not allowed in git paths")
        XCTAssertEqual(refusal("GET", batchPath), "405 airlock: info/lfs/objects/batch takes POST, not GET")
        XCTAssertEqual(refusal("POST", "/git/github.com/owner/repo/info/lfs/objects/oid"),
                       "404 airlock: not a Git LFS endpoint airlock serves (objects/batch, locks, locks/verify, locks/ID/unlock)")
        XCTAssertEqual(refusal("GET", "/lfs/short"), "404 airlock: no such LFS transfer (the id is malformed)")
        XCTAssertEqual(refusal("DELETE", "/lfs/" + String(repeating: "A", count: 43)), "405 airlock: LFS transfers take GET, PUT or POST, not DELETE")
    }

    // MARK: the batch body

    func testTheOperationIsReadFromTheRequest() {
        XCTAssertEqual(try LFSBatch.operation(of: Array("{\"operation\":\"upload\",\"objects\":[]}".utf8)).get(), .upload)
        XCTAssertEqual(try LFSBatch.operation(of: Array("{\"operation\":\"download\"}".utf8)).get(), .download)
        XCTAssertThrowsError(try LFSBatch.operation(of: Array("{\"operation\":\"delete\"}".utf8)).get()) {
            XCTAssertEqual("\($0)", "unknown LFS batch operation \"delete\" (download or upload)")
        }
        XCTAssertThrowsError(try LFSBatch.operation(of: Array("[1]".utf8)).get()) {
            XCTAssertEqual("\($0)", "the LFS batch request is not a JSON object")
        }
    }

    func testEveryHrefIsRewrittenAndHeadersStayInTheGateway() throws {
        var registered: [(LFSActionTable.Kind, LFSBatch.Href, HTTPHeaders, Int?)] = []
        let text = try LFSBatch.rewrite(batchResponse(downloadAction), operation: .download) { kind, href, headers, lifetime in
            registered.append((kind, href, headers, lifetime))
            return ("http://airlock.internal/lfs/ID\(registered.count)", 60)
        }.get()
        XCTAssertEqual(registered.count, 1)
        XCTAssertEqual(registered[0].0, .download)
        XCTAssertEqual(registered[0].1, LFSBatch.Href(host: "storage.example.net", port: 8443, uri: "/o/abab?sig=xyz"))
        XCTAssertEqual(registered[0].2.first(name: "Authorization"), "RemoteAuth s3cret")
        XCTAssertEqual(registered[0].3, 120)
        for hidden in ["s3cret", "storage.example.net", "header", "sig=xyz"] {
            XCTAssertFalse(text.contains(hidden), "the sandbox's copy holds \(hidden): \(text)")
        }
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let entry = try XCTUnwrap((object["objects"] as? [[String: Any]])?.first)
        let download = try XCTUnwrap((entry["actions"] as? [String: Any])?["download"] as? [String: Any])
        XCTAssertEqual(download["href"] as? String, "http://airlock.internal/lfs/ID1")
        XCTAssertEqual(download["expires_in"] as? Int, 60)
        XCTAssertEqual(entry["authenticated"] as? Bool, true)
        XCTAssertEqual(entry["oid"] as? String, oid)
        XCTAssertEqual(object["hash_algo"] as? String, "sha256")
    }

    func testResponsesAirlockCannotVouchForAreRefusedWhole() {
        func problem(_ body: ByteBuffer, _ operation: LFSBatch.Operation = .download) -> String? {
            switch LFSBatch.rewrite(body, operation: operation, register: { _, _, _, _ in XCTFail("nothing may be registered"); return ("", 0) }) {
            case .success: return nil
            case .failure(let problem): return problem.description
            }
        }
        let upload = "\"upload\":{\"href\":\"https://storage.example.net/o\"}"
        XCTAssertEqual(problem(batchResponse(downloadAction + "," + upload)),
                       "the upstream's answer to an LFS download holds a \"upload\" action, which airlock does not pass on")
        XCTAssertEqual(problem(batchResponse(downloadAction), .upload),
                       "the upstream's answer to an LFS upload holds a \"download\" action, which airlock does not pass on")
        XCTAssertEqual(problem(batchResponse("\"download\":{\"href\":\"http://storage.example.net/o\"}")),
                       "the upstream's LFS download action has no https href airlock can use")
        XCTAssertEqual(problem(batchResponse("\"download\":{\"href\":\"https://user@storage.example.net/o\"}")),
                       "the upstream's LFS download action has no https href airlock can use")
        XCTAssertEqual(problem(batchResponse("\"download\":{\"href\":\"https://s.example.net/o\",\"header\":{\"X\":\"a\\r\\nHost: evil\"}}")),
                       "the upstream's LFS download action has a header airlock cannot send")
        XCTAssertEqual(problem(batchResponse(downloadAction, transfer: "\"tus\"")),
                       "the upstream chose an LFS transfer adapter other than basic")
        XCTAssertEqual(problem(ByteBuffer(string: "<html>")), "the upstream's LFS batch response is not a JSON object")
    }

    func testLifetimeIsTheShorterOfExpiresInAndExpiresAt() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        XCTAssertEqual(LFSBatch.lifetime(of: ["expires_in": 300, "expires_at": "2023-11-14T22:15:20Z"], now: now), 120)
        XCTAssertEqual(LFSBatch.lifetime(of: ["expires_in": 30], now: now), 30)
        XCTAssertNil(LFSBatch.lifetime(of: [:], now: now))
    }

    // MARK: the table

    func testTheTableExpiresEntriesAndDropsTheOldestWhenFull() {
        let now = NIODeadline.now()
        func action(_ seconds: Int64) -> LFSActionTable.Action {
            LFSActionTable.Action(sessionID: "s", repository: try! GitRepository(host: "github.com", owner: "o", name: "r"), kind: .download,
                                  target: UpstreamTarget(host: "h", port: 443), uri: "/", hostHeader: "h", headers: HTTPHeaders(),
                                  expires: now + .seconds(seconds))
        }
        let short = table.add(action(1), now: now)
        XCTAssertTrue(LFSActionTable.isWellFormedID(short))
        XCTAssertNotNil(table.action(for: short, now: now))
        XCTAssertNil(table.action(for: short, now: now + .seconds(2)), "an expired entry is not served")
        let first = table.add(action(60), now: now)
        for _ in 0..<8 { _ = table.add(action(60), now: now) }
        XCTAssertEqual(table.count, 8)
        XCTAssertNil(table.action(for: first, now: now), "the oldest entry made room")
    }

    // MARK: the router

    private func batchExchange(_ token: String) throws -> UpstreamExchange {
        try XCTUnwrap(exchange(router.decide(head(.POST, batchPath, token: token, [("Content-Type", LFSBatch.contentType), ("Content-Length", "40")]), sandbox: "sbx")))
    }

    func testTheBatchGoesUpstreamWithTheRealCredentialOnly() throws {
        let batch = try batchExchange(readToken)
        XCTAssertEqual(batch.head.uri, "/base/owner/repo.git/info/lfs/objects/batch")
        XCTAssertEqual(batch.head.headers["Authorization"], [HTTPAuthorization.upstreamCredential(Self.real)])
        XCTAssertEqual(batch.target.port, 9443)
    }

    func testAnUploadWithAReadSessionIsRefusedInTheLFSErrorFormat() throws {
        let batch = try batchExchange(readToken)
        let check = try XCTUnwrap(batch.bodyCheck)
        let body = Array("{\"operation\":\"upload\",\"objects\":[]}".utf8)
        guard case .needMore = check(Array(body.prefix(10)), false) else { return XCTFail("decided before the body's end") }
        guard case .refuse(let refusal) = check(body, true) else { return XCTFail("an upload with a read session passed") }
        XCTAssertEqual(refusal.status.code, 403)
        XCTAssertEqual(refusal.headers.first(name: "Content-Type"), "application/vnd.git-lfs+json")
        XCTAssertEqual(refusal.body, "{\"message\":\"airlock: this session has read-only access to github.com/owner/repo; LFS upload refused; uploading needs --repo github.com/owner/repo:rw\"}\n")
        XCTAssertTrue(sink.lines.last!.contains("\"event\":\"git_deny\""))
        XCTAssertTrue(sink.lines.last!.contains("\"reason\":\"LFS upload with a read-only session\""))
        guard case .pass = check(Array("{\"operation\":\"download\"}".utf8), true) else { return XCTFail("a download with a read session was refused") }
        guard case .pass = try XCTUnwrap(try batchExchange(rwToken).bodyCheck)(body, true) else { return XCTFail("an upload with an rw session was refused") }
        guard case .refuse(let large) = check(Array(repeating: 0x20, count: LFSBatch.bodyLimit + 1), false) else { return XCTFail("no bound") }
        XCTAssertEqual(large.status.code, 413)
    }

    func testTheRewrittenResponseNamesGatewayTransfersBoundToTheSession() throws {
        let batch = try batchExchange(rwToken)
        guard case .pass = try XCTUnwrap(batch.bodyCheck)(Array("{\"operation\":\"download\"}".utf8), true) else { return XCTFail() }
        let rewrite = try XCTUnwrap(batch.bufferedResponse)
        XCTAssertEqual(rewrite.limit, 1 << 20)
        let rewritten = rewrite.rewrite(HTTPResponseHead(version: .http1_1, status: .ok), batchResponse(downloadAction))
        XCTAssertEqual(rewritten.status, .ok)
        XCTAssertFalse(rewritten.body.contains("s3cret"))
        let id = try XCTUnwrap(rewritten.body.range(of: "lfs\\/").map { String(rewritten.body[$0.upperBound...].prefix(LFSActionTable.idLength)) })
        let kept = try XCTUnwrap(table.action(for: id))
        XCTAssertEqual(kept.sessionID, "bbbbbbbbbbbb")
        XCTAssertNil(kept.target.address, "the storage host is resolved and checked by the dialer")
        XCTAssertNotNil(kept.target.tls, "TLS towards the storage host")

        // Any success is rewritten; an error is passed on as the upstream wrote it.
        let created = rewrite.rewrite(HTTPResponseHead(version: .http1_1, status: .created), batchResponse(downloadAction))
        XCTAssertEqual(created.status, .created)
        XCTAssertFalse(created.body.contains("s3cret"), created.body)
        let error = rewrite.rewrite(HTTPResponseHead(version: .http1_1, status: .notFound), ByteBuffer(string: "{\"message\":\"Not found\"}"))
        XCTAssertEqual(error.status, .notFound)
        XCTAssertEqual(error.body, "{\"message\":\"Not found\"}")

        // Another session cannot use it, nor another method.
        let stolen = try XCTUnwrap(answer(router.decide(head(.GET, "/lfs/\(id)", token: otherToken), sandbox: "sbx")))
        XCTAssertEqual(stolen.status.code, 404)
        XCTAssertEqual(stolen.body, "{\"message\":\"airlock: no such LFS transfer (unknown, expired, or made for another session); run the git lfs command again\"}\n")
        let none = try XCTUnwrap(answer(router.decide(head(.GET, "/lfs/\(id)"), sandbox: "sbx")))
        XCTAssertEqual(none.status.code, 401)
        let put = try XCTUnwrap(answer(router.decide(head(.PUT, "/lfs/\(id)", token: rwToken), sandbox: "sbx")))
        XCTAssertEqual(put.status.code, 405)

        // Its own session gets the real href with the upstream's header, and nothing of its own.
        let transfer = try XCTUnwrap(exchange(router.decide(head(.GET, "/lfs/\(id)", token: rwToken, [("Cookie", "c=1"), ("Accept", "*/*")]), sandbox: "sbx")))
        XCTAssertEqual(transfer.target.host, "storage.example.net")
        XCTAssertEqual(transfer.target.port, 8443)
        XCTAssertEqual(transfer.head.uri, "/o/abab?sig=xyz")
        XCTAssertEqual(transfer.head.headers["Authorization"], ["RemoteAuth s3cret"])
        XCTAssertEqual(transfer.head.headers["Host"], ["storage.example.net:8443"])
        XCTAssertEqual(transfer.head.headers["Accept"], ["*/*"])
        XCTAssertTrue(transfer.head.headers["Cookie"].isEmpty)
        XCTAssertTrue(transfer.gatewayHeaders.contains("authorization"))
    }

    func testLockChangesNeedAnRWSession() throws {
        let create = try XCTUnwrap(answer(router.decide(head(.POST, "/git/github.com/owner/repo.git/info/lfs/locks", token: readToken), sandbox: "sbx")))
        XCTAssertEqual(create.status.code, 403)
        XCTAssertEqual(create.body, "{\"message\":\"airlock: this session has read-only access to github.com/owner/repo; creating or releasing LFS locks needs --repo github.com/owner/repo:rw\"}\n")
        XCTAssertTrue(sink.lines.last!.contains("\"reason\":\"LFS lock change with a read-only session\""))
        XCTAssertNotNil(exchange(router.decide(head(.POST, "/git/github.com/owner/repo.git/info/lfs/locks/verify", token: readToken), sandbox: "sbx")))
        XCTAssertNotNil(exchange(router.decide(head(.POST, "/git/github.com/owner/repo.git/info/lfs/locks", token: rwToken), sandbox: "sbx")))
        let other = try XCTUnwrap(answer(router.decide(head(.GET, "/git/github.com/owner/elsewhere.git/info/lfs/locks", token: rwToken), sandbox: "sbx")))
        XCTAssertEqual(other.status.code, 403)
    }
}
