@testable import airlock
import Glibc
import XCTest

/// `ProcessInfoEnvironment.current`: the environment `run` and `netns exec` read names and
/// values from (the command's environment, the secrets named by `env:`, the credential-looking
/// names left out), and the `--env NAME=VALUE` entries of `netns exec` and `sandbox exec`.
final class ProcessEnvironmentTests: XCTestCase {
    func testEveryEntryIsSplitAtItsFirstEqualsSign() throws {
        let names = ["AIRLOCK_TEST_PLAIN", "AIRLOCK_TEST_COMBINING", "AIRLOCK_TEST_EQUALS"]
        defer { names.forEach { unsetenv($0) } }
        setenv(names[0], "value", 1)
        // An "=" followed by a combining mark is one character with it: split as characters,
        // this entry had no "=" and was lost.
        setenv(names[1], "\u{301}accent", 1)
        setenv(names[2], "a=b=c", 1)
        let environment = ProcessInfoEnvironment.current
        XCTAssertEqual(environment[names[0]], "value")
        XCTAssertEqual(environment[names[1]], "\u{301}accent")
        XCTAssertEqual(environment[names[2]], "a=b=c")
        XCTAssertEqual(environment["PATH"], String(cString: getenv("PATH")))
    }

    /// `netns exec --env` and `sandbox exec --env` split their entries the same way.
    func testEnvFlagsAreSplitAtTheirFirstEqualsSign() throws {
        XCTAssertNoThrow(try NetnsExec.checkVariables(["A=\u{301}accent", "B=a=b", "C="]))
        XCTAssertEqual(NetnsExec.variables(["A=\u{301}accent", "B=a=b", "C="]), ["A": "\u{301}accent", "B": "a=b", "C": ""])
        for refused in ["=value", "no-equals"] {
            XCTAssertThrowsError(try NetnsExec.checkVariables([refused])) { error in
                XCTAssertEqual("\(error)", "--env '\(refused)' is not NAME=VALUE")
            }
        }
    }
}
