#if canImport(Glibc)
import Glibc
#endif
import Gateway
import GatewayCore
import Netns

/// `airlock run` through the gateway daemon's user socket, for an account that cannot
/// build the sandbox itself: user namespaces are blocked (AppArmor's restriction on Ubuntu
/// 24.04, `kernel.unprivileged_userns_clone=0`, hardened hosts) and an admin runs `airlock
/// gateway serve --all --users GROUP`. The daemon makes a sandbox `run-PID` with the run's
/// policy, this process gives its gateway the session and the secrets, runs CMD in it as
/// the caller, and the daemon destroys it when CMD ends or this process goes away.
///
/// What the daemon does not take from a caller is refused before anything is made: its
/// audit log is the admin's (the run's decisions go there), git upstreams and CAs are its
/// own, and CMD runs as the caller.
struct DelegatedRun {
    let command: RunCommand
    let plan: RunPlan

    /// Why `run` goes through the daemon, or nil to build the sandbox here.
    /// - Parameters:
    ///   - forced: `--via-daemon`.
    ///   - mode: how `RunPlan` would build it.
    ///   - offered: whether the daemon's user socket exists.
    ///   - probe: tries a user namespace; nil when one can be made.
    /// - Throws: `CLIError` for `--via-daemon` where it cannot be honoured.
    static func reason(forced: Bool, mode: RunPlan.Mode, offered: Bool, probe: () -> SandboxSetupError?) throws -> String? {
        if forced {
            guard mode == .rootless else {
                throw CLIError("--via-daemon: as root, airlock run builds the sandbox itself (the daemon runs commands as their caller, never root)")
            }
            guard offered else {
                throw CLIError("--via-daemon: no gateway daemon offers sandboxes to users here (nothing listens at \(UserRequest.socketPath)); an admin starts one with `airlock gateway serve --all --users GROUP`")
            }
            return "--via-daemon"
        }
        guard mode == .rootless, offered, let problem = probe() else { return nil }
        return "user namespaces are unavailable here (\(problem))"
    }

    /// The options a delegated run cannot honour, as one refusal; nil when there are none.
    static func refusal(of command: RunCommand) -> String? {
        var refused: [String] = []
        if command.gateway.auditLog != nil { refused.append("--audit-log (the daemon's audit log records the run)") }
        if command.gateway.learn != nil { refused.append("--learn") }
        if !command.gateway.gitUpstream.isEmpty { refused.append("--git-upstream (the daemon's upstreams serve)") }
        if command.gateway.upstreamCA != nil { refused.append("--upstream-ca") }
        if command.user != nil { refused.append("--user (CMD runs as you)") }
        if command.json { refused.append("--json (the decisions are in the daemon's audit log)") }
        guard !refused.isEmpty else { return nil }
        return "not offered when running through the gateway daemon: \(refused.joined(separator: ", "))"
    }

    /// The policy handed to the daemon: the policy files this run would read (read as the
    /// caller), then the command line's rules, one line each.
    static func policyText(files: PolicyFiles?, options: GatewayOptions) throws -> String {
        // Each part parsed once, under its own name, so a bad line names where it is.
        var text = ""
        for file in try files?.listing().files ?? [] {
            let part = try SandboxCommand.readPolicyFile(file)
            try SandboxCommand.checkPolicy(part, source: file)
            text += part
        }
        // The flags as the run itself reads them (a bad value is refused naming its flag),
        // then as the lines they stand for.
        do {
            _ = try Policy.rules(allow: options.allow, allowPrivate: options.allowPrivate, resolve: options.resolve,
                                 routes: options.route, source: "command line")
        } catch {
            throw CLIError(String(describing: error))
        }
        let flags = Policy.flagLines(allow: options.allow, allowPrivate: options.allowPrivate, resolve: options.resolve,
                                     routes: options.route)
        return text + flags.map { $0.line + "\n" }.joined()
    }

    /// Makes the sandbox, hands its gateway the session and secrets, runs CMD; returns its status.
    func execute(reason: String) throws -> Int32 {
        let policy = try Self.policyText(files: plan.policyFiles, options: command.gateway)
        let name = try NamespaceName(plan.sandboxName)
        printNotice("airlock: \(reason); running through the gateway daemon (\(UserRequest.socketPath)) in sandbox \(name.rawValue)")
        _ = try UserBrokerClient.send(.create(sandbox: name.rawValue, policy: policy))
        // The exec is ephemeral (the daemon removes the sandbox after CMD); this covers a
        // failure before it starts.
        defer { _ = try? UserBrokerClient.send(.destroy(sandbox: name.rawValue)) }
        var sessionToken: String?
        if let token = plan.upstreamToken {
            let response = try UserBrokerClient.control(
                .create(repos: command.repos, ttlSeconds: nil, upstreamToken: token, protect: command.push.protect,
                        pushRefs: command.push.pushRefs, allowForcePush: command.push.allowForcePush,
                        maxPushSize: command.push.maxPushSize, pushRate: command.push.pushRate),
                sandbox: name.rawValue)
            switch response {
            case let .created(token, _): sessionToken = token.withRevealed { $0 }
            case let .failure(message): throw CLIError(message)
            default: throw CLIError("unexpected answer from the gateway of \(name.rawValue)")
            }
        }
        for (secret, value) in plan.routeSecrets.sorted(by: { $0.key < $1.key }) {
            if case let .failure(message) = try UserBrokerClient.control(.setSecret(name: secret, value: value), sandbox: name.rawValue) {
                throw CLIError(message)
            }
        }
        // The caller's environment less what carried the token and the secrets; the daemon
        // filters credential-looking names as `netns exec` does.
        var environment = ProcessInfoEnvironment.current
        for dropped in plan.droppedNames { environment.removeValue(forKey: dropped) }
        return try UserBrokerClient.exec(
            sandbox: name.rawValue, argv: command.command, environment: environment, options: try command.sandbox.forwarded(),
            session: sessionToken, ephemeral: true)
    }
}
