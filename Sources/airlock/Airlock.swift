#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser

/// The `airlock` command: a network sandbox for untrusted code.
@main
struct Airlock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "airlock",
        abstract: "Run untrusted code with git access to named repositories, HTTP(S) to allowlisted hosts, and nothing else.",
        discussion: """
            airlock puts a command in a network namespace whose only reachable peer is a gateway. \
            The gateway swaps a repo-scoped session token for the real git credential, allows \
            HTTP(S) only to allowlisted hosts, answers DNS only for allowlisted names, and writes \
            an audit line for every decision.

            One command:  airlock run --repo owner/repo --token-env GH_TOKEN --allow pypi.org -- CMD
            Persistent:   airlock netns create NAME; airlock gateway serve NAME; airlock session create NAME …
            """,
        version: AirlockVersion.description,
        subcommands: [
            RunCommand.self,
            NetnsCommand.self,
            GatewayCommand.self,
            SessionCommand.self,
            SecretCommand.self,
            SandboxCommand.self,
            PolicyCommand.self,
            DoctorCommand.self,
        ]
    )

    /// swift-argument-parser's `main`, except that a usage error of `run` or `netns exec`
    /// exits 125 like their other failures, never 64, which the command might use itself.
    static func main() {
        if CNIPlugin.isInvoked(as: CommandLine.arguments.first) { CNIPlugin.main() }
        let arguments = Array(CommandLine.arguments.dropFirst())
        // The same line swift-argument-parser prints, without building and reflecting the
        // whole command tree first (a quarter of the start's CPU, docs/benchmarks.md).
        if arguments == ["--version"] {
            print(AirlockVersion.description)
            Glibc.exit(0)
        }
        do {
            var command = try parse(arguments)
            try command.run()
        } catch let status as ExitCode {
            // What `exit(withError:)` does for an exit code (it prints nothing), without
            // first building the parser's message and help generator for it: a run's exit
            // status is the command's, and every run ends here.
            Glibc.exit(status.rawValue)
        } catch {
            if exitCode(for: error) == .validationFailure && wrapsACommand(arguments) {
                var line = fullMessage(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
                if line.hasPrefix("Error: ") { line.removeFirst("Error: ".count) }
                printError(line + " (see airlock \(arguments.first == "run" ? "run" : "\(arguments.first ?? "netns") exec") --help)")
                exit(withError: ExitCode(ExitCodes.wrapperFailure))
            }
            exit(withError: error)
        }
    }

    /// The command `arguments` ask for. A command without subcommands, named by the leading
    /// words (`run`, `netns exec`), is parsed as the root of its own tree: below its parents,
    /// swift-argument-parser reflects over all its options once more while the parent decides
    /// whether it takes passthrough arguments, and each leaf's `_superCommandName` (its
    /// parents' names) spares it the parser's probe for `--generate-completion-script`, which
    /// parses the line twice more. Together a tenth of `run -- true` (docs/benchmarks.md).
    /// Anything that parse does not turn into that command (a usage error, `--help`,
    /// `--version`, a completion script) is parsed again from the top, so every message, help
    /// text and script is the whole tree's. No parent command has options of its own, so what
    /// the leaf accepts alone it accepts below its parents, with the same values
    /// (`CommandParseTests`); a refused line is validated twice, which is why `validate()`
    /// only ever checks values. `run`'s plain lines, the common ones, are read without the
    /// parser's reflection (`PlainLine`), with the same values.
    static func parse(_ arguments: [String]) throws -> ParsableCommand {
        var leaf: ParsableCommand.Type = Airlock.self
        var rest = arguments[...]
        while let word = rest.first,
              let next = leaf.configuration.subcommands.first(where: { $0.configuration.commandName == word }) {
            leaf = next
            rest = rest.dropFirst()
        }
        if leaf == RunCommand.self, let command = PlainLine.read(rest, as: RunCommand.self) {
            return command
        }
        if leaf != Airlock.self, leaf.configuration.subcommands.isEmpty,
           let command = try? leaf.parseAsRoot(Array(rest)), type(of: command) == leaf {
            return command
        }
        return try parseAsRoot(arguments)
    }

    /// Whether `arguments` name `run` or `netns exec`, whose exit status is the command's.
    static func wrapsACommand(_ arguments: [String]) -> Bool {
        let words = arguments.prefix { $0 != "--" }.filter { !$0.hasPrefix("-") }
        return words.first == "run" || Array(words.prefix(2)) == ["netns", "exec"] || Array(words.prefix(2)) == ["sandbox", "exec"]
    }
}
