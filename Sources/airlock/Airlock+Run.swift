import ArgumentParser

// Placeholder until its issue lands.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run a command in a one-shot sandbox.")

    func run() throws {
        throw CLIError("`airlock run` is not built yet")
    }
}
