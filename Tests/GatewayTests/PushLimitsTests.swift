@testable import Gateway
import NIOCore
import NIOHTTP1
import XCTest
@testable import GatewayCore

/// Each session's push limits: a body over `--max-push-size` is refused with 413 (up
/// front by its `Content-Length`, else while it streams), and pushes past `--push-rate`
/// in a minute with 429 and `Retry-After`; each refusal audited.
final class PushLimitsTests: XCTestCase {
    let token = "airlock_s_" + String(repeating: "w", count: 43)
    var sink: MemoryAuditSink!

    func router(_ policy: PushPolicy) throws -> GitRouter {
        sink = MemoryAuditSink()
        let upstreams = try GitUpstreams(mappings: [GitUpstreams.Mapping(parsing: "github.com=https://127.0.0.1:9443")])
        let grant = SessionGrant(id: "bbbbbbbbbbbb", sandbox: "sbx", scope: SessionScope([try ScopeEntry(parsing: "owner/repo:rw")]),
                                 upstreamToken: Secret("ghp_REAL"), pushPolicy: policy)
        return GitRouter(upstreams: upstreams, sessions: FakeSessions(answers: [token: .valid(grant)]), audit: AuditLog(sink: sink))
    }

    func head(_ method: HTTPMethod, _ uri: String, length: Int? = nil) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let length { head.headers.add(name: "Content-Length", value: String(length)) } else { head.headers.add(name: "Transfer-Encoding", value: "chunked") }
        return head
    }

    let push = "/git/github.com/owner/repo/git-receive-pack"
    let pushAdvertisement = "/git/github.com/owner/repo/info/refs?service=git-receive-pack"

    func testSizesAndRatesFromFlags() throws {
        XCTAssertEqual(try PushPolicy.size("2G"), 2 << 30)
        XCTAssertEqual(try PushPolicy.size("500M"), 500 << 20)
        XCTAssertEqual(try PushPolicy.size("64KiB"), 64 << 10)
        XCTAssertEqual(try PushPolicy.size("1000"), 1000)
        for bad in ["", "0", "-1", "2X", "1.5G", "2 G", "2000T", "99999999999999999999"] {
            XCTAssertThrowsError(try PushPolicy.size(bad), bad) { error in
                XCTAssertEqual(String(describing: error), "push size '\(bad)' is not valid (bytes, or a number with K, M or G, such as 500M or 2G, up to 1T)")
            }
        }
        XCTAssertEqual(try PushPolicy.rate("30/min"), 30)
        XCTAssertEqual(try PushPolicy.rate("5"), 5)
        for bad in ["0", "30/h", "-3", "10001", ""] {
            XCTAssertThrowsError(try PushPolicy.rate(bad), bad) { error in
                XCTAssertEqual(String(describing: error), "push rate '\(bad)' is not valid (pushes per minute, 1 to 10000, such as 30 or 30/min)")
            }
        }
        let standard = try PushPolicy(protect: [], pushRefs: [])
        XCTAssertEqual(standard.maxPushBytes, 2 << 30)
        XCTAssertEqual(standard.pushesPerMinute, 30)
        let set = try PushPolicy(protect: [], pushRefs: [], maxPushSize: "1M", pushRate: "2/min")
        XCTAssertEqual(set.maxPushBytes, 1 << 20)
        XCTAssertEqual(set.pushesPerMinute, 2)
        XCTAssertEqual(PushSizeLimit.describe(2 << 30), "2 GiB")
        XCTAssertEqual(PushSizeLimit.describe(3 << 29), "1.5 GiB")
        XCTAssertEqual(PushSizeLimit.describe(1000), "1000 bytes")
    }

    func testAContentLengthOverTheLimitIsRefusedBeforeAnythingIsRead() throws {
        let router = try router(try PushPolicy(protect: [], pushRefs: [], maxPushSize: "1M"))
        guard case .forward = router.decide(head(.POST, push, length: 1 << 20), sandbox: "sbx") else { return XCTFail("at the limit passes") }
        guard case .respond(let refused) = router.decide(head(.POST, push, length: (1 << 20) + 1), sandbox: "sbx") else {
            return XCTFail("over the limit is refused")
        }
        XCTAssertEqual(refused.status, .payloadTooLarge)
        XCTAssertEqual(refused.body, "airlock: this push (1.0 MiB) is larger than this session allows (1 MiB); push fewer commits at once, or ask for a session with a larger --max-push-size\n")
        XCTAssertTrue(sink.lines.last!.contains("\"event\":\"git_deny\""), sink.lines.last!)
        XCTAssertTrue(sink.lines.last!.contains("\"reason\":\"push larger than the session's limit (1048577 bytes, limit 1048576)\""), sink.lines.last!)
        XCTAssertTrue(sink.lines.last!.contains("\"status\":413"))
    }

    func testAStreamedPushIsCutOffOnceItPassesTheLimit() throws {
        let router = try router(try PushPolicy(protect: ["none"], pushRefs: [], maxPushSize: "200"))
        guard case .forward(let exchange) = router.decide(head(.POST, push), sandbox: "sbx") else { return XCTFail("a chunked push is forwarded") }
        let inspector = try XCTUnwrap(exchange.bodyInspector?())
        let zero = String(repeating: "0", count: 40), one = String(repeating: "1", count: 40)
        let commands = PktLine.encode(Array("\(zero) \(one) refs/heads/topic\u{0}report-status\n".utf8)) + PktLine.flushBytes
        XCTAssertNil(inspector.inspect(ByteBuffer(bytes: commands)))
        XCTAssertNil(inspector.inspect(ByteBuffer(bytes: Array(repeating: UInt8(ascii: "P"), count: 200 - commands.count))), "up to the limit")
        let refused = try XCTUnwrap(inspector.inspect(ByteBuffer(bytes: [UInt8(ascii: "P")])), "one byte more")
        XCTAssertEqual(refused.status, .payloadTooLarge)
        XCTAssertEqual(refused.body, "airlock: this push is larger than this session allows (200 bytes); nothing of it was applied; push fewer commits at once, or ask for a session with a larger --max-push-size\n")
        XCTAssertTrue(refused.closeConnection)
        XCTAssertTrue(sink.lines.last!.contains("\"reason\":\"push larger than the session's limit (over 200 bytes)\""), sink.lines.last!)
        XCTAssertTrue(sink.lines.last!.contains("\"status\":413"))
    }

    func testPushesPastTheRateAreRefusedWithRetryAfter() throws {
        let router = try router(try PushPolicy(protect: [], pushRefs: [], pushRate: "2"))
        for _ in 0..<2 {
            guard case .forward = router.decide(head(.GET, pushAdvertisement, length: 0), sandbox: "sbx") else { return XCTFail("info/refs is not counted") }
            guard case .forward = router.decide(head(.POST, push, length: 4), sandbox: "sbx") else { return XCTFail("git's probe is not counted") }
            guard case .forward = router.decide(head(.POST, push), sandbox: "sbx") else { return XCTFail("within the rate") }
        }
        for uri in [pushAdvertisement, push] {
            guard case .respond(let refused) = router.decide(head(uri == push ? .POST : .GET, uri, length: uri == push ? 300 : 0), sandbox: "sbx") else {
                return XCTFail("\(uri): past the rate")
            }
            XCTAssertEqual(refused.status, .tooManyRequests)
            let wait = try XCTUnwrap(refused.headers.first(name: "Retry-After").flatMap(Int.init))
            XCTAssertTrue((59...60).contains(wait), "\(wait)")
            XCTAssertEqual(refused.body, "airlock: this session has pushed 2 times in the last minute, its limit; try again in \(wait) s\n")
            XCTAssertTrue(sink.lines.last!.contains("\"reason\":\"push rate limit reached (2 per minute)\""), sink.lines.last!)
            XCTAssertTrue(sink.lines.last!.contains("\"status\":429"))
        }
        guard case .forward = router.decide(head(.GET, "/git/github.com/owner/repo/info/refs?service=git-upload-pack", length: 0), sandbox: "sbx") else {
            return XCTFail("fetching is not limited")
        }
    }

    func testTheRateWindowSlidesAndTheTableIsBounded() {
        let limiter = PushRateLimiter(capacity: 2)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        XCTAssertNil(limiter.admit(session: "a", limit: 2, count: true, now: start))
        XCTAssertNil(limiter.admit(session: "a", limit: 2, count: true, now: start + .seconds(30)))
        XCTAssertEqual(limiter.admit(session: "a", limit: 2, count: true, now: start + .seconds(31)), 29)
        XCTAssertEqual(limiter.admit(session: "a", limit: 2, count: true, now: start + .milliseconds(59_500)), 1)
        XCTAssertNil(limiter.admit(session: "a", limit: 2, count: true, now: start + .seconds(60)), "the first push left the window")
        XCTAssertNil(limiter.admit(session: "b", limit: 2, count: true, now: start + .seconds(61)))
        XCTAssertNil(limiter.admit(session: "c", limit: 2, count: true, now: start + .seconds(62)))
        XCTAssertEqual(limiter.count, 2, "the session idle longest was forgotten")
    }
}
