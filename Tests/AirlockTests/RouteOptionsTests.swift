import ArgumentParser
import Foundation
import Gateway
import XCTest
@testable import airlock

/// `run --secret`: where route secrets come from, and that the variable a secret came from
/// never reaches the command, whatever its name.
final class RouteOptionsTests: XCTestCase {
    let value = "sk-" + UUID().uuidString.replacingOccurrences(of: "-", with: "")

    func plan(_ flags: [String], inherited: [String: String]) throws -> RunPlan {
        var argv = flags
        if geteuid() == 0 { argv += ["--user", "nobody"] }
        argv += ["--", "/bin/true"]
        return try RunPlan(command: try RunCommand.parse(argv), environment: inherited)
    }

    func testSecretVariableIsRemovedWhateverItsNameAndListed() throws {
        for name in RunPlanTests.names {
            var inherited = ["PATH": "/usr/bin:/bin", "LANG": "C"]
            inherited[name] = value
            let plan = try plan(["--secret", "corp=env:\(name)"], inherited: inherited)
            for (variable, held) in plan.environment {
                XCTAssertFalse(held.contains(value), "--secret corp=env:\(name): the secret reached the command as \(variable)")
            }
            XCTAssertTrue(plan.droppedNames.contains(name), "\(name): \(plan.droppedNames)")
            XCTAssertEqual(plan.routeSecrets["corp"]?.withRevealed { $0 }, value)
        }
    }

    func testSecretSources() throws {
        let options = try RouteOptions.parse(["--secret", "a=env:A_VAR", "--secret", "b=-"])
        let loaded = try options.load(environment: ["A_VAR": " \(value)\n"], readStandardInput: { Array("stdin-\(self.value)\n".utf8) })
        XCTAssertEqual(loaded.secrets["a"]?.withRevealed { $0 }, value)
        XCTAssertEqual(loaded.secrets["b"]?.withRevealed { $0 }, "stdin-\(value)")
        XCTAssertEqual(loaded.variables, ["A_VAR"])

        let dir = NSTemporaryDirectory() + "airlock-secret-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try (value + "\n").write(toFile: dir + "/key", atomically: true, encoding: .utf8)
        let file = try RouteOptions.parse(["--secret", "f=file:\(dir)/key"]).load(environment: [:])
        XCTAssertEqual(file.secrets["f"]?.withRevealed { $0 }, value)
        XCTAssertEqual(file.files, [dir + "/key"])
    }

    func testBadSecretsAreOneLineErrorsWithoutTheValue() throws {
        let cases: [([String], [String: String], String)] = [
            (["x=\(value)"], [:], "--secret x: give env:VAR, file:PATH or - (standard input); a value on the command line would show in ps"),
            (["x"], [:], "--secret x: expected NAME=env:VAR, NAME=file:PATH or NAME=-"),
            (["X=env:V"], [:], "--secret: 'X' is not a secret name (1–64 of a-z, 0-9, '-', '_', '.')"),
            (["x=env:V"], [:], "--secret x=env:V: the variable is not set"),
            (["x=env:V"], ["V": " "], "--secret x: the value is empty"),
            (["x=env:V", "x=env:V"], ["V": "v"], "--secret x: given twice"),
            (["x=-", "y=-"], [:], "--secret y=-: only one secret can come from standard input"),
            (["x=file:/nonexistent/key"], [:], "--secret x=file:/nonexistent/key: cannot read it (No such file or directory)"),
            // The system's own reason, not a stale one; a device that never ends is refused at the
            // limit instead of being read into memory.
            (["x=file:/"], [:], "--secret x=file:/: cannot read it (Is a directory)"),
            (["x=file:/dev/zero"], [:], "--secret x=file:/dev/zero: larger than 65536 bytes"),
            (["x=env:V"], ["V": "a\u{1}b"], "--secret x: expected one line without control characters"),
        ]
        for (secrets, environment, expected) in cases {
            let options = try RouteOptions.parse(secrets.flatMap { ["--secret", $0] })
            XCTAssertThrowsError(try options.load(environment: environment, readStandardInput: { Array("v".utf8) }), "\(secrets)") { error in
                XCTAssertEqual(String(describing: error), expected)
                XCTAssertFalse(String(describing: error).contains(value))
            }
        }
    }

    func testMissingSecretErrorNamesTheProvidersVariableWithoutReadingIt() {
        let preset = RouteOptions.missingSecretError([("anthropic", "anthropic")], environment: ["ANTHROPIC_API_KEY": value])
        XCTAssertEqual(preset?.description, "route anthropic (@anthropic-api) needs the secret anthropic: ANTHROPIC_API_KEY is set here; pass --secret anthropic=env:ANTHROPIC_API_KEY to use it")
        let plain = RouteOptions.missingSecretError([("anthropic", "anthropic")], environment: [:])
        XCTAssertEqual(plain?.description, "route anthropic needs the secret anthropic, which was not given: pass --secret anthropic=env:VAR, --secret anthropic=file:PATH or --secret anthropic=- (standard input)")
        XCTAssertNil(RouteOptions.missingSecretError([], environment: [:]))
    }
}
