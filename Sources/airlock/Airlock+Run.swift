#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Gateway
import Netns

/// `airlock run [options] -- CMD [ARG…]`: the one-command sandbox.
struct RunCommand: PlainCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        _superCommandName: "airlock",
        abstract: "Run a command with git access to named repositories, HTTP(S) to allowlisted hosts, and nothing else.",
        discussion: """
            Builds a sandbox network namespace whose only route is a veth link to a gateway \
            namespace, starts the gateway in this process, waits until every listener is ready, \
            runs CMD inside the sandbox, and tears everything down when CMD exits. airlock exits \
            with CMD's status (128+signal if a signal ended it, 127 if CMD is not found). INT, \
            TERM and HUP are forwarded to CMD. Nothing is left behind, even if airlock is killed: \
            the namespaces are unnamed and die with their last process.

            Rootless: a normal user with unprivileged user namespaces needs no privilege. As root, \
            CMD runs as --user (default: the user who ran sudo; never the host's root); every \
            capability is dropped, the bounding set included, and no_new_privs is set, and the \
            gateway itself drops to nobody before it reads a byte from the sandbox.

            Containment: CMD gets fresh /run, /tmp and /dev/shm (--share-tmp keeps the host's), \
            its own /proc with /proc/sys read-only, a seccomp filter (no new user namespaces, \
            bpf, keyrings, io_uring, …; --allow-nested-namespaces relaxes the first), and no \
            view of credential stores, host sockets, other kernel filesystem mounts, or \
            airlock's own files (the token file, every policy file read, the audit log). The \
            policy is read once and never reloaded during a run.

            Without user namespaces (blocked by AppArmor or a sysctl), where an admin runs \
            `airlock gateway serve --all --users GROUP` and you are in GROUP, the run goes \
            through that daemon, which says so on stderr: it makes the sandbox, runs CMD as \
            you, and removes it afterwards (--via-daemon asks for this anywhere). See \
            docs/user-access.md.

            Audit: with --audit-log FILE, lines go there; without it, they are held and written \
            to stderr once CMD has ended, never interleaved with CMD's own output.

            Git: with --repo and an upstream token (--token-env or --token-file), a session scoped \
            to those repositories is minted in this process; git inside is configured through \
            GIT_CONFIG_* variables so that `git clone https://github.com/OWNER/REPO` goes to the \
            gateway, which swaps the session token for the real one. The real token never enters \
            the sandbox.

            Egress: the policy and --allow HOST (repeatable; `@preset` works too). The policy: \
            --policy FILE alone; without it, as root /etc/airlock/policy and \
            /etc/airlock/policy.d/*.conf (each root-owned and not group- or world-writable), \
            otherwise $XDG_CONFIG_HOME/airlock/policy (default ~/.config/airlock/policy) and its \
            policy.d/*.conf; drop-ins in bytewise name order, missing files are fine, a file that \
            does not parse stops the run. With no policy and no --allow, nothing but the git \
            gateway is reachable.

            Credential routes: --route (or `route` lines in the policy, or --allow @anthropic-api, \
            @openai-api, @gemini-api) maps http://airlock.internal/api/NAME/… to an HTTPS API and \
            adds a header holding a secret given with --secret NAME=env:VAR, file:PATH or - (stdin). \
            The presets point the provider's SDK at the route and give its key variable a \
            placeholder; the real key never enters the sandbox. --allow @github-api gives the \
            GitHub REST API with the --repo session's token, for its repositories only \
            (GITHUB_API_URL, GITHUB_TOKEN hold the gateway's URL and the session token). See \
            docs/credential-routes.md.

            Example: airlock run --repo octo/app:rw --token-env GH_TOKEN --allow @pypi -- ./agent.sh
            """)

    @Option(name: .customLong("repo"), help: ArgumentHelp("A repository the command may use: [HOST/]OWNER/REPO[:rw] or https://HOST/OWNER/REPO[.git][:rw] (read-only unless :rw); HOST is github.com or a --git-upstream host; repeatable.", valueName: "repo"))
    var repos: [String] = []

    @Option(name: .long, help: ArgumentHelp("Read the upstream git token from this environment variable (removed from CMD's environment).", valueName: "var"))
    var tokenEnv: String?

    @Option(name: .long, help: ArgumentHelp("Read the upstream git token from this file.", valueName: "file"))
    var tokenFile: String?

    @Option(name: .long, help: ArgumentHelp("As root: run CMD as this user (default: the user who ran sudo).", valueName: "user"))
    var user: String?

    @OptionGroup var sandbox: SandboxOptions

    @OptionGroup var push: PushOptions

    @Flag(help: "When CMD exits, print a JSON summary line on stderr (exit status, decisions).")
    var json = false

    @Flag(help: "Run through the gateway daemon's user socket (see docs/user-access.md) even where user namespaces work; without it, that happens only where they do not.")
    var viaDaemon = false

    @OptionGroup var gateway: GatewayOptions

    @OptionGroup var routes: RouteOptions

    @Argument(parsing: .postTerminator, help: "The command and its arguments.")
    var command: [String] = []

    static let plainOptions: [PlainOption<Self>] = [
        .values("repo") { $0.repos = $1 }, .value("token-env") { $0.tokenEnv = $1 },
        .value("token-file") { $0.tokenFile = $1 }, .value("user") { $0.user = $1 },
        .flag("json") { $0.json = $1 }, .flag("via-daemon") { $0.viaDaemon = $1 },
    ]
    static let plainGroups: [PlainGroup<Self>] = [
        .init(SandboxOptions.self) { $0.sandbox = $1 }, .init(PushOptions.self) { $0.push = $1 },
        .init(GatewayOptions.self) { $0.gateway = $1 }, .init(RouteOptions.self) { $0.routes = $1 },
    ]
    static let plainTerminated: (inout Self, [String]) -> Void = { $0.command = $1 }

    func validate() throws {
        if command.isEmpty {
            throw ValidationError("missing the command to run: airlock run [OPTIONS] -- CMD [ARG…]")
        }
        if tokenEnv != nil && tokenFile != nil {
            throw ValidationError("--token-env and --token-file are exclusive: give one")
        }
    }

    func run() throws {
        let status = try reportingWrapperErrors { () throws -> Int32 in
            if let reason = try DelegatedRun.reason(
                forced: viaDaemon, mode: RunPlan.defaultMode(), offered: UserBrokerClient.isOffered(), probe: RootlessLauncher.probe) {
                // Refused before the plan, which would open what the daemon does not take.
                if let refusal = DelegatedRun.refusal(of: self) { throw CLIError(refusal) }
                return try DelegatedRun(command: self, plan: try RunPlan(command: self, mode: .rootless)).execute(reason: reason)
            }
            return try OneShotRun(plan: try RunPlan(command: self)).execute()
        }
        throw ExitCode(status)
    }
}
