import GatewayCore
/// Answers control requests for one gateway: creates, lists and revokes its sessions, sets
/// the credential routes' secrets, and names the route presets in force.
///
/// Pure decisions over the session store, so tests need no socket. Sessions are always
/// bound to this gateway's sandbox, and every repository must be on a configured git host.
package struct ControlResponder: Sendable {
    package let sandbox: String
    package let sessions: SessionStore
    /// The git hosts this gateway serves; the first is the default for `OWNER/REPO` entries.
    package let gitHosts: [String]
    /// Where `secret-set` puts secrets; nil refuses it.
    package let secrets: SecretStore?
    /// Where `secret_set` events go (the name, never the value).
    package let audit: AuditLog?
    /// The policy in force, for `presets`; nil answers with none.
    package let policy: PolicyStore?

    /// The longest secret accepted.
    package static let maximumSecretBytes = 16 * 1024

    package init(sandbox: String, sessions: SessionStore, gitHosts: [String], secrets: SecretStore? = nil, audit: AuditLog? = nil,
                 policy: PolicyStore? = nil) {
        self.policy = policy
        self.sandbox = sandbox
        self.sessions = sessions
        self.gitHosts = gitHosts.map { $0.lowercased() }
        self.secrets = secrets
        self.audit = audit
    }

    /// The default host for scope entries without one: `github.com` when configured, else
    /// the only configured host.
    package var defaultHost: String {
        gitHosts.contains("github.com") || gitHosts.count != 1 ? "github.com" : gitHosts[0]
    }

    /// The answer to `request`.
    package func respond(to request: ControlRequest) -> ControlResponse {
        switch request {
        case let .create(repos, ttl, upstreamToken, protect, pushRefs, allowForcePush, maxPushSize, pushRate):
            let pushPolicy: PushPolicy
            do {
                pushPolicy = try PushPolicy(protect: protect, pushRefs: pushRefs, allowForcePush: allowForcePush, maxPushSize: maxPushSize, pushRate: pushRate)
            } catch {
                return .failure(String(describing: error))
            }
            guard !repos.isEmpty else { return .failure("name at least one repository (--repo OWNER/REPO[:rw])") }
            guard repos.count <= 256 else { return .failure("at most 256 repositories per session") }
            var entries: [ScopeEntry] = []
            for text in repos {
                do {
                    let entry = try ScopeEntry(parsing: text, defaultHost: defaultHost)
                    guard gitHosts.contains(entry.repository.host) else {
                        return .failure("\(entry.repository.host) is not a git host of this gateway (configured: \(gitHosts.joined(separator: ", ")); see --git-upstream)")
                    }
                    entries.append(entry)
                } catch {
                    return .failure(String(describing: error))
                }
            }
            do {
                let (token, summary) = try sessions.create(
                    sandbox: sandbox, scope: SessionScope(entries), upstreamToken: upstreamToken, ttl: ttl, pushPolicy: pushPolicy)
                return .created(token: token, session: summary)
            } catch {
                return .failure(String(describing: error))
            }
        case .list:
            return .sessions(sessions.list())
        case .presets:
            return .presets(RoutePreset.presets(in: policy?.current.routes ?? []).map(\.name))
        case let .revoke(id):
            do {
                return .revoked(try sessions.revoke(id: id))
            } catch {
                return .failure(String(describing: error))
            }
        case let .setSecret(name, value):
            guard let secrets else { return .failure("this gateway holds no route secrets") }
            guard CredentialRoute.isValidName(name) else {
                return .failure("\(GitRepository.printable(String(name.prefix(64)))) is not a secret name (1–64 of a-z, 0-9, '-', '_', '.')")
            }
            let problem: String? = value.withRevealed { text in
                if text.isEmpty { return "the secret is empty" }
                if text.utf8.count > Self.maximumSecretBytes { return "the secret is larger than \(Self.maximumSecretBytes) bytes" }
                if text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                    return "the secret must be one line without control characters"
                }
                return nil
            }
            if let problem { return .failure("secret \(name): \(problem)") }
            secrets.set(name, value)
            audit?.record(AuditEvent(.secretSet, sandbox: sandbox, via: .control, secret: name))
            return .secretSet(name: name)
        }
    }
}
