#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Gateway
import Netns
import GatewayCore
import SystemCalls

/// Everything `airlock run` was asked to do, checked before anything is built: a bad
/// `--repo`, an unset token variable, an unknown preset or a missing `--user` fails here
/// and changes nothing.
struct RunPlan {
    /// A refusal of the command line, one line naming the value.
    struct Invalid: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Whether airlock builds the sandbox itself (root) or in a user namespace.
    enum Mode: Equatable {
        case root
        case rootless
    }

    let mode: Mode
    let command: [String]
    let user: SandboxUser
    let scope: SessionScope
    let pushPolicy: PushPolicy
    let upstreamToken: Secret?
    /// The credential routes' secrets (`--secret`).
    let routeSecrets: [String: Secret]
    let environment: [String: String]
    let droppedNames: [String]
    let view: SandboxView
    let sandboxOptions: SandboxOptions
    let workingDirectory: String?
    let topology: SandboxTopology
    let gatewayOptions: GatewayOptions
    /// The policy files read once when the gateway starts: `--policy FILE`, else the
    /// default locations of this mode (`GatewayOptions.policyFiles`).
    let policyFiles: PolicyFiles?
    let json: Bool
    /// GitHub Actions' step summary file (`GITHUB_STEP_SUMMARY`), where the run report is
    /// appended as Markdown.
    let stepSummary: String?

    /// The sandbox's name in audit lines: `run-<pid>`.
    let sandboxName: String

    /// How this process builds a sandbox: root in the initial user namespace as root, else rootless.
    static func defaultMode() -> Mode {
        geteuid() == 0 && UserNamespace.isInitial() ? .root : .rootless
    }

    /// - Parameter mode: how the sandbox is built; by default root in the initial user
    ///   namespace builds as root and everyone else rootless (tests plan either way).
    init(command options: RunCommand, environment inherited: [String: String] = ProcessInfoEnvironment.current, mode: Mode? = nil) throws {
        // uid 0 of a user namespace someone else made (unshare -Ur, a rootless container)
        // is not the host's root: it cannot build the veth pair, the rootless path can.
        self.mode = mode ?? Self.defaultMode()
        let mode = self.mode
        command = options.command
        var gatewayOptions = options.gateway
        gatewayOptions.drainTimeout = gatewayOptions.drainTimeout ?? GatewayOptions.runDrainTimeout
        self.gatewayOptions = gatewayOptions
        json = options.json
        stepSummary = inherited["GITHUB_STEP_SUMMARY"].flatMap { $0.isEmpty ? nil : $0 }
        topology = try SandboxTopology()
        sandboxName = "run-\(getpid())"

        // Git: the scope and the token go together. The token goes to every host of the
        // scope, so a host is taken only when it is github.com or named by --git-upstream.
        let gitHosts = ["github.com"] + ((try? options.gateway.gitUpstreams().keys.sorted()) ?? []).filter { $0 != "github.com" }
        var entries: [ScopeEntry] = []
        for repo in options.repos {
            let entry: ScopeEntry
            do {
                entry = try ScopeEntry(parsing: repo)
            } catch {
                throw Invalid("--repo '\(repo)': \(error) (expected [HOST/]OWNER/REPO[:rw] or https://HOST/OWNER/REPO[.git][:rw])")
            }
            let host = entry.repository.host
            guard gitHosts.contains(host) else {
                throw Invalid("--repo '\(repo)': \(host) is not a git host of this run (\(gitHosts.joined(separator: ", "))); to send the token there, add --git-upstream \(host)=https://\(host)")
            }
            entries.append(entry)
        }
        scope = SessionScope(entries)
        pushPolicy = try options.push.policy()
        upstreamToken = try Self.readToken(env: options.tokenEnv, file: options.tokenFile, environment: inherited)
        if !entries.isEmpty && upstreamToken == nil {
            throw Invalid("--repo needs the upstream git token: pass --token-env VAR or --token-file FILE")
        }
        if entries.isEmpty && upstreamToken != nil {
            throw Invalid("a token was given but no --repo: name the repositories the command may use")
        }

        // Credential routes' secrets: read now; their variables and files stay outside.
        let loadedSecrets = try options.routes.load(environment: inherited)
        routeSecrets = loadedSecrets.secrets

        // Who runs CMD.
        switch mode {
        case .root:
            user = try NetnsExec.resolveUser(options.user, environment: inherited)
        case .rootless:
            if let requested = options.user {
                let why = getuid() == 0 ? "needs the host's root (this is uid 0 of a nested user namespace)" : "needs root"
                throw Invalid("--user \(requested) \(why): a rootless run runs CMD as you (uid \(getuid()))")
            }
            // In a nested namespace, uid 0 inside must not be the host's root outside.
            if !UserNamespace.isInitial() { try UserNamespace.refuseRootMappedToRoot(uid: getuid(), gid: getgid()) }
            var me = try Users.lookup(uid: getuid())
            me.gid = getgid()
            me.groups = []
            user = me
        }

        // CMD's environment: built, not inherited; the token variable never passes.
        var base = inherited
        if let name = options.tokenEnv { base.removeValue(forKey: name) }
        for name in loadedSecrets.variables { base.removeValue(forKey: name) }
        var built = SandboxEnvironment.build(
            from: base, home: user.home, user: user.name,
            gateway: topology.gatewayAddress.address.description)
        // The secrets' variables are removed whatever their names, and listed too.
        built.droppedNames += loadedSecrets.variables
        environment = built.environment
        // The token variable is removed whatever its name; it is listed with the others.
        droppedNames = Array(Set(built.droppedNames + (options.tokenEnv.map { [$0] } ?? []))).sorted()
        workingDirectory = options.sandbox.workingDirectory()

        // airlock's own files are out of the command's reach: hidden inside, and as root
        // an audit log the command's user could change elsewhere is refused.
        sandboxOptions = options.sandbox
        // The policy: as root, the default files must be root's alone (they are /etc's).
        policyFiles = options.gateway.policyFiles(root: mode == .root, environment: inherited)
        var policyPaths: [String] = []
        if let policyFiles {
            if mode == .root && options.gateway.policy == nil {
                try GatewayOptions.refusalOfNonRootPaths(policyFiles, reloads: false)
            }
            // Every file read is hidden, and the drop-in directory as a whole.
            policyPaths = try policyFiles.listing().files + (policyFiles.dropInDirectory.map { [$0] } ?? [])
        }
        let ownFiles = [options.tokenFile, options.gateway.auditLogPath].compactMap { $0 } + policyPaths + loadedSecrets.files
        let auditFlag = options.gateway.learn == nil ? "--audit-log" : "--learn"
        if mode == .root, let audit = options.gateway.auditLogPath, let weak = PathSafety.changeable(audit, by: user) {
            throw Invalid("\(auditFlag) \(audit): \(user.name) (uid \(user.uid)) could change \(weak); put the audit log where the command's user cannot write")
        }
        // The audit log exists before the view is taken, so it is hidden from the start.
        if let audit = options.gateway.auditLogPath {
            let fd = open(audit, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw Invalid("\(auditFlag) \(audit): cannot open it (\(String(cString: strerror(errno))))") }
            close(fd)
        }
        view = try options.sandbox.view(for: user, workingDirectory: workingDirectory, protectedFiles: ownFiles)
    }

