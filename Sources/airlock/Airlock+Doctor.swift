import ArgumentParser

// Placeholder until its issue lands.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "doctor", abstract: "Report what this machine supports.")

    func run() throws {
        throw CLIError("`airlock doctor` is not built yet")
    }
}
