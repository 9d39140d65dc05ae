import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest
@testable import Gateway

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

/// The real `PolicyDialer` with a recording resolver: what it asks the host's resolver.
/// Nothing is dialled: every case is refused before a connect.
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
}