    /// The upstream token from `--token-env` or `--token-file`; nil when neither is given.
    static func readToken(env: String?, file: String?, environment: [String: String]) throws -> Secret? {
        if let env {
            guard let value = environment[env] else {
                throw Invalid("--token-env \(env): the variable is not set")
            }
            let token = value.trimmingWhitespaceAndNewlines()
            guard !token.isEmpty else { throw Invalid("--token-env \(env): the variable is empty") }
            return Secret(token)
        }
        if let file {
            let token = try readSecretFile(file, flag: "--token-file \(file)")
            guard !token.isEmpty else { throw Invalid("--token-file \(file): the file is empty") }
            guard !token.contains("\n") else { throw Invalid("--token-file \(file): expected one line") }
            return Secret(token)
        }
        return nil
    }

    /// The largest token or secret read from a file or standard input (`--token-file`,
    /// `--secret NAME=file:`, `--secret NAME=-`).
    static let maximumSecretFileSize = 64 * 1024

    /// A token or secret file's text, trimmed: read with `open`/`read` up to
    /// `maximumSecretFileSize` (a device that never ends, such as `/dev/zero`, is refused at
    /// the limit, never read into memory), or a refusal naming `flag` and the system's reason
    /// ("Is a directory", "Permission denied"). A pipe (`file:/dev/fd/3`) is read to its end.
    static func readSecretFile(_ path: String, flag: String) throws -> String {
        let bytes: [UInt8]
        do {
            bytes = try fileContents(path, limit: maximumSecretFileSize)
        } catch let error as SystemCallError {
            if error.code == EFBIG { throw Invalid("\(flag): larger than \(maximumSecretFileSize) bytes") }
            throw Invalid("\(flag): cannot read it (\(String(cString: strerror(error.code))))")
        }
        return String(decoding: bytes, as: UTF8.self).trimmingWhitespaceAndNewlines()
    }

    /// The git hosts of the scope.
    var gitHosts: [String] { Array(Set(scope.entries.map(\.repository.host))).sorted() }
}
