import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// A session is bound to the sandbox it was issued for: one `SessionStore` behind two
/// sandboxes' gateways (real listeners on 127.0.0.1, the real `GitRouter`, a real git
/// server upstream), and a token issued for `alpha` works on alpha's listener and is
/// refused on beta's, by the binding, not as an unknown token.
final class SessionBindingTests: XCTestCase {
    static let realToken = "ghp_BINDING" + UUID().uuidString.replacingOccurrences(of: "-", with: "")

    func testOneStoreBehindTwoSandboxesHonoursOnlyTheSandboxTheSessionWasIssuedFor() async throws {
        let dir = try TemporaryDirectory(prefix: "airlock-binding")
        let ca = try TestCA(in: dir.path, names: ["127.0.0.1"])
        let upstream = try GitUpstream(in: dir.path, ca: ca, repositories: ["owner/app"], realToken: Self.realToken)
        defer { _ = upstream.stop() }
        let upstreams = try GitUpstreams(mappings: [GitUpstreams.Mapping(parsing: upstream.mapping())], caFile: ca.caFile)

        let storeSink = MemoryAuditSink()
        let store = SessionStore(audit: AuditLog(sink: storeSink))
        let alpha = try ServedSandbox(name: "alpha", sessions: store, upstreams: upstreams)
        let beta = try ServedSandbox(name: "beta", sessions: store, upstreams: upstreams)

        let issued = try store.create(
            sandbox: "alpha", scope: SessionScope([try ScopeEntry(parsing: "owner/app")]), upstreamToken: Secret(Self.realToken))
        let token = issued.token.withRevealed { $0 }

        // On its own sandbox the token reaches the upstream with the real credential.
        let own = try alpha.getRefs(token: token)
        XCTAssertTrue(own.stdout.hasPrefix("HTTP/1.1 200"), own.description)
        XCTAssertTrue(own.stdout.contains("refs/heads/main"), own.description)

        // Replayed through the other sandbox: refused, saying why, and audited as the binding.
        let replayed = try beta.getRefs(token: token)
        XCTAssertTrue(replayed.stdout.hasPrefix("HTTP/1.1 401"), replayed.description)
        XCTAssertTrue(replayed.stdout.contains("airlock: the session token was issued for another sandbox"), replayed.description)
        XCTAssertFalse(replayed.stdout.contains("refs/heads/main"), replayed.description)
        let denial = beta.auditLines.last { $0.contains("\"event\":\"git_deny\"") }
        XCTAssertNotNil(denial, beta.auditLines.joined(separator: "\n"))
        XCTAssertTrue(denial?.contains("\"reason\":\"session issued for sandbox alpha presented on beta\"") == true, denial ?? "")
        XCTAssertTrue(denial?.contains("\"session\":\"\(issued.summary.id)\"") == true, denial ?? "")
        XCTAssertFalse((beta.auditLines + alpha.auditLines + storeSink.lines).joined().contains(token), "no token in any audit line")

        // The refusal did not use the session up: it still works where it was issued.
        let again = try alpha.getRefs(token: token)
        XCTAssertTrue(again.stdout.hasPrefix("HTTP/1.1 200"), again.description)

        try await alpha.stop()
        try await beta.stop()
    }
}

/// One sandbox's gateway on 127.0.0.1: its `airlock.internal` listener (TCP 80 in the
/// sandbox) served by a `GatewayServer` whose git router checks tokens against `sessions`.
private final class ServedSandbox {
    let name: String
    let port: UInt16
    private let sink = MemoryAuditSink()
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let pool = LookupThreads(numberOfThreads: 1)
    private let serviceGroup: ServiceGroup
    private let running: Task<Void, Error>

    init(name: String, sessions: SessionStore, upstreams: GitUpstreams) throws {
        self.name = name
        let audit = AuditLog(sink: sink, sandbox: name)
        let policy = PolicyStore(initial: Policy.denyAll, path: nil, extra: nil, audit: audit)
        let (fd, port) = try ServerTests.listeningSocket()
        self.port = port
        let server = GatewayServer(
            configuration: GatewayConfiguration(
                sandbox: name, gatewayAddress: IPAddress("169.254.200.1")!, policy: policy, audit: audit,
                internalRouter: GitRouter(upstreams: upstreams, sessions: sessions, audit: audit)),
            listeners: GatewayListeners(http: fd), group: group, lookups: pool)
        let serviceGroup = ServiceGroup(services: [server], logger: Logger(label: "test"))
        self.serviceGroup = serviceGroup
        running = Task { try await serviceGroup.run() }
        XCTAssertTrue(Wait.forTCP(port: port), "\(name)'s listener serves")
    }

    /// `GET /git/github.com/owner/app/info/refs?service=git-upload-pack` on this sandbox's
    /// listener, as git inside it would send it (`Host: airlock.internal`, the session token
    /// as a bearer token); curl's output with the response head.
    func getRefs(token: String) throws -> ProcessResult {
        try Run.process([
            "curl", "-sS", "-i", "-H", "Host: airlock.internal", "-H", "Authorization: Bearer \(token)",
            "http://127.0.0.1:\(port)/git/github.com/owner/app/info/refs?service=git-upload-pack",
        ], timeout: 30)
    }

    /// The audit lines written so far.
    var auditLines: [String] { sink.lines }

    func stop() async throws {
        await serviceGroup.triggerGracefulShutdown()
        try await running.value
        try await group.shutdownGracefully()
        pool.shutdown()
    }
}
