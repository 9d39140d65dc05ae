#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import FoundationEssentials
import Gateway
import GatewayCore
import Netns
import SystemCalls

/// `airlock sandbox …`: sandboxes for unprivileged users, made and run by the gateway daemon.
struct SandboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Make, use and destroy your own sandboxes through the gateway daemon, without root.",
        discussion: """
            For hosts where an admin runs `airlock gateway serve --all --users GROUP` and you are \
            in GROUP: the daemon makes the sandbox (as `netns create` does), serves its gateway \
            with the policy you give, and runs your commands in it as you (as `netns exec` does). \
            A sandbox is yours alone: other accounts can neither use nor destroy it. `airlock \
            session` and `airlock secret` reach its gateway through the daemon too. Every \
            request is audited with your uid. See docs/user-access.md.
            """,
        subcommands: [Create.self, Exec.self, Destroy.self, List.self]
    )

    /// The text of the policy `create` hands the daemon: `--policy FILE` (read as the
    /// caller) followed by one line per `--allow`; parsed here once, so a bad line is
    /// refused with the parser's words before the daemon is asked.
    static func policyText(file: String?, allow: [String]) throws -> String? {
        guard file != nil || !allow.isEmpty else { return nil }
        var text = try file.map(readPolicyFile) ?? ""
        for host in allow {
            guard !host.contains(where: { $0 == "\n" || $0 == " " }) else { throw CLIError("--allow '\(host)': one host pattern, no spaces") }
            text += host + "\n"
        }
        try checkPolicy(text, source: file ?? "--allow")
        return text
    }

    /// Refuses `text` with the parser's own line when it is not a policy.
    static func checkPolicy(_ text: String, source: String) throws {
        do {
            _ = try Policy.parse(text, source: source)
        } catch {
            throw CLIError(String(describing: error))
        }
    }

    /// A policy file's text as this process may read it, ending in a newline; at most what
    /// one request to the daemon carries.
    static func readPolicyFile(_ file: String) throws -> String {
        let limit = UserRequest.maxBytes - 4096
        let bytes: [UInt8]
        do {
            bytes = try fileContents(file, limit: limit)
        } catch let error as SystemCallError {
            // Worded as --token-file and --secret refuse a file they cannot read.
            throw CLIError("--policy \(file): " + (error.code == EFBIG ? "longer than \(limit) bytes" : "cannot read it (\(String(cString: strerror(error.code))))"))
        }
        let text = String(decoding: bytes, as: UTF8.self)
        return text.isEmpty || text.hasSuffix("\n") ? text : text + "\n"
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            _superCommandName: "airlock sandbox",
            abstract: "Make a sandbox of yours, served by the gateway daemon.",
            discussion: """
                The policy: --policy FILE (read as you) and one line per --allow, else the \
                daemon's default policy. At most 8 sandboxes per account.
                """)

        @Argument(help: "The sandbox name (1-12 of A-Z a-z 0-9 _ . -), unique on the host.")
        var name: String

        @Option(name: .long, help: ArgumentHelp("A policy file (the format of /etc/airlock/policy).", valueName: "file"))
        var policy: String?

        @Option(name: .long, help: ArgumentHelp("Allow this host pattern (pypi.org, *.githubusercontent.com); repeatable.", valueName: "host"))
        var allow: [String] = []

        func run() throws {
            try reportingErrors {
                let name = try NamespaceName(name)
                let text = try SandboxCommand.policyText(file: policy, allow: allow)
                _ = try UserBrokerClient.send(.create(sandbox: name.rawValue, policy: text))
                print("created \(name.rawValue)")
            }
        }
    }

    struct Exec: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "exec",
            _superCommandName: "airlock sandbox",
            abstract: "Run a command in a sandbox of yours, as you.",
            discussion: """
                As `airlock netns exec`: CMD runs in the sandbox's network namespace with its own \
                mount, PID and IPC namespaces, no capabilities and the seccomp filter, in the \
                current directory (or --cwd), with your environment less credential-looking \
                variables. INT, TERM and HUP are forwarded; if this command goes away, CMD is \
                killed. Exits with CMD's status (125 when airlock itself failed).
                """)

        @Argument(help: "The sandbox name.")
        var name: String

        @OptionGroup var sandbox: SandboxOptions

        @Option(name: .customLong("env"), help: ArgumentHelp("Set a variable for CMD.", valueName: "name=value"))
        var environment: [String] = []

        @Option(help: ArgumentHelp("A git session token of this sandbox (AIRLOCK_SESSION_TOKEN also works).", valueName: "token"))
        var session: String?

        @Argument(parsing: .postTerminator, help: "The command and its arguments.")
        var command: [String] = []

        func validate() throws {
            if command.isEmpty { throw ValidationError("missing the command to run: airlock sandbox exec NAME -- CMD [ARG…]") }
            try NetnsExec.checkVariables(environment)
        }

        func run() throws {
            let status = try reportingWrapperErrors { () throws -> Int32 in
                let name = try NamespaceName(name)
                var variables = ProcessInfoEnvironment.current.merging(NetnsExec.variables(environment)) { _, given in given }
                let token = session ?? variables["AIRLOCK_SESSION_TOKEN"]
                variables["AIRLOCK_SESSION_TOKEN"] = nil
                return try UserBrokerClient.exec(
                    sandbox: name.rawValue, argv: command, environment: variables, options: sandbox.forwarded(), session: token,
                    ephemeral: false)
            }
            throw ExitCode(status)
        }
    }

    struct Destroy: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "destroy", _superCommandName: "airlock sandbox", abstract: "Stop serving a sandbox of yours and remove it.")

        @Argument(help: "The sandbox name.")
        var name: String

        func run() throws {
            try reportingErrors {
                let name = try NamespaceName(name)
                _ = try UserBrokerClient.send(.destroy(sandbox: name.rawValue))
                print("destroyed \(name.rawValue)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", _superCommandName: "airlock sandbox", abstract: "List your sandboxes (root: every sandbox made through the daemon's user socket).")

        @Flag(help: "One JSON object per line.")
        var json = false

        func run() throws {
            try reportingErrors {
                guard case let .sandboxes(list) = try UserBrokerClient.send(.list) else {
                    throw CLIError("unexpected answer from the gateway daemon")
                }
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    for one in list { print(String(decoding: try encoder.encode(one), as: UTF8.self)) }
                    return
                }
                if list.isEmpty {
                    print("no sandboxes")
                    return
                }
                print("NAME          OWNER   GATEWAY")
                for one in list {
                    func padded(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(1, width - text.count)) }
                    print(padded(one.sandbox, 14) + padded(String(one.owner), 8) + one.address)
                }
            }
        }
    }
}

extension SandboxOptions {
    /// The options as `netns exec` takes them, for the daemon: the working directory
    /// always, made absolute here (the daemon has its own).
    func forwarded() throws -> [String] {
        guard let directory = workingDirectory() else { throw CLIError("cannot tell the current directory; pass --cwd DIR") }
        var options = ["--cwd", directory]
        for mask in masks { options += ["--mask", mask.hasPrefix("/") ? mask : (directory == "/" ? "" : directory) + "/" + mask] }
        if shareTmp { options.append("--share-tmp") }
        if allowNestedNamespaces { options.append("--allow-nested-namespaces") }
        return options
    }
}
