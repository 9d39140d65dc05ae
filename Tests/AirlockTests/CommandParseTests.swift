import ArgumentParser
import XCTest
@testable import airlock

/// `Airlock.parse`: a command named by its leading words is parsed on its own, as the root of
/// its own tree, and must mean exactly what the whole tree's parse means: the same values for
/// what it accepts, and for everything else (usage errors, `--help`, `--version`, completion
/// scripts) the whole tree's own answer and message.
final class CommandParseTests: XCTestCase {
    /// The whole tree's parse, as swift-argument-parser's `main` does it.
    private func treeParse(_ arguments: [String]) throws -> ParsableCommand {
        try Airlock.parseAsRoot(arguments)
    }

    /// What a parse amounts to: the command's type and every value it holds, or the message
    /// and exit code of its error.
    private func outcome(_ parse: () throws -> ParsableCommand) -> String {
        do {
            let command = try parse()
            return "parsed \(String(reflecting: command))"
        } catch {
            return "error \(Airlock.exitCode(for: error).rawValue): \(Airlock.fullMessage(for: error))"
        }
    }

    private func assertSameAsTree(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) {
        let fast = outcome { try Airlock.parse(arguments) }
        let tree = outcome { try treeParse(arguments) }
        XCTAssertEqual(fast, tree, "airlock \(arguments.joined(separator: " "))", file: file, line: line)
    }

    func testCommandLinesThatParseGiveTheTreesValues() throws {
        let lines: [[String]] = [
            ["run", "--", "true"],
            ["run", "--user", "nobody", "--", "/bin/true", "--help"],
            ["run", "--repo", "octo/app:rw", "--repo", "github.com/octo/lib", "--token-env", "GH_TOKEN",
             "--allow", "pypi.org", "--allow=@npm", "--json", "--share-tmp", "--", "sh", "-c", "echo hi"],
            ["run", "--audit-log", "/tmp/audit", "--max-connections", "7", "--idle-timeout=9", "--secret", "api=env:KEY",
             "--route", "api https://api.example.com/v1 header x-api-key=secret:api", "--", "env"],
            ["run", "--policy", "/etc/airlock/policy", "--protect", "main", "--allow-force-push", "topic/*", "--", "git", "push"],
            ["netns", "create", "box1", "--json"],
            ["netns", "exec", "box1", "--", "id", "-u"],
            ["netns", "destroy", "box1"],
            ["gateway", "serve", "--all", "--users", "agents"],
            ["sandbox", "exec", "mine", "--env", "A=b", "--", "true"],
            ["session", "list", "box1"],
            ["policy", "check", "/etc/airlock/policy"],
            ["doctor", "--json"],
        ]
        for arguments in lines {
            let parsed = try Airlock.parse(arguments)
            XCTAssertNotEqual(_typeName(type(of: parsed), qualified: false), "HelpCommand", "airlock \(arguments.joined(separator: " ")) is not a help request")
            assertSameAsTree(arguments)
        }
        let run = try XCTUnwrap(try Airlock.parse(["run", "--repo", "octo/app:rw", "--allow", "pypi.org", "--", "sh", "-c", "x"]) as? RunCommand)
        XCTAssertEqual(run.repos, ["octo/app:rw"])
        XCTAssertEqual(run.gateway.allow, ["pypi.org"])
        XCTAssertEqual(run.command, ["sh", "-c", "x"])
    }

    func testEverythingElseIsTheTreesAnswer() {
        let lines: [[String]] = [
            ["run"],
            ["run", "--token-env", "A", "--token-file", "B", "--", "true"],
            ["run", "--no-such-flag", "--", "true"],
            ["run", "--max-connections", "many", "--", "true"],
            ["run", "--version"],
            ["run", "--help"],
            ["run", "-h"],
            ["run", "help"],
            ["netns", "exec"],
            ["netns", "create"],
            ["netns", "create", "a", "b"],
            ["netns", "nosuch"],
            ["sandbox", "destroy", "--help"],
            ["gateway", "request", "serve", "box", "--policy"],
            ["--version"],
            ["help", "run"],
            [],
        ]
        for arguments in lines { assertSameAsTree(arguments) }
    }

    /// The help a user reads is the whole tree's: asked below `run`, it is `airlock run`'s.
    func testHelpIsTheTreesHelp() throws {
        let help = try Airlock.parse(["run", "--help"])
        XCTAssertEqual(_typeName(type(of: help), qualified: false), "HelpCommand")
        let described = String(reflecting: help)
        XCTAssertTrue(described.contains("airlock.Airlock, airlock.RunCommand"), described)
    }

    /// Each command that has no subcommands names its parents, so that parsed on its own it
    /// skips the completion-script probe, which only the whole tree answers.
    func testEveryLeafNamesItsParents() {
        func visit(_ command: ParsableCommand.Type, path: [String]) {
            let name = command.configuration.commandName ?? "?"
            let subcommands = command.configuration.subcommands
            if subcommands.isEmpty {
                XCTAssertEqual(command.configuration._superCommandName, path.joined(separator: " "), "\(path + [name])")
            } else {
                XCTAssertNil(command.configuration._superCommandName, "\(path + [name])")
                // A parent takes no options of its own, only the parser's --version and
                // --help, so a leaf's options mean the same on their own as below it.
                let options = Airlock.helpMessage(for: command, columns: 200).split(separator: "\n")
                    .filter { $0.hasPrefix("  -") }
                    .map { $0.split(separator: " ").prefix { $0.hasPrefix("-") }.joined(separator: " ") }
                XCTAssertEqual(options, ["--version", "-h, --help"], "\(path + [name])")
                for subcommand in subcommands { visit(subcommand, path: path + [name]) }
            }
        }
        visit(Airlock.self, path: [])
    }

    /// A completion script asked of a command parsed on its own is the whole tree's script.
    func testCompletionScriptRequestsAreTheTrees() {
        assertSameAsTree(["run", "--generate-completion-script", "bash"])
        assertSameAsTree(["netns", "exec", "--generate-completion-script"])
    }
}
