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
    private var pool: NIOThreadPool!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
    }

    override func tearDown() {
        try? group.syncShutdownGracefully()
        try? pool.syncShutdownGracefully()
    }

    private func dialer(_ policy: String, _ resolver: RecordingResolver) throws -> PolicyDialer {
        let audit = AuditLog(sink: MemoryAuditSink())
        let store = PolicyStore(initial: try Policy.parse(policy, source: "/test/policy"), path: nil, extra: nil, audit: audit)
        return PolicyDialer(policy: store, limits: GatewayLimits(), forbidden: [], threadPool: pool, resolver: resolver)
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
}
