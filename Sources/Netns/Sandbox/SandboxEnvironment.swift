/// The environment of a sandboxed command: built from the caller's, not inherited wholesale.
package enum SandboxEnvironment {
    /// The proxy every HTTP client inside the sandbox is pointed at.
    package static let proxyURL = "http://airlock.internal:3128"

    /// Whether a variable name looks like it carries a credential.
    ///
    /// Matches `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*PASSWD*`, `*CREDENTIAL*`, `*_AUTH*`,
    /// `*APIKEY*`, `*API_KEY*`, `*PRIVATE_KEY*`, `*SESSION_ID*`, `*COOKIE*`, `*_KEY`, `*_KEY_*`,
    /// `*_PAT`, `AWS_*`, `AZURE_*`, `VAULT_*`, and known names (`GH_TOKEN`, `GITHUB_TOKEN`,
    /// `SSH_AUTH_SOCK`, `SSH_AGENT_PID`, `GPG_AGENT_INFO`, `NETRC`, `XAUTHORITY`, `KUBECONFIG`),
    /// case-insensitively. Path-valued `*_CA_BUNDLE` and `*_CONFIG_FILE` pass.
    package static func isCredentialName(_ name: String) -> Bool {
        // Names are ASCII in practice: matched over their bytes, uppercased in place. A name
        // with any other byte takes the Unicode path below, where `uppercased()` may turn a
        // letter such as `ſ` into `S`.
        var upper: [UInt8] = []
        upper.reserveCapacity(name.utf8.count)
        for byte in name.utf8 {
            guard byte < 0x80 else { return isCredentialNameUnicode(name) }
            upper.append(byte >= 0x61 && byte <= 0x7A ? byte - 0x20 : byte)
        }
        return upper.withUnsafeBufferPointer { CredentialName(upper: $0).matches }
    }

    /// `isCredentialName` for any name: the same rules over the uppercased `String`.
    package static func isCredentialNameUnicode(_ name: String) -> Bool {
        let upper = name.uppercased()
        // Paths to CA bundles and config files are not credentials (`AWS_CA_BUNDLE`,
        // `REQUESTS_CA_BUNDLE`, `AWS_CONFIG_FILE`): tools need them to work.
        if upper.hasSuffix("_CA_BUNDLE") || upper.hasSuffix("_CONFIG_FILE") { return false }
        let contains = ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "APIKEY", "API_KEY", "PRIVATE_KEY", "SESSION_ID", "COOKIE"]
        if contains.contains(where: { upper.contains($0) }) { return true }
        // `_AUTH` as a word (NPM_AUTH, X_AUTH_HEADER), not a prefix of one (GIT_AUTHOR_NAME).
        if upper.hasSuffix("_AUTH") || upper.contains("_AUTH_") || upper.hasPrefix("AUTH_") { return true }
        if upper.hasSuffix("_KEY") || upper.contains("_KEY_") || upper == "KEY" || upper.hasSuffix("_PAT") { return true }
        let prefixes = ["AWS_", "AZURE_", "VAULT_"]
        if prefixes.contains(where: { upper.hasPrefix($0) }) { return true }
        let exact = ["SSH_AUTH_SOCK", "SSH_AGENT_PID", "GPG_AGENT_INFO", "NETRC", "GH_TOKEN", "GITHUB_TOKEN", "XAUTHORITY", "KUBECONFIG"]
        return exact.contains(upper)
    }

    /// The rules of `isCredentialName` over an ASCII name's uppercased bytes.
    private struct CredentialName {
        let upper: UnsafeBufferPointer<UInt8>

        static let contained: [[UInt8]] = ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "APIKEY", "API_KEY", "PRIVATE_KEY",
                                           "SESSION_ID", "COOKIE", "_AUTH_", "_KEY_"].map { Array($0.utf8) }
        static let prefixes: [[UInt8]] = ["AUTH_", "AWS_", "AZURE_", "VAULT_"].map { Array($0.utf8) }
        static let suffixes: [[UInt8]] = ["_AUTH", "_KEY", "_PAT"].map { Array($0.utf8) }
        static let exact: [[UInt8]] = ["KEY", "SSH_AUTH_SOCK", "SSH_AGENT_PID", "GPG_AGENT_INFO", "NETRC", "GH_TOKEN", "GITHUB_TOKEN",
                                       "XAUTHORITY", "KUBECONFIG"].map { Array($0.utf8) }
        static let passing: [[UInt8]] = ["_CA_BUNDLE", "_CONFIG_FILE"].map { Array($0.utf8) }

        var matches: Bool {
            if Self.passing.contains(where: hasSuffix) { return false }
            return Self.contained.contains(where: contains) || Self.prefixes.contains(where: hasPrefix)
                || Self.suffixes.contains(where: hasSuffix) || Self.exact.contains { $0.elementsEqual(upper) }
        }

        func hasPrefix(_ word: [UInt8]) -> Bool {
            word.count <= upper.count && upper.prefix(word.count).elementsEqual(word)
        }

        func hasSuffix(_ word: [UInt8]) -> Bool {
            word.count <= upper.count && upper.suffix(word.count).elementsEqual(word)
        }

        func contains(_ word: [UInt8]) -> Bool {
            guard word.count <= upper.count, let first = word.first else { return false }
            var start = 0
            while start + word.count <= upper.count {
                if upper[start] == first && upper[start..<(start + word.count)].elementsEqual(word) { return true }
                start += 1
            }
            return false
        }
    }

    /// Names set by airlock itself; a caller's value is replaced.
    package static let proxyNames = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"]

    /// Builds the command's environment from `inherited`: credential-looking variables are
    /// dropped (their names returned, sorted, never their values), HOME/USER/LOGNAME set
    /// for the target user, the proxy variables pointed at the gateway, and `extra` (the
    /// caller's `--env`, later the git session configuration) merged last.
    package static func build(
        from inherited: [String: String], home: String, user: String, gateway: String,
        extra: [String: String] = [:]
    ) -> (environment: [String: String], droppedNames: [String]) {
        var environment: [String: String] = [:]
        var dropped: [String] = []
        for (name, value) in inherited {
            if proxyNames.contains(name) { continue }
            if isCredentialName(name) {
                dropped.append(name)
                continue
            }
            environment[name] = value
        }
        environment["HOME"] = home
        environment["USER"] = user
        environment["LOGNAME"] = user
        if environment["PATH"] == nil { environment["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            environment[name] = proxyURL
        }
        let noProxy = "airlock.internal,\(gateway),localhost,127.0.0.1,::1"
        environment["NO_PROXY"] = noProxy
        environment["no_proxy"] = noProxy
        for (name, value) in extra {
            environment[name] = value
        }
        return (environment, dropped.sorted())
    }

    /// `NAME=value` strings in name order, as execve takes them.
    package static func entries(_ environment: [String: String]) -> [String] {
        environment.keys.sorted().map { "\($0)=\(environment[$0]!)" }
    }
}
