@testable import Gateway
import NIOConcurrencyHelpers
import XCTest
@testable import GatewayCore

/// A clock tests move by hand.
final class ManualClock: Sendable {
    private let now = NIOLockedValueBox<Double>(1_800_000_000)
    func advance(_ seconds: Double) { now.withLockedValue { $0 += seconds } }
    var read: @Sendable () -> Double { { [self] in now.withLockedValue { $0 } } }
}

final class SessionStoreTests: XCTestCase {
    let upstream = Secret("ghp_REALUPSTREAMTOKEN0123456789")
    var sink: MemoryAuditSink!
    var clock: ManualClock!

    override func setUp() {
        sink = MemoryAuditSink()
        clock = ManualClock()
    }

    private func store(_ limits: SessionLimits = SessionLimits()) -> SessionStore {
        SessionStore(limits: limits, audit: AuditLog(sink: sink), clock: clock.read)
    }

    private func scope(_ entries: String...) throws -> SessionScope {
        SessionScope(try entries.map { try ScopeEntry(parsing: $0) })
    }

    private func reveal(_ s: Secret) -> String { s.withRevealed { $0 } }

    func testTokenShapeAndHashOnlyStorage() throws {
        let s = store()
        let (token, summary) = try s.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream)
        let text = reveal(token)
        XCTAssertTrue(text.hasPrefix("airlock_s_"))
        XCTAssertEqual(text.count, 10 + 43)
        XCTAssertTrue(SessionToken.isWellFormed(text))
        XCTAssertEqual(summary.id, SessionToken.digest(of: token).sessionID)
        XCTAssertEqual(summary.id.count, 12)
        // Neither the token nor any part of it long enough to replay shows up in a description.
        let dumped = String(reflecting: s) + String(describing: s.list()) + "\(token)"
        XCTAssertFalse(dumped.contains(String(text.dropFirst(10).prefix(16))))
        XCTAssertEqual("\(token)", "<redacted>")
        // Two tokens differ.
        let (other, _) = try s.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream)
        XCTAssertNotEqual(reveal(other), text)
    }

    func testValidTokenGrantsScope() throws {
        let s = store()
        let (token, _) = try s.create(sandbox: "sbx", scope: try scope("Owner/Repo:rw", "other/lib"), upstreamToken: upstream)
        guard case let .valid(grant) = s.check(token: reveal(token), sandbox: "sbx") else { return XCTFail("expected valid") }
        XCTAssertEqual(grant.upstreamToken, upstream)
        XCTAssertTrue(grant.scope.allows(try GitRepository(host: "github.com", owner: "owner", name: "repo"), .rw))
        XCTAssertTrue(grant.scope.allows(try GitRepository(host: "github.com", owner: "other", name: "lib"), .read))
        XCTAssertFalse(grant.scope.allows(try GitRepository(host: "github.com", owner: "other", name: "lib"), .rw))
        XCTAssertFalse(grant.scope.allows(try GitRepository(host: "github.com", owner: "owner", name: "repo2"), .read))
    }

    func testMalformedAndUnknown() throws {
        let s = store()
        XCTAssertEqual(s.check(token: "nope", sandbox: "sbx").refusalReason, "the session token is malformed")
        XCTAssertEqual(s.check(token: "airlock_s_" + String(repeating: "A", count: 42), sandbox: "sbx").refusalReason, "the session token is malformed")
        XCTAssertEqual(s.check(token: "airlock_s_" + String(repeating: "+", count: 43), sandbox: "sbx").refusalReason, "the session token is malformed")
        let unknown = reveal(SessionToken.generate())
        XCTAssertEqual(s.check(token: unknown, sandbox: "sbx").refusalReason, "the session token is not known to this gateway")
    }

    func testConstantTimeDigestComparison() {
        let a = TokenDigest(bytes: Array(repeating: 1, count: 32))
        var bytes = Array(repeating: UInt8(1), count: 32)
        XCTAssertTrue(a.constantTimeEquals(TokenDigest(bytes: bytes)))
        bytes[31] = 2
        XCTAssertFalse(a.constantTimeEquals(TokenDigest(bytes: bytes)))
        bytes[31] = 1
        bytes[0] = 0
        XCTAssertFalse(a.constantTimeEquals(TokenDigest(bytes: bytes)))
        XCTAssertFalse(a.constantTimeEquals(TokenDigest(bytes: Array(repeating: 1, count: 31))))
    }

    func testAbsoluteExpiry() throws {
        let s = store()
        let (token, summary) = try s.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream, ttl: 600, idleTimeout: 600)
        clock.advance(300)
        guard case .valid = s.check(token: reveal(token), sandbox: "sbx") else { return XCTFail("valid before expiry") }
        clock.advance(300)
        guard case let .expired(id) = s.check(token: reveal(token), sandbox: "sbx") else { return XCTFail("expired at ttl") }
        XCTAssertEqual(id, summary.id)
        XCTAssertEqual(s.liveCount, 0)
        // Still expired (not unknown) on a later attempt; audited once.
        XCTAssertEqual(s.check(token: reveal(token), sandbox: "sbx").refusalReason, "the session has expired")
        let expiries = sink.lines.filter { $0.contains("\"event\":\"session_expire\"") }
        XCTAssertEqual(expiries.count, 1)
        XCTAssertTrue(expiries[0].contains("\"session\":\"\(summary.id)\""))
        XCTAssertTrue(expiries[0].contains("\"reason\":\"absolute lifetime reached\""))
    }

    func testIdleExpiryIsResetByUse() throws {
        let s = store()
        let (token, _) = try s.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream, ttl: 3600, idleTimeout: 100)
        for _ in 0..<5 {
            clock.advance(90)
            guard case .valid = s.check(token: reveal(token), sandbox: "sbx") else { return XCTFail("use resets idle") }
        }
        clock.advance(100)
        guard case .expired = s.check(token: reveal(token), sandbox: "sbx") else { return XCTFail("idle expiry") }
    }

    func testSweepExpiresAndAudits() throws {
        let s = store()
        _ = try s.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream, ttl: 10)
        clock.advance(11)
        XCTAssertEqual(s.list().count, 0)
        XCTAssertEqual(sink.lines.filter { $0.contains("session_expire") }.count, 1)
    }

    func testRevocation() throws {
        let s = store()
        let (token, summary) = try s.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream)
        try s.revoke(id: summary.id)
        guard case .revoked = s.check(token: reveal(token), sandbox: "sbx") else { return XCTFail("revoked") }
        XCTAssertThrowsError(try s.revoke(id: summary.id)) {
            XCTAssertEqual(String(describing: $0), "no live session with id \"\(summary.id)\"")
        }
        XCTAssertEqual(s.list().count, 0)
        let revokes = sink.lines.filter { $0.contains("\"event\":\"session_revoke\"") }
        XCTAssertEqual(revokes.count, 1)
        XCTAssertTrue(revokes[0].contains("\"scope\":[\"github.com/owner/repo:read\"]"))
    }

    func testCapOnLiveSessions() throws {
        let s = store(SessionLimits(maxLiveSessions: 3))
        var ids: [String] = []
        for _ in 0..<3 { ids.append(try s.create(sandbox: "sbx", scope: try scope("o/r"), upstreamToken: upstream).summary.id) }
        XCTAssertThrowsError(try s.create(sandbox: "sbx", scope: try scope("o/r"), upstreamToken: upstream)) {
            XCTAssertEqual($0 as? SessionStore.Failure, .tooManySessions(limit: 3))
        }
        try s.revoke(id: ids[0])
        XCTAssertNoThrow(try s.create(sandbox: "sbx", scope: try scope("o/r"), upstreamToken: upstream))
    }

    func testSandboxBinding() throws {
        let s = store()
        let (token, summary) = try s.create(sandbox: "alpha", scope: try scope("owner/repo"), upstreamToken: upstream)
        guard case let .otherSandbox(id, issuedFor) = s.check(token: reveal(token), sandbox: "beta") else { return XCTFail("bound") }
        XCTAssertEqual(id, summary.id)
        XCTAssertEqual(issuedFor, "alpha")
        guard case .valid = s.check(token: reveal(token), sandbox: "alpha") else { return XCTFail("valid on its own sandbox") }
    }

    func testEmptyScopeGrantsNothingAndStarIsLiteral() throws {
        let s = store()
        let (token, _) = try s.create(sandbox: "sbx", scope: SessionScope([]), upstreamToken: upstream)
        guard case let .valid(grant) = s.check(token: reveal(token), sandbox: "sbx") else { return XCTFail("valid") }
        XCTAssertNil(grant.scope.access(to: try GitRepository(host: "github.com", owner: "owner", name: "repo")))

        // A scope can never hold a wildcard, and entries match whole names only.
        XCTAssertThrowsError(try ScopeEntry(parsing: "owner/*:rw"))
        XCTAssertThrowsError(try ScopeEntry(parsing: "*/*"))
        let exact = SessionScope([try ScopeEntry(parsing: "owner/repo")])
        XCTAssertNil(exact.access(to: try GitRepository(host: "github.com", owner: "owner", name: "repo-2")))
        XCTAssertNil(exact.access(to: try GitRepository(host: "github.com", owner: "owner", name: "rep")))
        XCTAssertNil(exact.access(to: try GitRepository(host: "ghe.example.com", owner: "owner", name: "repo")))
    }

    func testRefusesEmptyUpstreamTokenAndBadTTL() throws {
        let s = store()
        XCTAssertThrowsError(try s.create(sandbox: "sbx", scope: try scope("o/r"), upstreamToken: Secret(""))) {
            XCTAssertEqual(String(describing: $0), "the upstream token is empty")
        }
        XCTAssertThrowsError(try s.create(sandbox: "sbx", scope: try scope("o/r"), upstreamToken: upstream, ttl: 0))
        XCTAssertThrowsError(try s.create(sandbox: "sbx", scope: try scope("o/r"), upstreamToken: upstream, ttl: 365 * 86400))
    }

    func testAuditNeverCarriesTokens() throws {
        let s = store()
        let (token, summary) = try s.create(sandbox: "sbx", scope: try scope("owner/repo:rw"), upstreamToken: upstream, ttl: 10)
        _ = s.check(token: reveal(token), sandbox: "other")
        try s.revoke(id: summary.id)
        let (token2, _) = try s.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream, ttl: 10)
        clock.advance(20)
        _ = s.check(token: reveal(token2), sandbox: "sbx")
        let all = sink.lines.joined(separator: "\n")
        XCTAssertTrue(all.contains("session_create"))
        XCTAssertTrue(all.contains("session_revoke"))
        XCTAssertTrue(all.contains("session_expire"))
        for secret in [reveal(token), reveal(token2), reveal(upstream)] {
            XCTAssertFalse(all.contains(secret))
            XCTAssertFalse(all.contains(String(secret.suffix(20))))
        }
    }
}
