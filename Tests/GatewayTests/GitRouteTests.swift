@testable import Gateway
import XCTest
@testable import GatewayCore

final class GitRouteTests: XCTestCase {
    private func parse(_ uri: String, method: String = "GET") throws -> GitRoute {
        try GitRoute.parse(method: method, uri: uri) { ["github.com", "ghe.example.com:8443"].contains($0) }
    }

    private func refusal(_ uri: String, method: String = "GET", file: StaticString = #filePath, line: UInt = #line) -> GitRoute.Refusal? {
        do {
            let route = try parse(uri, method: method)
            XCTFail("expected a refusal for \(uri), got \(route)", file: file, line: line)
            return nil
        } catch let refusal as GitRoute.Refusal {
            return refusal
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
            return nil
        }
    }

    func testValidSmartHTTPRoutes() throws {
        let adv = try parse("/git/github.com/owner/repo/info/refs?service=git-upload-pack")
        XCTAssertEqual(adv.repository.description, "github.com/owner/repo")
        XCTAssertEqual(adv.service, .uploadPack)
        XCTAssertEqual(adv.endpoint, .advertisement)
        XCTAssertEqual(adv.upstreamURI(basePath: ""), "/owner/repo.git/info/refs?service=git-upload-pack")

        let push = try parse("/git/github.com/owner/repo.git/info/refs?service=git-receive-pack")
        XCTAssertEqual(push.service, .receivePack)
        XCTAssertEqual(push.repository.name, "repo")

        let rpc = try parse("/git/github.com/owner/repo.git/git-upload-pack", method: "POST")
        XCTAssertEqual(rpc.endpoint, .rpc)
        XCTAssertEqual(rpc.upstreamURI(basePath: "/prefix/"), "/prefix/owner/repo.git/git-upload-pack")

        let recv = try parse("/git/github.com/owner/repo/git-receive-pack", method: "POST")
        XCTAssertEqual(recv.service, .receivePack)
        XCTAssertEqual(recv.service.requiredAccess, .rw)

        let withPort = try parse("/git/ghe.example.com:8443/o/r/git-upload-pack", method: "POST")
        XCTAssertEqual(withPort.repository.host, "ghe.example.com:8443")
    }

    func testCaseInsensitiveMatchingKeepsSpellingUpstream() throws {
        let route = try parse("/git/GitHub.com/Owner/Repo.GIT/info/refs?service=git-upload-pack")
        XCTAssertEqual(route.repository, try GitRepository(host: "github.com", owner: "owner", name: "repo"))
        XCTAssertEqual(route.upstreamURI(basePath: ""), "/Owner/Repo.git/info/refs?service=git-upload-pack")
    }

    func testTraversalAndEncodingTricksAre400() throws {
        let cases = [
            "/git/github.com/owner/../other/info/refs?service=git-upload-pack",
            "/git/github.com/owner/repo.git/../other.git/info/refs?service=git-upload-pack",
            "/git/github.com/owner/%2e%2e/info/refs?service=git-upload-pack",
            "/git/github.com/owner%2fother/repo/info/refs?service=git-upload-pack",
            "/git/github.com/owner/repo%2F..%2Fx/git-upload-pack",
            "/git/github.com//owner/repo/info/refs?service=git-upload-pack",
            "/git/github.com/owner//repo/git-upload-pack",
            "/git/github.com/owner\\repo/git-upload-pack",
            "/git/github.com/owner/re\u{0}po/git-upload-pack",
            "/git/github.com/own\u{0435}r/repo/git-upload-pack", // Cyrillic е
            "/git/github.com/owner/rep\u{2024}o/git-upload-pack", // one dot leader
            "/git/github.com/owner/a..b/git-upload-pack",
            "/git/github.com/./repo/git-upload-pack",
            "/git/github.com/owner/re po/git-upload-pack",
            "/git/github.com/owner/*/git-upload-pack",
        ]
        for uri in cases {
            let r = refusal(uri, method: "POST")
            XCTAssertEqual(r?.status, 400, uri)
            XCTAssertTrue(r?.reason.hasPrefix("airlock: ") ?? false, uri)
        }
        XCTAssertEqual(refusal("/git/github.com/owner/%2e%2e/x", method: "POST")?.reason,
                       "airlock: percent-encoded characters are not allowed in git paths")
        XCTAssertEqual(refusal("/git/github.com/owner/a..b/git-upload-pack", method: "POST")?.reason,
                       "airlock: repository name \"a..b\" contains `..`")
    }

