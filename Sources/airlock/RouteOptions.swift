#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import FoundationEssentials
import Gateway
import GatewayCore

/// The secret flags of `airlock run`: where the credential routes' secrets come from.
/// Values are never taken from the command line, where `ps` would show them.
struct RouteOptions: PlainOptions {
    @Option(name: .customLong("secret"), help: ArgumentHelp("A secret for credential routes: NAME=env:VAR (the variable is removed from CMD's environment), NAME=file:PATH or NAME=- (standard input); repeatable.", valueName: "name=source"))
    var secrets: [String] = []

    /// The option above, for a plain line of `run` (PlainLine).
    static let plainOptions: [PlainOption<Self>] = [.values("secret") { $0.secrets = $1 }]

    /// Where one secret comes from.
    enum Source: Equatable {
        case environment(String)
        case file(String)
        case standardInput
    }

    /// The secrets read, and what the sandbox must not see of their sources.
    struct Loaded {
        var secrets: [String: Secret] = [:]
        /// Variables the secrets came from: removed from CMD's environment.
        var variables: [String] = []
        /// Files the secrets came from: hidden from CMD.
        var files: [String] = []
    }

    /// `NAME=SOURCE` parsed.
    /// - Throws: `RunPlan.Invalid` naming the flag; never repeats a value.
    static func parse(_ text: String) throws -> (name: String, source: Source) {
        guard let equals = text.firstIndex(of: "=") else {
            throw RunPlan.Invalid("--secret \(text): expected NAME=env:VAR, NAME=file:PATH or NAME=-")
        }
        let name = String(text[..<equals])
        let source = text[text.index(after: equals)...]
        guard CredentialRoute.isValidName(name) else {
            throw RunPlan.Invalid("--secret: '\(name.prefix(64))' is not a secret name (1–64 of a-z, 0-9, '-', '_', '.')")
        }
        if source.hasPrefix("env:"), source.count > 4 {
            return (name, .environment(String(source.dropFirst(4))))
        }
        if source.hasPrefix("file:"), source.count > 5 {
            return (name, .file(String(source.dropFirst(5))))
        }
        if source == "-" {
            return (name, .standardInput)
        }
        throw RunPlan.Invalid("--secret \(name): give env:VAR, file:PATH or - (standard input); a value on the command line would show in ps")
    }

    /// Reads every secret.
    /// - Throws: `RunPlan.Invalid` naming the flag and what is wrong; never the value.
    func load(environment: [String: String], readStandardInput: () throws -> [UInt8] = RouteOptions.readStandardInput) throws -> Loaded {
        var loaded = Loaded()
        var usedStandardInput = false
        for text in secrets {
            let (name, source) = try Self.parse(text)
            guard loaded.secrets[name] == nil else {
                throw RunPlan.Invalid("--secret \(name): given twice")
            }
            let value: String
            switch source {
            case .environment(let variable):
                guard let found = environment[variable] else {
                    throw RunPlan.Invalid("--secret \(name)=env:\(variable): the variable is not set")
                }
                value = found.trimmingWhitespaceAndNewlines()
                loaded.variables.append(variable)
            case .file(let path):
                value = try RunPlan.readSecretFile(path, flag: "--secret \(name)=file:\(path)")
                loaded.files.append(path)
            case .standardInput:
                guard !usedStandardInput else {
                    throw RunPlan.Invalid("--secret \(name)=-: only one secret can come from standard input")
                }
                usedStandardInput = true
                let bytes = try readStandardInput()
                value = String(decoding: bytes, as: UTF8.self).trimmingWhitespaceAndNewlines()
            }
            guard !value.isEmpty else { throw RunPlan.Invalid("--secret \(name): the value is empty") }
            guard !value.contains("\n"), !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw RunPlan.Invalid("--secret \(name): expected one line without control characters")
            }
            loaded.secrets[name] = Secret(value)
        }
        return loaded
    }

    /// Standard input to its end, at most `RunPlan.maximumSecretFileSize` bytes.
    /// - Throws: `RunPlan.Invalid` when it is larger or unreadable.
    static func readStandardInput() throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw RunPlan.Invalid("--secret: cannot read standard input (\(String(cString: strerror(errno))))")
            }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
            guard bytes.count <= RunPlan.maximumSecretFileSize else {
                throw RunPlan.Invalid("--secret: standard input is larger than \(RunPlan.maximumSecretFileSize) bytes")
            }
        }
    }

    /// The refusal for routes whose secrets were not given: names the first route and
    /// secret, and, for a preset whose provider variable is set on the host, says so
    /// rather than reading it silently.
    static func missingSecretError(_ missing: [(route: String, secret: String)], environment: [String: String]) -> RunPlan.Invalid? {
        guard let first = missing.first else { return nil }
        if let preset = RoutePreset.forRoute(first.route), preset.route == first.secret, environment[preset.keyVariable] != nil {
            return RunPlan.Invalid("route \(first.route) (@\(preset.name)) needs the secret \(first.secret): \(preset.keyVariable) is set here; pass --secret \(first.secret)=env:\(preset.keyVariable) to use it")
        }
        return RunPlan.Invalid("route \(first.route) needs the secret \(first.secret), which was not given: pass --secret \(first.secret)=env:VAR, --secret \(first.secret)=file:PATH or --secret \(first.secret)=- (standard input)")
    }
}
