import Foundation
import XCTest
import TestSupport
@testable import Gateway

/// The upstream TLS client context: made on the first HTTPS dial (a gateway that never dials
/// one never reads the system trust store), once, and shared; a bad `--upstream-ca` is still
/// refused when the gateway starts.
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
}
