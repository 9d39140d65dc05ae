#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Gateway
import Netns
import GatewayCore

/// `airlock secret set SANDBOX NAME`: hands a credential route's secret to a running gateway.
struct SecretCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secret",
        abstract: "Give a running gateway the secrets its credential routes send.",
        discussion: """
            A route in the gateway's policy (`route NAME URL header H=secret:SECRET`, or a preset \
            such as @anthropic-api) sends the secret SECRET upstream; until it is set, the route \
            answers 503. The value is read from standard input (never echoed, never an argument), \
            travels over the control socket /run/airlock/SANDBOX/control.sock and lives only in \
            the gateway's memory: a restarted gateway needs it again. See docs/credential-routes.md.
            """,
        subcommands: [Set.self]
    )

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            _superCommandName: "airlock secret",
            abstract: "Set (or replace) a secret; the value is read from standard input.",
            discussion: """
                Example: airlock secret set agent1 anthropic < ~/.config/anthropic.key
                """)

        @Argument(help: "The sandbox whose gateway holds the secret.")
        var sandbox: String

        @Argument(help: "The secret's name, as the route names it (secret:NAME).")
        var name: String

        func run() throws {
            try reportingErrors(exitCode: SessionCommand.exitCode) {
                let sandbox = try NamespaceName(self.sandbox)
                guard CredentialRoute.isValidName(name) else {
                    throw CLIError("\(GitRepository.printable(String(name.prefix(64)))) is not a secret name (1–64 of a-z, 0-9, '-', '_', '.')", exitCode: ExitCodes.usage)
                }
                let bytes = try RouteOptions.readStandardInput()
                let value = String(decoding: bytes, as: UTF8.self).trimmingWhitespaceAndNewlines()
                guard !value.isEmpty else {
                    throw CLIError("the secret from standard input is empty; pipe it in (… < key.txt)", exitCode: ExitCodes.usage)
                }
                let response = try sendControl(.setSecret(name: name, value: Secret(value)), sandbox: sandbox)
                switch response {
                case let .secretSet(name):
                    printNotice("airlock: secret \(name) set for \(sandbox)")
                case let .failure(message):
                    throw CLIError(message)
                default:
                    throw CLIError("unexpected answer from the gateway of \(sandbox)")
                }
            }
        }
    }
}