    /// LFS paths are `LFSRoute`'s; the smart-HTTP parser refuses them (reached only where
    /// there is no session, such as a run without --repo).
    func testLFSPathsAreNotSmartHTTP() {
        let r = refusal("/git/github.com/owner/repo.git/info/lfs/objects/batch", method: "POST")
        XCTAssertEqual(r?.status, 403)
        XCTAssertEqual(r?.reason, "airlock: Git LFS for github.com/owner/repo needs a session that covers it")
        XCTAssertEqual(refusal("/git/github.com/owner/repo.git/info/lfs/locks/verify", method: "POST")?.status, 403)
    }

    func testDumbAndUnknownPathsAre404() {
        for uri in [
            "/git/github.com/owner/repo/HEAD",
            "/git/github.com/owner/repo/objects/info/packs",
            "/git/github.com/owner/repo/info/refs",
            "/git/github.com/owner/repo/info/refs?service=git-foo",
            "/git/github.com/owner/repo",
            "/git/github.com/owner",
            "/other/path",
            "/git/gitlab.com/owner/repo/info/refs?service=git-upload-pack",
        ] {
            XCTAssertEqual(refusal(uri)?.status, 404, uri)
        }
        XCTAssertEqual(refusal("/git/gitlab.com/owner/repo/info/refs?service=git-upload-pack")?.reason,
                       "airlock: gitlab.com is not a configured git host")
    }

    func testUploadArchiveIsRefused() {
        let r = refusal("/git/github.com/owner/repo/info/refs?service=git-upload-archive")
        XCTAssertEqual(r?.status, 403)
        XCTAssertEqual(r?.reason, "airlock: git-upload-archive is not offered")
        XCTAssertEqual(refusal("/git/github.com/owner/repo/git-upload-archive", method: "POST")?.status, 403)
    }

    func testWrongMethodIs405() {
        XCTAssertEqual(refusal("/git/github.com/owner/repo/git-upload-pack", method: "GET")?.status, 405)
        XCTAssertEqual(refusal("/git/github.com/owner/repo/info/refs?service=git-upload-pack", method: "POST")?.status, 405)
    }

    func testScopeEntryParsing() throws {
        XCTAssertEqual(try ScopeEntry(parsing: "Owner/Repo").description, "github.com/owner/repo:read")
        XCTAssertEqual(try ScopeEntry(parsing: "owner/repo.git:rw").description, "github.com/owner/repo:rw")
        // The URL a user copies names the same repository.
        XCTAssertEqual(try ScopeEntry(parsing: "https://github.com/Owner/Repo.git").description, "github.com/owner/repo:read")
        XCTAssertEqual(try ScopeEntry(parsing: "https://ghe.example.com/o/r/:rw").description, "ghe.example.com/o/r:rw")
        XCTAssertEqual(try ScopeEntry(parsing: "ghe.example.com:8443/o/r:rw").description, "ghe.example.com:8443/o/r:rw")
        XCTAssertThrowsError(try ScopeEntry(parsing: "owner/*")) {
            XCTAssertEqual(String(describing: $0), "scope entry \"owner/*\": repository name \"*\" contains `*`; wildcards are not supported, name each repository")
        }
        XCTAssertThrowsError(try ScopeEntry(parsing: "owner/repo:write")) {
            XCTAssertEqual(String(describing: $0), "scope entry \"owner/repo:write\": access must be `read` or `rw`, not \"write\"")
        }
        XCTAssertThrowsError(try ScopeEntry(parsing: "repo"))
        XCTAssertThrowsError(try ScopeEntry(parsing: "a/b/c/d"))
        XCTAssertThrowsError(try ScopeEntry(parsing: "owner/../x"))
    }
}
