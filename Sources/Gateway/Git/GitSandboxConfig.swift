import GatewayCore
/// The git configuration a sandboxed process gets, as environment variables only.
///
/// Uses `GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_n` / `GIT_CONFIG_VALUE_n` (git ≥ 2.31), which
/// override config files, so nothing is written inside the sandbox:
/// - `url.<gateway>/git/<host>/.insteadOf` for every spelling of each git host
///   (`https://<host>/`, `git@<host>:`, `ssh://git@<host>/`, `ssh://git@<host>:22/`, …, one key
///   given several times, as git allows), so plain `git clone https://github.com/owner/repo`
///   goes to the gateway;
/// - the same per owner and per repository of the session's scope (see `environment`);
/// - `http.<gateway>/.extraHeader = Authorization: Bearer <session token>`, sent only to
///   the gateway;
/// - an empty `credential.helper`, which resets the helper list so no stored credential
///   is offered, and `GIT_TERMINAL_PROMPT=0` so a refusal fails instead of prompting.
package enum GitSandboxConfig {
    /// The gateway's URL as the sandbox sees it.
    package static let defaultGatewayURL = "http://airlock.internal"

    /// The ways a remote on `host` can be written: HTTPS (and plain HTTP), and every SSH
    /// spelling git accepts (scp-like, `ssh://` with and without user and port 22, and the
    /// `git+ssh`/`ssh+git` forms). Each ends where the repository path begins.
    package static func spellings(of host: String) -> [String] {
        [
            "https://\(host)/", "http://\(host)/",
            "git@\(host):", "ssh://git@\(host)/", "ssh://git@\(host):22/", "ssh://\(host)/", "ssh://\(host):22/",
            "git+ssh://git@\(host)/", "ssh+git://git@\(host)/",
        ]
    }

    /// The environment for a sandbox process using `token` on the git hosts `hosts`. Without
    /// a token (a run given no `--repo`) git is still sent to the gateway, which answers with
    /// the `--repo` to pass.
    ///
    /// `repositories` (the session's scope) adds the same rewrites per owner and per
    /// repository (`https://github.com/octo/`, `https://github.com/octo/app` …). git applies
    /// the *longest* matching `insteadOf` and, between equally long ones, the first read: a
    /// system or user rule for `https://github.com/` or `https://github.com/octo/` (a mirror,
    /// or the common rewrite to SSH) is read before the environment's and would win a tie;
    /// the per-repository prefixes are longer, so the gateway wins for every repository the
    /// session covers, and the per-owner ones beat a host-wide rule for the owner's others.
    ///
    /// The result contains the session token (in `GIT_CONFIG_VALUE_n`); it is meant for
    /// the sandboxed process only and must never be logged.
    package static func environment(
        gatewayURL: String = defaultGatewayURL, hosts: [String], repositories: [GitRepository] = [], token: Secret?
    ) -> [String: String] {
        let gateway = gatewayURL.hasSuffix("/") ? String(gatewayURL.dropLast()) : gatewayURL
        var entries: [(String, String)] = []
        let allHosts = Set(hosts.map { $0.lowercased() } + repositories.map(\.host))
        for host in allHosts.sorted() {
            let key = "url.\(gateway)/git/\(host)/.insteadOf"
            for spelling in spellings(of: host) { entries.append((key, spelling)) }
            let onHost = repositories.filter { $0.host == host }
            let paths = Set(onHost.map { "\($0.owner)/" }).union(onHost.map { "\($0.owner)/\($0.name)" })
            for path in paths.sorted() {
                let pathKey = "url.\(gateway)/git/\(host)/\(path).insteadOf"
                for spelling in spellings(of: host) { entries.append((pathKey, spelling + path)) }
            }
        }
        token?.withRevealed { entries.append(("http.\(gateway)/.extraHeader", "Authorization: Bearer \($0)")) }
        entries.append(("credential.helper", ""))
        var environment: [String: String] = ["GIT_CONFIG_COUNT": String(entries.count), "GIT_TERMINAL_PROMPT": "0"]
        for (index, entry) in entries.enumerated() {
            environment["GIT_CONFIG_KEY_\(index)"] = entry.0
            environment["GIT_CONFIG_VALUE_\(index)"] = entry.1
        }
        return environment
    }
}
