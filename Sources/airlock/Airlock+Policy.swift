#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Gateway
import Netns
import GatewayCore

/// `airlock policy`: check and explain policy files without running a gateway.
struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Check, explain and suggest policy files.",
        discussion: """
            A policy file lists the hosts a sandbox may reach, one rule a line: `host` (ports 80 \
            and 443), `*.suffix` (subdomains, not the apex), `host:port`, `!host` (deny wins), \
            `@preset`, `cidr CIDR`, `allow-private CIDR`, `resolve HOST=ADDRESS[,ADDRESS]`, and \
            `#` comments. See docs/policy.md.
            """,
        subcommands: [Check.self, Explain.self, Suggest.self]
    )

    /// The policy `check` and `explain` read: FILE, else the default set `run` and
    /// `gateway serve` would read as this caller (with the same refusal, as root, of files
    /// another account could change).
    static func load(file: String?, exitCode: Int32 = 1) throws -> (policy: Policy, files: PolicyFiles, read: [String]) {
        let root = geteuid() == 0 && UserNamespace.isInitial()
        guard let files = file.map(PolicyFiles.init(file:)) ?? PolicyFiles.defaults(root: root, environment: ProcessInfoEnvironment.current) else {
            throw CLIError("no policy file given and no home directory for the default ($XDG_CONFIG_HOME or HOME); give FILE", exitCode: exitCode)
        }
        if file == nil && root { try GatewayOptions.refusalOfNonRootPaths(files, reloads: false) }
        let (policy, read) = try files.load()
        return (policy, files, read)
    }

    /// `airlock policy check [FILE]`
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            _superCommandName: "airlock policy",
            abstract: "Parse a policy file (or the default policy files) and print its rule count and expanded presets.",
            discussion: """
                Exits 1 with `FILE:LINE: problem` when a file does not parse. Without FILE, \
                checks the files `run` and `gateway serve` read without --policy and lists them: \
                \(GatewayOptions.policyLocationsHelp.dropFirst("Without --policy: ".count))
                """
        )

        @Argument(help: "The policy file (default: the default policy files).")
        var file: String?

        func run() throws {
            try reportingErrors {
                let (policy, files, read) = try PolicyCommand.load(file: file)
                print("\(files): ok, \(policy.ruleCount) rule\(policy.ruleCount == 1 ? "" : "s")")
                if file == nil {
                    print("read: " + (read.isEmpty ? "no file (none exists; only flags would add rules)" : read.joined(separator: ", ")))
                    let ignored = (try? files.listing().ignored) ?? []
                    if !ignored.isEmpty, let directory = files.dropInDirectory {
                        print("ignored in \(directory) (only *.conf files are read): \(ignored.joined(separator: ", "))")
                    }
                }
                for name in policy.presets {
                    let hosts = Presets.all[name] ?? []
                    print("@\(name): \(hosts.joined(separator: ", "))")
                }
                for route in policy.routes {
                    let credential = route.sessionHost.map { "the git session's token for its repositories on \($0)" }
                        ?? "secrets " + route.secretNames.joined(separator: ", ")
                    print("route \(route.name): \(route.sandboxURL) -> \(route.url), \(credential)")
                }
            }
        }
    }

    /// `airlock policy suggest AUDIT…`
    struct Suggest: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "suggest",
            _superCommandName: "airlock policy",
            abstract: "Turn audit logs (of `run --learn`, or of enforced runs) into a policy file on stdout.",
            discussion: """
                Every host used (or refused for want of a rule) becomes a rule: a preset where \
                the host is one of a preset's, `*.suffix` where several siblings were used, \
                `host:port` off ports 80 and 443, else the host; each with a comment giving its \
                counts and first and last use. Shared-hosting names are flagged. IP literals, git \
                requests and refusals no rule lifts are left out. Review the result before use: \
                it allows what the command used, not what it needs.
                """
        )

        /// Longer lines are not audit lines; they are skipped, not held.
        static let maxLineBytes = 64 << 10

        @Argument(help: "Audit log files (JSON lines).")
        var files: [String] = []

        func validate() throws {
            if files.isEmpty { throw ValidationError("missing the audit log: airlock policy suggest AUDIT…") }
        }

        func run() throws {
            try reportingErrors {
                var suggestion = PolicySuggestion()
                for file in files {
                    try Self.readLines(file) { suggestion.add(line: $0) }
                }
                print(suggestion.policy(sources: files), terminator: "")
            }
        }

        /// Calls `body` with each line of `path`, read in pieces: no whole file is held.
        static func readLines(_ path: String, _ body: (String) -> Void) throws {
            guard let file = fopen(path, "r") else {
                throw CLIError("\(path): cannot read it (\(String(cString: strerror(errno))))")
            }
            defer { fclose(file) }
            var line: [UInt8] = []
            var skipping = false
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
                if count == 0 { break }
                for byte in buffer[..<count] {
                    if byte == UInt8(ascii: "\n") {
                        if !skipping { body(String(decoding: line, as: UTF8.self)) }
                        line.removeAll(keepingCapacity: true)
                        skipping = false
                    } else if !skipping {
                        line.append(byte)
                        if line.count > maxLineBytes {
                            skipping = true
                            line.removeAll(keepingCapacity: true)
                        }
                    }
                }
            }
            if ferror(file) != 0 { throw CLIError("\(path): cannot read it") }
            if !skipping && !line.isEmpty { body(String(decoding: line, as: UTF8.self)) }
        }
    }

    /// `airlock policy explain [FILE] HOST[:PORT]`
    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "explain",
            _superCommandName: "airlock policy",
            abstract: "Say whether a host and port would be allowed, by which rule, and why.",
            discussion: """
                Without FILE, explains the default policy files (those `policy check` lists \
                without FILE). The port defaults to 443. Prints the decision, every rule that matches the host, \
                what the gateway's DNS would answer, pinned addresses and, for IP literals, the \
                address class. Exits 0 when the host would be allowed, 1 when it would be refused, \
                2 when the file does not parse or the target is malformed, so scripts and CI can \
                use it as a test.
                """
        )

        @Argument(help: ArgumentHelp("[FILE] TARGET: the policy file (default: the default policy files), then HOST, HOST:PORT, or [IPV6]:PORT.", valueName: "file-and-target"))
        var arguments: [String] = []

        func validate() throws {
            guard (1...2).contains(arguments.count) else {
                throw ValidationError("expected [FILE] HOST[:PORT]")
            }
        }

        /// The policy file, when one is given.
        var file: String? { arguments.count == 2 ? arguments[0] : nil }
        /// `HOST[:PORT]`.
        var target: String { arguments[arguments.count - 1] }

        func run() throws {
            let allowed = try reportingErrors(exitCode: { _ in 2 }) { () throws -> Bool in
                let (host, port) = try Self.split(target)
                var (policy, _, read) = try PolicyCommand.load(file: file, exitCode: 2)
                if file == nil { policy.source = read.isEmpty ? "no policy file" : read.joined(separator: " + ") }
                for line in policy.explain(host: host, port: port) { print(line) }
                if !policy.routes.isEmpty {
                    for line in policy.explainRoutes() { print(line) }
                }
                if case .allow = policy.decide(host: host, port: port) { return true }
                return false
            }
            if !allowed { throw ExitCode(1) }
        }

        /// Splits `HOST[:PORT]`; an unbracketed IPv6 literal is all host.
        static func split(_ target: String) throws -> (host: String, port: Int) {
            guard !target.isEmpty else { throw CLIError("empty target; give HOST or HOST:PORT", exitCode: 2) }
            var host = Substring(target)
            var portText: Substring?
            if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
                let rest = host[host.index(after: close)...]
                if rest.hasPrefix(":") { portText = rest.dropFirst() } else if !rest.isEmpty {
                    throw CLIError("'\(target)' is not HOST[:PORT]", exitCode: 2)
                }
                host = host[...close]
            } else if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":") {
                portText = host[host.index(after: colon)...]
                host = host[..<colon]
            }
            var port = 443
            if let portText {
                guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                      let value = Int(portText), (1...65535).contains(value) else {
                    throw CLIError("'\(portText)' in '\(target)' is not a port (1-65535)", exitCode: 2)
                }
                port = value
            }
            guard !host.isEmpty else { throw CLIError("'\(target)' has no host", exitCode: 2) }
            return (String(host), port)
        }
    }
}
