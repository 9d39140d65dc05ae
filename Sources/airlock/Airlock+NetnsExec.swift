#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Gateway
import Netns
import GatewayCore

/// `airlock netns exec NAME [--user U] [--mask PATH]… [--env K=V]… -- CMD…`
struct NetnsExec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        _superCommandName: "airlock netns",
        abstract: "Run a command inside a persistent sandbox.",
        discussion: """
            CMD runs in the sandbox's network namespace, in new mount, PID and IPC namespaces: \
            a fresh /run, /tmp and /dev/shm, /etc/resolv.conf pointing at the gateway, \
            /etc/hosts with airlock.internal, credential stores masked (plus --mask), host \
            sockets and other kernel filesystem mounts hidden, and its own /proc with \
            /proc/sys read-only. It runs as the user with every capability dropped (the \
            bounding set too), no_new_privs, and a seccomp filter (no new user namespaces, \
            bpf, keyrings, io_uring, …). Credential-looking environment variables are not passed; their \
            names are listed on stderr. The variables of the gateway's credential-route presets \
            (ANTHROPIC_BASE_URL and a placeholder key, …) are set as `airlock run` sets them, \
            asked of the gateway over its control socket. INT, TERM and HUP are forwarded; airlock exits with \
            CMD's status (128+signal if a signal ended it, 127 if CMD is not found).

            The user: --user, else the user who ran sudo (SUDO_UID). As root without sudo, \
            --user is required. The host's root (uid 0, gid 0, the root group) is refused: \
            without capabilities it still owns /etc, /usr and root's files.

            Requires root (CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_SETPCAP).
            """)

    @Argument(help: "The sandbox name (as given to `airlock netns create`).")
    var name: String

    @Option(help: "Run CMD as this user (name or uid).")
    var user: String?

    @OptionGroup var sandbox: SandboxOptions

    @Option(name: .customLong("env"), help: ArgumentHelp("Set a variable for CMD.", valueName: "name=value"))
    var environment: [String] = []

    @Option(help: ArgumentHelp("A git session token from `airlock session create`: git inside goes to the gateway with it (AIRLOCK_SESSION_TOKEN also works and keeps the token off the command line).", valueName: "token"))
    var session: String?

    @Option(name: .customLong("git-host"), help: ArgumentHelp("A git host the gateway serves (default github.com); repeatable.", valueName: "host"))
    var gitHosts: [String] = []

    @Argument(parsing: .postTerminator, help: "The command and its arguments.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("missing the command to run: airlock netns exec NAME -- CMD [ARG…]") }
        try Self.checkVariables(environment)
    }

    /// Refuses an `--env` entry that is not NAME=VALUE.
    static func checkVariables(_ entries: [String]) throws {
        for entry in entries {
            guard let (name, _) = ProcessInfoEnvironment.assignment(entry), !name.isEmpty else {
                throw ValidationError("--env '\(entry)' is not NAME=VALUE")
            }
        }
    }

    func run() throws {
        let status = try reportingWrapperErrors { () throws -> ExitStatus in
            try Privileges.requireRoot(
                for: "airlock netns exec", capabilities: [.sysAdmin, .setuid, .setgid, .setpcap])
            let sandboxName = try NamespaceName(name)
            let target = try Self.resolveUser(user, environment: ProcessInfoEnvironment.current)
            let state = try PersistentSandbox().load(name: sandboxName)
            let namespace = try NetworkNamespace.open(path: state.sandboxPin)
            let gateway = state.topology.gatewayAddress.address.description

            let hosts = gitHosts.isEmpty ? ["github.com"] : gitHosts.map { $0.lowercased() }
            var spec = try Self.spec(
                argv: command, inherited: ProcessInfoEnvironment.current, extra: Self.variables(environment), user: target,
                options: sandbox, workingDirectory: sandbox.workingDirectory(), sandbox: sandboxName.rawValue, gateway: gateway,
                session: session ?? ProcessInfoEnvironment.current["AIRLOCK_SESSION_TOKEN"], gitHosts: hosts, notice: printNotice)
            spec.networkNamespace = namespace.descriptor.rawValue
            let process = try SandboxProcess.spawn(spec)
            // The init has joined the namespace by now; closing here also keeps it open until here.
            try? namespace.close()
            try SignalForwarding.start(to: process.pid)
            defer { SignalForwarding.stop() }
            return process.wait()
        }
        throw ExitCode(status.shellCode)
    }

    /// `--env NAME=VALUE` entries (checked by `validate`) as variables.
    static func variables(_ entries: [String]) -> [String: String] {
        var variables: [String: String] = [:]
        for entry in entries {
            if let (name, value) = ProcessInfoEnvironment.assignment(entry) { variables[name] = value }
        }
        return variables
    }

    /// What `netns exec` and the gateway daemon's user socket build before a command starts
    /// in sandbox `sandbox`: its environment (from `inherited` and `extra`, credential-looking
    /// names left out and listed), the view for `user` in `workingDirectory`, and the
    /// variables the gateway calls for: git's rewrites to it for a `session` token (per
    /// repository when the gateway names the session's) and the credential-route presets'.
    /// The network namespace is the caller's to set. `notice` gets the lines for the
    /// caller's standard error, in order.
    /// - Throws: `CLIError` for a `session` that is not a token; the view's errors.
    static func spec(
        argv: [String], inherited: [String: String], extra: [String: String] = [:], user: SandboxUser, options: SandboxOptions,
        workingDirectory: String?, sandbox: String, gateway: String, session: String?, gitHosts: [String],
        notice: (String) -> Void
    ) throws -> SandboxProcessSpec {
        let built = SandboxEnvironment.build(from: inherited, home: user.home, user: user.name, gateway: gateway, extra: extra)
        if !built.droppedNames.isEmpty {
            notice("airlock: not passed to the sandbox (credential-looking): \(built.droppedNames.joined(separator: ", "))")
        }
        let view = try options.view(for: user, workingDirectory: workingDirectory)
        view.notices.forEach(notice)
        var spec = SandboxProcessSpec(
            argv: argv, environment: built.environment, user: user, networkNamespace: -1, gatewayAddress: gateway,
            masks: view.masks, workingDirectory: workingDirectory)
        options.apply(to: &spec)
        // git inside goes to the gateway with the session token (never the real one).
        var sessionToken: Secret?
        if let session {
            guard SessionToken.isWellFormed(session) else {
                throw CLIError("--session: not an airlock session token (expected \(SessionToken.prefix)…, from `airlock session create`)")
            }
            sessionToken = Secret(session)
            let repositories = sessionRepositories(token: Secret(session), sandbox: sandbox, notice: notice)
            spec.extraEnvironment = GitSandboxConfig.environment(hosts: gitHosts, repositories: repositories, token: Secret(session))
        }
        // As in `run`: the gateway's preset routes point the provider's tools at it, the
        // key variable holds a placeholder, the GitHub API preset's token variables the
        // session token.
        let presets = routePresets(sandbox: sandbox, notice: notice)
        spec.extraEnvironment.merge(RoutePreset.environment(for: presets, sessionToken: sessionToken)) { _, route in route }
        return spec
    }

    /// The repositories of the session `token` stands for, asked of the sandbox's gateway
    /// by the session id (derived from the token; the token never travels): git's rewrite
    /// is then per repository and beats the user's and the system's own rules. Without an
    /// answer the rewrite covers whole hosts only, which such a rule can beat; said on stderr.
    static func sessionRepositories(token: Secret, sandbox: String, notice: (String) -> Void = printNotice) -> [GitRepository] {
        let id = SessionToken.digest(of: token).sessionID
        switch askGateway(.list, sandbox: sandbox, { response -> Result<[GitRepository], GatewayNoAnswer>? in
            guard case .sessions(let sessions) = response else { return nil }
            guard let session = sessions.first(where: { $0.id == id }) else {
                return .failure(GatewayNoAnswer(why: "the gateway of \(sandbox) has no live session \(id)"))
            }
            return .success(session.scope.compactMap { try? ScopeEntry(parsing: $0).repository })
        }) {
        case .success(let repositories):
            return repositories
        case .failure(let failure):
            notice("airlock: git rewrites cover whole hosts only (\(failure.why)); a user's or the system's own url.insteadOf rule for those hosts may win")
            return []
        }
    }

    /// The credential-route presets in force at the sandbox's gateway, asked over its
    /// control socket. Without an answer (no gateway serving, an older one) there are none,
    /// said on stderr: the command then runs without the presets' variables.
    static func routePresets(sandbox: String, notice: (String) -> Void = printNotice) -> [RoutePreset] {
        switch askGateway(.presets, sandbox: sandbox, { response -> Result<[RoutePreset], GatewayNoAnswer>? in
            guard case .presets(let names) = response else { return nil }
            return .success(names.compactMap { name in RoutePreset.all.first { $0.name == name } })
        }) {
        case .success(let presets):
            return presets
        case .failure(let failure):
            notice("airlock: the credential-route presets' variables are not set (\(failure.why))")
            return []
        }
    }

    /// Asks the sandbox's gateway over its control socket; `read` takes the answer it
    /// expects (nil for any other). The failure says why there is no answer: the gateway's
    /// own refusal, an unexpected answer, or no gateway to ask.
    private static func askGateway<Answer>(
        _ request: ControlRequest, sandbox: String, _ read: (ControlResponse) -> Result<Answer, GatewayNoAnswer>?
    ) -> Result<Answer, GatewayNoAnswer> {
        do {
            let response = try ControlClient.send(request, path: ControlSocket.path(sandbox: sandbox), sandbox: sandbox, timeoutSeconds: 5)
            if let answer = read(response) { return answer }
            if case .failure(let message) = response { return .failure(GatewayNoAnswer(why: message)) }
            return .failure(GatewayNoAnswer(why: "unexpected answer from the gateway"))
        } catch {
            return .failure(GatewayNoAnswer(why: String(describing: error)))
        }
    }

    /// The account CMD runs as: `--user`, else the sudo caller; root without sudo must say
    /// so. Never the host's root (uid 0, gid 0 or the root group).
    /// - Throws: `Users.LookupError`, `SandboxUser.HostRootError`, or `CLIError` when no user is known.
    static func resolveUser(_ requested: String?, environment: [String: String]) throws -> SandboxUser {
        let user: SandboxUser
        if let requested {
            user = try Users.lookup(requested)
        } else if let sudoUID = environment["SUDO_UID"], let uid = uid_t(sudoUID) {
            var caller = try Users.lookup(uid: uid)
            if let sudoGID = environment["SUDO_GID"], let gid = gid_t(sudoGID) { caller.gid = gid }
            user = caller
        } else {
            throw CLIError("no user to run as: pass --user USER (an ordinary account; airlock never runs sandboxed commands as the host's root)")
        }
        try user.refuseHostRoot()
        return user
    }

    static func currentDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return nil }
        return String(cString: buffer)
    }
}

/// The process environment as a dictionary.
enum ProcessInfoEnvironment {
    static var current: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            if let (name, value) = assignment(String(cString: entry)) { result[name] = value }
            pointer += 1
        }
        return result
    }

    /// `NAME=VALUE` split at its first "=" byte; nil without one. Split as bytes: a `String`
    /// split by characters first breaks the text into grapheme clusters, and an "=" followed
    /// by a combining mark is no "=" character (such an entry was lost, or refused).
    static func assignment(_ text: String) -> (name: String, value: String)? {
        let utf8 = text.utf8
        guard let equals = utf8.firstIndex(of: UInt8(ascii: "=")) else { return nil }
        return (String(decoding: utf8[..<equals], as: UTF8.self), String(decoding: utf8[utf8.index(after: equals)...], as: UTF8.self))
    }
}

/// Why `netns exec` got no answer from the sandbox's gateway (said on stderr).
struct GatewayNoAnswer: Error {
    let why: String
}
