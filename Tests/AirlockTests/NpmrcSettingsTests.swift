import Foundation
import TestSupport
import XCTest
@testable import airlock

/// A masked `~/.npmrc` is announced with the settings npm will not see, by name only:
/// credentials (tokens, passwords, client keys) are never named, values never shown.
final class NpmrcSettingsTests: XCTestCase {
    func testOnlyNonCredentialSettingsAreNamed() {
        let text = """
            ; the team's registry
            registry=https://npm.corp.example/
            @acme:registry = https://npm.corp.example/acme/
            //npm.corp.example/:_authToken=npm_SECRETVALUE
            //registry.npmjs.org/:_auth=dXNlcjpwYXNz
            _password=c2VjcmV0
            email=dev@example.com
            strict-ssl=false\r
            # registry=https://commented.example/
            registry=https://again.example/
            certfile=/home/u/client.pem
            """
        XCTAssertEqual(NpmrcSettings.nonCredentialNames(in: text), ["registry", "@acme:registry", "strict-ssl"])
        XCTAssertEqual(NpmrcSettings.nonCredentialNames(in: "//npm.corp.example/:_authToken=x\n_auth=y\n"), [])
    }

    func testTheNoticeNamesTheSettingsAndNeverAValue() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/.npmrc"
        try "registry=https://npm.corp.example/\n//npm.corp.example/:_authToken=npm_SECRETVALUE\n".write(toFile: path, atomically: true, encoding: .utf8)
        let notice = try XCTUnwrap(NpmrcSettings.notice(forMasked: path))
        XCTAssertEqual(notice, "airlock: \(path) is masked (npm keeps tokens there), so npm inside does not see its registry; "
                       + "put those lines in the project's .npmrc, or pass npm_config_registry=URL in the environment")
        XCTAssertFalse(notice.contains("SECRET") || notice.contains("corp.example"), notice)

        try "//npm.corp.example/:_authToken=npm_SECRETVALUE\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertNil(NpmrcSettings.notice(forMasked: path), "only credentials: the masked line says enough")
        XCTAssertNil(NpmrcSettings.notice(forMasked: dir.path + "/missing"))
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/link", withDestinationPath: path)
        XCTAssertNil(NpmrcSettings.notice(forMasked: dir.path + "/link"), "a symlink is not followed")
    }
}
