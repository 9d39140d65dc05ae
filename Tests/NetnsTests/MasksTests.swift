import XCTest
@testable import Netns

final class MasksTests: XCTestCase {
    func testDefaultListIsTheDesignsList() {
        XCTAssertEqual(Masks.defaults(home: "/home/ana"), [
            "/tmp/.X11-unix",
            "/home/ana/.ssh", "/home/ana/.aws", "/home/ana/.config/gcloud", "/home/ana/.config/gh",
            "/home/ana/.azure", "/home/ana/.netrc", "/home/ana/.kube", "/home/ana/.gnupg",
            "/home/ana/.docker", "/home/ana/.npmrc", "/home/ana/.pypirc", "/home/ana/.git-credentials",
            "/home/ana/.config/git/credentials", "/home/ana/.cargo/credentials", "/home/ana/.cargo/credentials.toml",
            "/home/ana/.vault-token", "/home/ana/.terraform.d",
        ])
    }

    func testTrailingSlashAndRootHome() {
        XCTAssertEqual(Masks.defaults(home: "/home/ana/")[1], "/home/ana/.ssh")
        XCTAssertEqual(Masks.defaults(home: "/")[1], "/.ssh")
    }

    func testExtraPathsAreExpandedAndAppendedOnce() throws {
        let paths = try Masks.paths(home: "/home/ana", extra: ["~/secrets", "/srv/keys/", "~/.ssh"])
        XCTAssertEqual(paths.suffix(2), ["/home/ana/secrets", "/srv/keys"])
        XCTAssertEqual(paths.filter { $0 == "/home/ana/.ssh" }.count, 1)
    }

    func testRelativeAndUnmaskablePathsAreRefusedByName() {
        XCTAssertThrowsError(try Masks.paths(home: "/h", extra: ["secrets"])) { error in
            XCTAssertEqual(String(describing: error), "mask path 'secrets' is not absolute")
        }
        for path in ["/", "/proc", "/run", "/a/../etc"] {
            XCTAssertThrowsError(try Masks.paths(home: "/h", extra: [path])) { error in
                XCTAssertEqual(String(describing: error), "mask path '\(path)' cannot be masked")
            }
        }
    }

    func testResolveDecidesKindAndSkipsMissing() throws {
        let dir = try TemporaryDirectoryForSpawn()
        let file = dir.path + "/resolv.conf"
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        let masks = Masks.resolve([dir.path, file, dir.path + "/missing"])
        XCTAssertEqual(masks, [Mask(path: dir.path, kind: .directory), Mask(path: file, kind: .file)])
    }
}
