import ArgumentParser

// Placeholder until its issue lands.
struct GatewayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gateway", abstract: "Serve the gateway of a persistent sandbox.")

    func run() throws {
        throw CLIError("`airlock gateway` is not built yet")
    }
}
