import Foundation
import NIOCore
import NIOPosix
import XCTest
import TestSupport
@testable import Gateway
@testable import GatewayCore

/// The upstream TLS client context: made on the first HTTPS dial (a gateway that never dials
/// one never reads the system trust store), once, and shared; a bad `--upstream-ca` is still
/// refused when the gateway starts; an upstream is talked to only when its certificate
/// chains to a trusted CA and names the host dialled.
final class UpstreamTLSTests: XCTestCase {
    func testContextIsMadeOnFirstUseOnceAndShared() throws {
        let tls = try UpstreamTLS(caFile: nil)
        XCTAssertFalse(tls.isMade, "nothing read before the first dial")
        let upstreams = try GitUpstreams(mappings: [], tls: tls)
        let route = RouteUpstreamTrust(context: tls)
        XCTAssertFalse(tls.isMade, "building the upstreams does not make it either")
        XCTAssertTrue(upstreams.upstream(for: "github.com")?.target.tls === route.context, "git and routes share one context")
        let first = try tls.context()
        XCTAssertTrue(tls.isMade)
        XCTAssertTrue(first === (try tls.context()), "made once")
    }

    func testUnusableCAFileIsRefusedWhenTheGatewayStarts() throws {
        let dir = try TemporaryDirectory()
        let empty = dir.file("empty.pem")
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data("not a certificate\n".utf8)))
        XCTAssertThrowsError(try UpstreamTLS(caFile: empty)) {
            XCTAssertEqual(String(describing: $0), "--upstream-ca \(empty): cannot read a PEM certificate (failedToLoadCertificate)")
        }
        XCTAssertThrowsError(try RouteUpstreamTrust(caFile: dir.file("missing.pem"))) {
            XCTAssertTrue(String(describing: $0).hasPrefix("--upstream-ca \(dir.file("missing.pem")): cannot read a PEM certificate"))
        }
    }

    func testAnUpstreamIsTalkedToOnlyWithATrustedCertificateForItsName() throws {
        let dir = try TemporaryDirectory()
        let ca = try TestCA(in: dir.file("ca"), names: ["web.test"])
        let web = try WebUpstream(tls: ca)
        defer { web.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let pool = LookupThreads(numberOfThreads: 1)
        defer { pool.shutdown() }
        let loopback = IPAddress("127.0.0.1")!
        let resolver = RecordingResolver(["web.test.": [loopback], "other.test.": [loopback]])
        let policy = try Policy.parse("web.test:\(web.port)\nother.test:\(web.port)\nallow-private 127.0.0.0/8\n", source: "/test/policy")
        let store = PolicyStore(initial: policy, path: nil, extra: nil, audit: AuditLog(sink: MemoryAuditSink()))
        let dialer = PolicyDialer(policy: store, limits: GatewayLimits(), forbidden: [], lookups: pool, resolver: resolver,
                                  cache: .resolverAnswers())
        func dial(_ host: String, _ tls: UpstreamTLS) throws -> any Channel {
            try dialer.dial(UpstreamTarget(host: host, port: Int(web.port), tls: tls), on: group.next()).wait()
        }
        func assertRefused(_ host: String, _ tls: UpstreamTLS, _ why: String) {
            XCTAssertThrowsError(try dial(host, tls), why) { error in
                guard case .connectFailed(let failed, _, let reason)? = error as? DialError else { return XCTFail("\(error)") }
                XCTAssertEqual(failed, host)
                XCTAssertTrue(reason.hasPrefix("TLS: "), reason)
            }
        }
        // The system store alone does not trust the test CA.
        assertRefused("web.test", try UpstreamTLS(caFile: nil), "an untrusted chain")
        // With the CA given, its certificate is accepted for the name it was issued for only.
        let trusted = try UpstreamTLS(caFile: ca.caFile)
        try dial("web.test", trusted).close().wait()
        assertRefused("other.test", trusted, "a certificate for another name")
    }
}
