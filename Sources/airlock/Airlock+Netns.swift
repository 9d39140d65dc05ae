import ArgumentParser

// Placeholder until its issue lands.
struct NetnsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "netns", abstract: "Create, list, enter and destroy persistent sandbox namespaces.")

    func run() throws {
        throw CLIError("`airlock netns` is not built yet")
    }
}
