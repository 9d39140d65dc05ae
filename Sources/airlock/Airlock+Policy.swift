import ArgumentParser

// Placeholder until its issue lands.
struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "policy", abstract: "Check and explain policy files.")

    func run() throws {
        throw CLIError("`airlock policy` is not built yet")
    }
}
