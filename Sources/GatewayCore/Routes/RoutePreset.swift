/// Credential-route presets for the common model APIs: the route, and the variables that
/// point the provider's SDKs and CLIs inside the sandbox at it.
///
/// `@anthropic-api` in a policy (or `--allow @anthropic-api`) adds the route `anthropic`;
/// `airlock run` then sets `ANTHROPIC_BASE_URL` to the gateway and `ANTHROPIC_API_KEY` to
/// `placeholder`, a value useless outside (the SDKs refuse to start without one; the
/// gateway replaces whatever key the client sends). Sources are in docs/credential-routes.md.
package struct RoutePreset: Sendable, Equatable {
    /// The preset's name, without the `@`.
    package var name: String
    /// The route it defines; also the secret's name.
    package var route: String
    /// The route line, in the policy file syntax.
    package var line: String
    /// Variables set inside the sandbox when the route is in the policy.
    package var environment: [String: String]
    /// The variable the provider's tools read the key from on the host, for hints.
    package var keyVariable: String
    /// Variables that get the git session's token inside the sandbox (GitHub API route:
    /// the client presents it, the gateway swaps it for the real one). The session token
    /// is already in the sandbox's git configuration and is refused anywhere but this
    /// sandbox's gateway.
    package var sessionTokenVariables: [String] = []

    /// The value given to the key variable inside the sandbox.
    package static let placeholder = "airlock-placeholder-key-the-gateway-adds-the-real-one"

    /// Every route preset.
    package static let all: [RoutePreset] = [
        RoutePreset(
            name: "anthropic-api", route: "anthropic",
            line: "route anthropic https://api.anthropic.com header x-api-key=secret:anthropic",
            environment: ["ANTHROPIC_BASE_URL": "http://\(HostName.gateway)/api/anthropic", "ANTHROPIC_API_KEY": placeholder],
            keyVariable: "ANTHROPIC_API_KEY"),
        RoutePreset(
            name: "openai-api", route: "openai",
            line: "route openai https://api.openai.com header authorization=bearer:openai",
            environment: ["OPENAI_BASE_URL": "http://\(HostName.gateway)/api/openai/v1", "OPENAI_API_KEY": placeholder],
            keyVariable: "OPENAI_API_KEY"),
        RoutePreset(
            name: "gemini-api", route: "gemini",
            line: "route gemini https://generativelanguage.googleapis.com header x-goog-api-key=secret:gemini",
            environment: ["GOOGLE_GEMINI_BASE_URL": "http://\(HostName.gateway)/api/gemini", "GEMINI_API_KEY": placeholder],
            keyVariable: "GEMINI_API_KEY"),
        RoutePreset(
            name: "github-api", route: "github",
            line: "route github https://api.github.com github-session github.com",
            environment: ["GITHUB_API_URL": "http://\(HostName.gateway)/api/github"],
            keyVariable: "GITHUB_TOKEN", sessionTokenVariables: ["GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN"]),
    ]

    /// Preset name → its one rule line, for `Presets.all`.
    static var lines: [String: [String]] {
        Dictionary(uniqueKeysWithValues: all.map { ($0.name, [$0.line]) })
    }

    /// The preset whose route is `route`, if any.
    package static func forRoute(_ route: String) -> RoutePreset? {
        all.first { $0.route == route }
    }

    /// The presets whose routes `routes` holds unchanged (a route redefined in the policy
    /// is no longer its preset's).
    package static func presets(in routes: [CredentialRoute]) -> [RoutePreset] {
        routes.compactMap { route in
            guard let preset = forRoute(route.name), route.text.hasPrefix("@\(preset.name): ") else { return nil }
            return preset
        }
    }

    /// The variables to set inside the sandbox for `routes`: each preset route's variables,
    /// when the policy's route of that name is still the preset's (a route redefined in the
    /// policy gets none), and its session-token variables set to `sessionToken` when the run
    /// has a git session.
    package static func environment(for routes: [CredentialRoute], sessionToken: Secret? = nil) -> [String: String] {
        environment(for: presets(in: routes), sessionToken: sessionToken)
    }

    /// The variables `presets` set inside the sandbox, the session-token variables set to
    /// `sessionToken` when there is one.
    package static func environment(for presets: [RoutePreset], sessionToken: Secret? = nil) -> [String: String] {
        var environment: [String: String] = [:]
        for preset in presets {
            environment.merge(preset.environment) { _, new in new }
            if let sessionToken {
                for name in preset.sessionTokenVariables {
                    sessionToken.withRevealed { environment[name] = $0 }
                }
            }
        }
        return environment
    }
}
