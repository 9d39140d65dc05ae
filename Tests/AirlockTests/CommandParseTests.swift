import ArgumentParser
import Foundation
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

    // MARK: run's plain lines (PlainLine)

    /// `run`'s options as swift-argument-parser itself lists them (`--experimental-dump-help`):
    /// long name → (takes a value, repeatable). The parser's own help and version flags are
    /// left out: a plain line never names them.
    private func parsersOptionsOfRun() throws -> [String: (takesValue: Bool, repeats: Bool)] {
        var dump = ""
        do {
            _ = try Airlock.parseAsRoot(["run", "--experimental-dump-help"])
            XCTFail("--experimental-dump-help parsed as a command")
        } catch {
            dump = Airlock.fullMessage(for: error)
        }
        let tool = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any], dump)
        let command = try XCTUnwrap(tool["command"] as? [String: Any])
        let arguments = try XCTUnwrap(command["arguments"] as? [[String: Any]])
        var options: [String: (takesValue: Bool, repeats: Bool)] = [:]
        for argument in arguments {
            let kind = try XCTUnwrap(argument["kind"] as? String)
            guard kind != "positional" else { continue }
            let names = (argument["names"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "long" }
            let long = try XCTUnwrap(names.first?["name"] as? String, "\(argument)")
            guard !["help", "version"].contains(long) else { continue }
            XCTAssertEqual(names.count, 1, "--\(long) has one long name")
            options[long] = (kind == "option", argument["isRepeating"] as? Bool ?? false)
        }
        return options
    }

    /// The plain reading knows exactly the options the parser knows, with the same arity: an
    /// option added to `run` or one of its groups without its `plainOptions` entry fails here.
    func testRunsPlainTableIsTheParsersListOfOptions() throws {
        let parsers = try parsersOptionsOfRun()
        XCTAssertGreaterThan(parsers.count, 30, "the dump lists run's options")
        let plain = PlainLine.options(of: RunCommand.self)
        XCTAssertEqual(Set(plain.map(\.name)).count, plain.count, "each name once")
        XCTAssertEqual(Set(plain.map(\.name)), Set(parsers.keys), "the plain table and the parser's options")
        for option in plain {
            guard let declared = parsers[option.name] else { continue }
            XCTAssertEqual(option.takesValue, declared.takesValue, "--\(option.name) takes a value")
            XCTAssertEqual(option.repeats, declared.repeats, "--\(option.name) repeats")
        }
    }

    /// Every option of `run`, in every form a user writes it and in the malformed ones: where
    /// the plain reading takes the line, its values are the parser's; where it does not, the
    /// answer is the parser's own.
    func testRunsPlainLinesMeanWhatTheParserMakesOfThem() throws {
        let parsers = try parsersOptionsOfRun()
        // A value every option's type takes (a number is a string too), so no list of which
        // options are numbers can go stale; the values each type refuses are below.
        let good = "2048"
        var lines: [[String]] = [["run", "--", "true"], ["run", "--", "--", "-x"], ["run", "--"], ["run", "--json"]]
        for (name, declared) in parsers.sorted(by: { $0.key < $1.key }) {
            let flag = "--\(name)"
            guard declared.takesValue else {
                lines += [["run", flag, "--", "true"], ["run", flag, flag, "--", "true"], ["run", "\(flag)=true", "--", "true"],
                          ["run", "-\(name)", "--", "true"], ["run", "\(flag)x", "--", "true"]]
                continue
            }
            lines += [["run", flag, good, "--", "true"], ["run", "\(flag)=\(good)", "--", "true"],
                      ["run", flag, good, flag, good, "--", "true"], ["run", flag, "--", "true"], ["run", flag, "", "--", "true"],
                      ["run", "\(flag)=", "--", "true"]]
            // Values the parser may read otherwise, for one option of each kind (the parse of
            // a value does not depend on which option of its kind takes it).
            guard ["user", "allow", "max-connections"].contains(name) else { continue }
            for value in ["-", "-1", "--", "+7", "1e3", "a=b", " spaced ", "é", "-x=y"] {
                lines += [["run", flag, value, "--", "true"], ["run", "\(flag)=\(value)", "--", "true"]]
            }
            lines += [["run", "--", "true", flag, good], ["run", flag], ["run", flag, good], ["run", "\(flag)=", good, "--", "true"],
                      ["run", "--json", flag, good, "--via-daemon", "--", "true"]]
        }
        var read = 0
        for line in lines {
            if PlainLine.read(line.dropFirst(), as: RunCommand.self) != nil { read += 1 }
            assertSameAsTree(line)
        }
        XCTAssertGreaterThan(read, parsers.count * 2, "the plain reading takes most well-formed lines")
    }

    /// The lines `run` is given every day are read plainly; the rest go to the parser.
    func testRunsCommonLinesAreReadPlainly() throws {
        let taken: [[String]] = [
            ["--", "true"],
            ["--user", "nobody", "--", "/bin/true"],
            ["--repo", "octo/app:rw", "--token-env", "GH_TOKEN", "--allow", "@pypi", "--", "./agent.sh", "--help"],
            ["--allow=@anthropic-api", "--secret", "anthropic-api=env:ANTHROPIC_API_KEY", "--json", "--", "claude"],
        ]
        for arguments in taken {
            let command = try XCTUnwrap(PlainLine.read(arguments[...], as: RunCommand.self), "\(arguments)")
            XCTAssertEqual(command.command, Array(arguments[(arguments.firstIndex(of: "--")! + 1)...]))
        }
        let plain = try XCTUnwrap(PlainLine.read(["--repo", "a/b", "--repo=c/d", "--max-connections", "9", "--", "x"], as: RunCommand.self))
        XCTAssertEqual(plain.repos, ["a/b", "c/d"])
        XCTAssertEqual(plain.gateway.maxConnections, 9)
        XCTAssertEqual(plain.gateway.idleTimeout, GatewayOptions.Defaults.idleTimeout)
        let refused: [[String]] = [
            [], ["true"], ["--help"], ["-h"], ["--version"], ["--user"], ["--user", "--", "true"], ["--user", "-x", "--", "true"],
            ["--json", "--json", "--", "true"], ["--user", "a", "--user", "b", "--", "true"], ["--json=yes", "--", "true"],
            ["--max-connections", "many", "--", "true"], ["--max-connections", "0", "--", "true"],
            ["--token-env", "A", "--token-file", "B", "--", "true"], ["--protect", "bad pattern[", "--", "true"],
            ["--repo", "a/b"], ["--", ], ["--experimental-dump-help"], ["--generate-completion-script", "bash"],
        ]
        for arguments in refused {
            XCTAssertNil(PlainLine.read(arguments[...], as: RunCommand.self), "\(arguments)")
        }
    }

    /// A completion script asked of a command parsed on its own is the whole tree's script.
    func testCompletionScriptRequestsAreTheTrees() {
        assertSameAsTree(["run", "--generate-completion-script", "bash"])
        assertSameAsTree(["netns", "exec", "--generate-completion-script"])
    }
}
