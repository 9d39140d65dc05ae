import ArgumentParser

// Placeholder until its issue lands.
struct SessionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "session", abstract: "Create, list and revoke git sessions of a running gateway.")

    func run() throws {
        throw CLIError("`airlock session` is not built yet")
    }
}
