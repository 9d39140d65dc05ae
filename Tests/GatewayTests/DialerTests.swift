import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest
@testable import Gateway
@testable import GatewayCore

/// A resolver that records the names it is asked for and answers from a table.
final class RecordingResolver: NameResolver {
    let answers: [String: [IPAddress]]
    let asked = NIOLockedValueBox<[String]>([])

    init(_ answers: [String: [IPAddress]]) {
        self.answers = answers
    }

    func addresses(of name: String) throws -> [IPAddress] {
        asked.withLockedValue { $0.append(name) }
        guard let found = answers[name] else { throw DialError.unresolvable(host: name, reason: "Name or service not known") }
        return found
    }
}

/// The real `PolicyDialer` with a recording resolver: what it asks the host's resolver,
/// and which addresses it lets through per name. Nothing is dialled: every case is refused
/// before a connect.
final class DialerTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var pool: LookupThreads!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        pool = LookupThreads(numberOfThreads: 1)
    }

    override func tearDown() {
        try? group.syncShutdownGracefully()
        pool.shutdown()
    }

    private func dialer(_ policy: String, _ resolver: RecordingResolver, cache: ResolutionCache = .resolverAnswers()) throws -> PolicyDialer {
        let audit = AuditLog(sink: MemoryAuditSink())
        let store = PolicyStore(initial: try Policy.parse(policy, source: "/test/policy"), path: nil, extra: nil, audit: audit)
        return PolicyDialer(policy: store, limits: GatewayLimits(), forbidden: [], lookups: pool, resolver: resolver, cache: cache)
    }

    private func refusal(_ dialer: PolicyDialer, _ host: String, file: StaticString = #filePath, line: UInt = #line) -> DialError? {
        do {
            _ = try dialer.dial(UpstreamTarget(host: host, port: 443), on: group.next()).wait()
            XCTFail("\(host) was dialled", file: file, line: line)
            return nil
        } catch {
            return error as? DialError
        }
    }

    func testNamesUnderAWildcardAreLookedUpAsAbsoluteNamesOnly() throws {
        let resolver = RecordingResolver([:])
        let dialer = try dialer("*.corp.example\n", resolver)
        let error = try XCTUnwrap(refusal(dialer, "secret-data-4f2a.corp.example"))
        XCTAssertEqual(resolver.asked.withLockedValue { $0 }, ["secret-data-4f2a.corp.example."],
                       "one absolute name, never tried under the host's search domains")
        guard case .unresolvable = error else { return XCTFail("\(error)") }
    }

    func testTheSystemResolverIsAskedForTheAbsoluteName() {
        XCTAssertEqual(PolicyDialer.absoluteName("pypi.org"), "pypi.org.")
        XCTAssertEqual(PolicyDialer.absoluteName("pypi.org."), "pypi.org.")
    }

    func testAllowPrivateForAHostAppliesToThatNameOnly() throws {
        let loopback = IPAddress("127.0.0.1")!
        let resolver = RecordingResolver(["web.test.": [loopback], "other.test.": [loopback], "a.internal.test.": [loopback]])
        let dialer = try dialer("web.test\nother.test\n*.internal.test\nallow-private 127.0.0.0/8 for web.test\n", resolver)
        let other = try XCTUnwrap(refusal(dialer, "other.test"))
        guard case .refused(let host, let reason) = other else { return XCTFail("\(other)") }
        XCTAssertEqual(host, "other.test")
        XCTAssertEqual(reason, "resolves to 127.0.0.1 is loopback; add allow-private 127.0.0.0/8 to permit it")
        XCTAssertEqual(other.status.code, 403)
        XCTAssertNotNil(refusal(dialer, "a.internal.test"))

        let policy = try Policy.parse("web.test\nother.test\nallow-private 127.0.0.0/8 for web.test\nallow-private 10.0.0.0/8 for *.corp.test\n",
                                      source: "/test/policy")
        XCTAssertEqual(policy.checkResolved(loopback, for: "web.test"), .allowed(rule: "allow-private 127.0.0.0/8 for web.test"))
        XCTAssertFalse(policy.checkResolved(loopback, for: "other.test").isAllowed)
        XCTAssertFalse(policy.checkResolved(loopback).isAllowed, "a literal is not the name")
        XCTAssertEqual(policy.checkResolved(IPAddress("10.1.2.3")!, for: "git.corp.test"), .allowed(rule: "allow-private 10.0.0.0/8 for *.corp.test"))
        XCTAssertFalse(policy.checkResolved(IPAddress("10.1.2.3")!, for: "corp.test").isAllowed)
    }

    func testAllowPrivateForAHostParsesFromFileAndFlag() throws {
        let flags = try Policy.rules(allow: ["web.test"], allowPrivate: ["127.0.0.0/8=web.test", "10.0.0.0/8"], resolve: [], source: "command line")
        XCTAssertEqual(flags.checkResolved(IPAddress("127.0.0.1")!, for: "web.test"), .allowed(rule: "allow-private 127.0.0.0/8 for web.test"))
        XCTAssertFalse(flags.checkResolved(IPAddress("127.0.0.1")!, for: "pypi.org").isAllowed)
        XCTAssertEqual(flags.checkResolved(IPAddress("10.0.0.1")!, for: "pypi.org"), .allowed(rule: "allow-private 10.0.0.0/8"),
                       "the explicit global form still applies to every name")
        for bad in ["allow-private 127.0.0.0/8 for web.test:8080", "allow-private 127.0.0.0/8 for !web.test", "allow-private 127.0.0.0/8 to web.test"] {
            XCTAssertThrowsError(try Policy.parse(bad + "\n", source: "p"), bad)
        }
    }

    // MARK: dialling on the socket loop's thread (`LoopConnect`)

    /// `dialHere` declines a name only the resolver can answer (the full path then dials
    /// it), and applies the same address checks as `dial` to pinned and kept answers.
    func testTheLoopsDialDeclinesNamesThatNeedALookupAndChecksTheRest() throws {
        let loopback = IPAddress("127.0.0.1")!
        let resolver = RecordingResolver(["kept.test.": [loopback]])
        let cache = ResolutionCache.resolverAnswers()
        let dialer = try dialer("unpinned.test\npinned.test\nresolve pinned.test=127.0.0.1\nkept.test\n", resolver, cache: cache)
        let loop = try SocketLoop()
        try loop.start()
        defer { loop.shutdown() }
        func dialHere(_ host: String) -> (Bool, Result<CInt, DialError>?) {
            var outcome: Result<CInt, DialError>?
            let dialled = dialer.dialHere(UpstreamTarget(host: host, port: 443), loop: loop) { outcome = $0 }
            return (dialled, outcome)
        }

        let (unpinned, never) = dialHere("unpinned.test")
        XCTAssertFalse(unpinned, "a name that needs the resolver is left to the full path")
        XCTAssertNil(never)
        XCTAssertEqual(resolver.asked.withLockedValue { $0 }, [], "and the loop's thread never asks the resolver")

        let (pinned, pinnedOutcome) = dialHere("pinned.test")
        XCTAssertTrue(pinned)
        guard case .failure(.refused(let host, let reason))? = pinnedOutcome else { return XCTFail("\(String(describing: pinnedOutcome))") }
        XCTAssertEqual(host, "pinned.test")
        XCTAssertEqual(reason, "resolves to 127.0.0.1 is loopback; add allow-private 127.0.0.0/8 to permit it")

        // Once `dial` has the resolver's answer, the loop uses the kept answer, checked again.
        XCTAssertNotNil(refusal(dialer, "kept.test"))
        let (kept, keptOutcome) = dialHere("kept.test")
        XCTAssertTrue(kept, "a kept answer needs no lookup")
        guard case .failure(.refused(_, let keptReason))? = keptOutcome else { return XCTFail("\(String(describing: keptOutcome))") }
        XCTAssertEqual(keptReason, "resolves to 127.0.0.1 is loopback; add allow-private 127.0.0.0/8 to permit it")
        XCTAssertEqual(resolver.asked.withLockedValue { $0 }, ["kept.test."], "asked once, by `dial`")
    }

    // MARK: the resolver's answers, kept for a short while

    func testAKeptAnswerIsCheckedAgainstThePolicyInForceAtEachDial() throws {
        let loopback = IPAddress("127.0.0.1")!
        let resolver = RecordingResolver(["web.test.": [loopback]])
        let cache = ResolutionCache.resolverAnswers()
        // The first policy lets web.test reach loopback; the dial then only fails to connect
        // (no listener on 127.0.0.1:9, the discard port), which means it passed the checks.
        let permissive = try dialer("web.test:9\nallow-private 127.0.0.0/8 for web.test\n", resolver, cache: cache)
        do {
            _ = try permissive.dial(UpstreamTarget(host: "web.test", port: 9), on: group.next()).wait()
        } catch DialError.connectFailed(let host, let port, _) {
            XCTAssertEqual(host, "web.test")
            XCTAssertEqual(port, 9)
        }
        // The narrower policy gets the kept answer, and refuses it.
        let strict = try dialer("web.test:9\n", resolver, cache: cache)
        let error = try XCTUnwrap(refusal(strict, "web.test"))
        guard case .refused(_, let reason) = error else { return XCTFail("\(error)") }
        XCTAssertEqual(reason, "resolves to 127.0.0.1 is loopback; add allow-private 127.0.0.0/8 to permit it")
        XCTAssertEqual(resolver.asked.withLockedValue { $0 }, ["web.test."], "one lookup for both dials")
    }

    func testAnAnswerIsKeptForItsLifetimeOnlyAndAFailedLookupIsNotKept() throws {
        let loopback = IPAddress("127.0.0.1")!
        let resolver = RecordingResolver(["web.test.": [loopback]])
        let now = NIOLockedValueBox<Double>(100)
        let cache = ResolutionCache.resolverAnswers(clock: { now.withLockedValue { $0 } })
        let dialer = try dialer("web.test\nmissing.test\n", resolver, cache: cache)
        _ = refusal(dialer, "web.test")
        now.withLockedValue { $0 += 29 }
        _ = refusal(dialer, "web.test")
        XCTAssertEqual(resolver.asked.withLockedValue { $0 }, ["web.test."], "kept within 30 s")
        now.withLockedValue { $0 += 2 }
        _ = refusal(dialer, "web.test")
        XCTAssertEqual(resolver.asked.withLockedValue { $0 }, ["web.test.", "web.test."], "asked again once expired")
        for _ in 0..<2 {
            let error = try XCTUnwrap(refusal(dialer, "missing.test"))
            guard case .unresolvable = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(resolver.asked.withLockedValue { $0 }.filter { $0 == "missing.test." }.count, 2,
                       "a failed lookup is asked again")
    }

    func testTheCacheKeepsAtMostItsCapacityDroppingTheSoonestToExpire() {
        let now = NIOLockedValueBox<Double>(0)
        let cache = ExpiringCache<[IPAddress]>(lifetime: 30, capacity: 2, clock: { now.withLockedValue { $0 } })
        let address = [IPAddress("192.0.2.1")!]
        cache.store(address, for: "a.test.")
        now.withLockedValue { $0 = 1 }
        cache.store(address, for: "b.test.")
        cache.store(address, for: "c.test.")
        XCTAssertEqual(cache.count, 2)
        XCTAssertNil(cache.value(for: "a.test."), "the oldest answer made room")
        XCTAssertEqual(cache.value(for: "b.test."), address)
        XCTAssertEqual(cache.value(for: "c.test."), address)
    }
}
