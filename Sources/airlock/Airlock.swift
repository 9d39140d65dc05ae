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
        subcommands: [
            RunCommand.self,
            NetnsCommand.self,
            GatewayCommand.self,
            SessionCommand.self,
            SecretCommand.self,
            PolicyCommand.self,
            DoctorCommand.self,
            SandboxChild.self,
        ]
    )
}
