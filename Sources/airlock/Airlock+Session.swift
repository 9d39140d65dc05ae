#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import FoundationEssentials
import Gateway
import Netns
import GatewayCore

/// `airlock session create|list|revoke`: git sessions of a running gateway, over its control socket.
struct SessionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session",
        abstract: "Create, list and revoke git sessions of a running gateway.",
        discussion: """
            A session stands for a real upstream git token inside one sandbox. The sandbox gets \
            only the session token, scoped to named repositories (read, or read-write with :rw) \
            and valid only on that sandbox's gateway; the gateway swaps it for the real token. \
            The commands talk to the gateway's control socket /run/airlock/NAME/control.sock \
            (mode 0600, peer uid checked), so they need root (or the uid that started the gateway).
            """,
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            _superCommandName: "airlock session",
            abstract: "Create a session and print its token.",
            discussion: """
                The upstream token is read from standard input (never echoed), or from --token-file, \
                which must be a regular file owned by root and readable by nobody else. It travels \
                over the control socket and lives in the gateway's memory and in its session file \
                /run/airlock/NAME/sessions (root, mode 0600, never in the sandbox's view), so the \
                session survives a restart of `airlock gateway serve`; the session token is kept only \
                as its SHA-256 digest. The session token is printed on standard output; pass it to \
                `airlock netns exec NAME --session TOKEN`.

                Examples:
                  airlock session create sbx --repo owner/repo:rw --ttl 8h < token.txt
                  airlock session create sbx --repo github.com/owner/a --repo owner/b:rw --token-file /root/gh-token
                """
        )

        @Argument(help: "The sandbox whose gateway issues the session.")
        var name: String

        @Option(name: .customLong("repo"), help: "A repository the session may use: [HOST/]OWNER/REPO[:rw] (read-only without :rw). Repeat for more.")
        var repos: [String] = []

        @Option(help: "Absolute lifetime: a number with s, m, h or d (default 8h).")
        var ttl: SessionLifetime = SessionLifetime(seconds: 8 * 3600)

        @Option(name: .customLong("token-file"), help: "Read the upstream token from FILE (owned by root, mode 0600 or stricter) instead of stdin.")
        var tokenFile: String?

        @OptionGroup var push: PushOptions

        func validate() throws {
            guard !repos.isEmpty else { throw ValidationError("name at least one repository with --repo OWNER/REPO[:rw]") }
        }

        func run() throws {
            try reportingErrors(exitCode: SessionCommand.exitCode) {
                let sandbox = try NamespaceName(name)
                for repo in repos { _ = try ScopeEntry(parsing: repo) }
                _ = try push.policy()
                let token = try tokenFile.map(SessionCommand.readTokenFile) ?? SessionCommand.readTokenFromStandardInput()
                let response = try sendControl(.create(repos: repos, ttlSeconds: ttl.seconds, upstreamToken: token, protect: push.protect, pushRefs: push.pushRefs,
                             allowForcePush: push.allowForcePush, maxPushSize: push.maxPushSize, pushRate: push.pushRate), sandbox: sandbox)
                switch response {
                case let .created(sessionToken, summary):
                    sessionToken.withRevealed { print($0) }
                    printNotice("airlock: session \(summary.id) for \(summary.scope.joined(separator: ", ")) until \(SessionCommand.format(epoch: summary.expiresAt))")
                case let .failure(message):
                    throw CLIError(message)
                default:
                    throw CLIError("unexpected answer from the gateway of \(sandbox)")
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            _superCommandName: "airlock session",
            abstract: "List live sessions (ids, scopes, expiry; never tokens).")

        @Argument(help: "The sandbox whose sessions to list.")
        var name: String

        @Flag(help: "Print a JSON array.")
        var json = false

        func run() throws {
            try reportingErrors(exitCode: SessionCommand.exitCode) {
                let sandbox = try NamespaceName(name)
                let response = try sendControl(.list, sandbox: sandbox)
                guard case let .sessions(sessions) = response else {
                    if case let .failure(message) = response { throw CLIError(message) }
                    throw CLIError("unexpected answer from the gateway of \(sandbox)")
                }
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    print(String(decoding: try encoder.encode(sessions), as: UTF8.self))
                    return
                }
                if sessions.isEmpty {
                    printNotice("airlock: no live sessions for \(sandbox)")
                    return
                }
                print("ID            EXPIRES               IDLE   SCOPE")
                for s in sessions {
                    let idle = "\(s.idleTimeout / 60)m"
                    print("\(s.id)  \(SessionCommand.format(epoch: s.expiresAt))  \(idle.padded(toLength: 5))  \(s.scope.joined(separator: " "))")
                }
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke",
            _superCommandName: "airlock session",
            abstract: "Revoke a session: its token is refused from now on.")

        @Argument(help: "The sandbox whose gateway holds the session.")
        var name: String

        @Argument(help: "The session id shown by `airlock session list` (12 hex digits).")
        var id: String

        func run() throws {
            try reportingErrors(exitCode: SessionCommand.exitCode) {
                let sandbox = try NamespaceName(name)
                guard id.utf8.count == 12, id.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
                    throw CLIError("invalid session id \(GitRepository.printable(id)): expected 12 lowercase hex digits (see `airlock session list \(sandbox)`)", exitCode: ExitCodes.usage)
                }
                let response = try sendControl(.revoke(id: id), sandbox: sandbox)
                switch response {
                case let .revoked(summary):
                    print("revoked session \(summary.id) (\(summary.scope.joined(separator: ", ")))")
                case let .failure(message):
                    throw CLIError(message, exitCode: message.hasPrefix("no live session") ? ExitCodes.notFound : ExitCodes.failure)
                default:
                    throw CLIError("unexpected answer from the gateway of \(sandbox)")
                }
            }
        }
    }

    /// Exit codes for control-socket failures: no gateway 3, no permission 4.
    static func exitCode(_ error: Error) -> Int32? {
        guard let error = error as? ControlClientError else { return nil }
        if error.notFound { return ExitCodes.notFound }
        if error.permission { return ExitCodes.permission }
        return nil
    }

    /// Longest upstream token accepted.
    static let maxTokenBytes = 16 * 1024

    /// Reads the upstream token from a root-only file.
    static func readTokenFile(_ path: String) throws -> Secret {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw CLIError("cannot open token file \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw CLIError("token file \(path) is not a regular file")
        }
        guard info.st_uid == 0, info.st_mode & 0o077 == 0 else {
            throw CLIError("token file \(path) must be owned by root and readable by nobody else (chown root \(path); chmod 600 \(path))")
        }
        return try readToken(fd: fd, source: "token file \(path)")
    }

    /// Reads the upstream token from standard input, with echo off on a terminal.
    static func readTokenFromStandardInput() throws -> Secret {
        var saved = termios()
        let terminal = isatty(0) == 1 && tcgetattr(0, &saved) == 0
        if terminal {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(0, TCSANOW, &quiet)
            _ = "upstream token: ".withCString { fputs($0, stderr) }
        }
        defer {
            if terminal {
                tcsetattr(0, TCSANOW, &saved)
                _ = "\n".withCString { fputs($0, stderr) }
            }
        }
        return try readToken(fd: 0, source: "standard input", stopAtNewline: terminal)
    }

    private static func readToken(fd: CInt, source: String, stopAtNewline: Bool = false) throws -> Secret {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError("cannot read the upstream token from \(source): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            guard bytes.count <= maxTokenBytes else { throw CLIError("the upstream token from \(source) is longer than \(maxTokenBytes) bytes") }
            if stopAtNewline, bytes.contains(UInt8(ascii: "\n")) { break }
        }
        if let newline = bytes.firstIndex(of: UInt8(ascii: "\n")), bytes[newline...].contains(where: { $0 > 0x20 }) {
            throw CLIError("the upstream token from \(source) spans several lines; give one token")
        }
        while let last = bytes.last, last == 0x0A || last == 0x0D || last == 0x20 || last == 0x09 { bytes.removeLast() }
        while let first = bytes.first, first == 0x20 || first == 0x09 { bytes.removeFirst() }
        guard !bytes.isEmpty else {
            throw CLIError("the upstream token from \(source) is empty; pipe it in (… < token.txt) or use --token-file")
        }
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw CLIError("the upstream token from \(source) contains spaces or non-ASCII characters")
        }
        return Secret(String(decoding: bytes, as: UTF8.self))
    }

    /// `2026-11-29 16:15 UTC`.
    static func format(epoch: Int) -> String {
        var t = time_t(epoch)
        var parts = tm()
        gmtime_r(&t, &parts)
        func digits(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
        }
        return "\(digits(parts.tm_year + 1900, 4))-\(digits(parts.tm_mon + 1, 2))-\(digits(parts.tm_mday, 2)) \(digits(parts.tm_hour, 2)):\(digits(parts.tm_min, 2)) UTC"
    }
}

/// A session lifetime on the command line: `90s`, `30m`, `8h`, `2d`, or plain seconds.
struct SessionLifetime: ExpressibleByArgument {
    var seconds: Double

    init(seconds: Double) {
        self.seconds = seconds
    }

    init?(argument: String) {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var text = argument
        var unit: Double = 1
        if let last = text.last, let u = units[last] {
            unit = u
            text.removeLast()
        }
        guard !text.isEmpty, text.allSatisfy(\.isASCII), text.allSatisfy(\.isNumber), let value = Double(text), value > 0 else { return nil }
        seconds = value * unit
    }
}
