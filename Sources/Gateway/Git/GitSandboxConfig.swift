/// The git configuration a sandboxed process gets, as environment variables only.
///
/// Uses `GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_n` / `GIT_CONFIG_VALUE_n` (git ≥ 2.31), which
/// override config files, so nothing is written inside the sandbox:
/// - `url.<gateway>/git/<host>/.insteadOf` for `https://<host>/`, `git@<host>:` and
///   `ssh://git@<host>/` (one key given several times, as git allows), so plain
///   `git clone https://github.com/owner/repo` goes to the gateway;
/// - `http.<gateway>/.extraHeader = Authorization: Bearer <session token>`, sent only to
///   the gateway;
/// - an empty `credential.helper`, which resets the helper list so no stored credential
///   is offered, and `GIT_TERMINAL_PROMPT=0` so a refusal fails instead of prompting.
package enum GitSandboxConfig {
    /// The gateway's URL as the sandbox sees it.
    package static let defaultGatewayURL = "http://airlock.internal"

    /// The environment for a sandbox process using `token` on the git hosts `hosts`.
    ///
    /// `owners` (git host → repository owners of the session's scope) adds the same
    /// rewrites per owner (`https://github.com/octo/` …). git applies the *longest*
    /// matching `insteadOf` and, between equally long ones, the first read, so a system or
    /// user rule for `https://github.com/` (a mirror, or a rewrite to SSH) would otherwise
    /// win over the environment's; the longer per-owner prefixes win for the repositories
    /// the session covers.
    ///
    /// The result contains the session token (in `GIT_CONFIG_VALUE_n`); it is meant for
    /// the sandboxed process only and must never be logged.
    package static func environment(
        gatewayURL: String = defaultGatewayURL, hosts: [String], owners: [String: [String]] = [:], token: Secret
    ) -> [String: String] {
        let gateway = gatewayURL.hasSuffix("/") ? String(gatewayURL.dropLast()) : gatewayURL
        var entries: [(String, String)] = []
        for host in hosts.map({ $0.lowercased() }).sorted() {
            let key = "url.\(gateway)/git/\(host)/.insteadOf"
            entries.append((key, "https://\(host)/"))
            entries.append((key, "git@\(host):"))
            entries.append((key, "ssh://git@\(host)/"))
            for owner in Set(owners[host] ?? []).sorted() {
                let ownerKey = "url.\(gateway)/git/\(host)/\(owner)/.insteadOf"
                entries.append((ownerKey, "https://\(host)/\(owner)/"))
                entries.append((ownerKey, "git@\(host):\(owner)/"))
                entries.append((ownerKey, "ssh://git@\(host)/\(owner)/"))
            }
        }
        token.withRevealed { entries.append(("http.\(gateway)/.extraHeader", "Authorization: Bearer \($0)")) }
        entries.append(("credential.helper", ""))
        var environment: [String: String] = ["GIT_CONFIG_COUNT": String(entries.count), "GIT_TERMINAL_PROMPT": "0"]
        for (index, entry) in entries.enumerated() {
            environment["GIT_CONFIG_KEY_\(index)"] = entry.0
            environment["GIT_CONFIG_VALUE_\(index)"] = entry.1
        }
        return environment
    }
}
