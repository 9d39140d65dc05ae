extension Policy {
    /// Parses the words after `route` and adds the route; a second route of the same name
    /// in one file is an error.
    /// - Throws: `RuleProblem`.
    mutating func addRoute(_ words: [Substring], text: String, origin: String) throws {
        let route: CredentialRoute
        do {
            route = try CredentialRoute(words: words, text: text, origin: origin)
        } catch let error as CredentialRoute.Invalid {
            throw RuleProblem(message: error.description)
        }
        if let earlier = routes.first(where: { $0.name == route.name }) {
            throw RuleProblem(message: "route \(route.name) is already defined (\(earlier.origin))")
        }
        routes.append(route)
    }

    /// Adds `route`, replacing a route of the same name (command-line routes replace the
    /// file's).
    mutating func replaceRoute(_ route: CredentialRoute) {
        if let index = routes.firstIndex(where: { $0.name == route.name }) {
            routes[index] = route
        } else {
            routes.append(route)
        }
    }

    /// The route named `name`, if the policy has one.
    package func route(named name: String) -> CredentialRoute? {
        routes.first { $0.name == name }
    }

    /// Every secret name the routes use, sorted, without repeats.
    package var routeSecretNames: [String] {
        Array(Set(routes.flatMap(\.secretNames))).sorted()
    }

    /// The routes' secrets not among `known`, as (route, secret) pairs in route order.
    package func missingRouteSecrets(known: Set<String>) -> [(route: String, secret: String)] {
        Self.missingSecrets(of: routes, known: known)
    }

    /// The secrets of `routes` not among `known`, as (route, secret) pairs in route order.
    package static func missingSecrets(of routes: [CredentialRoute], known: Set<String>) -> [(route: String, secret: String)] {
        routes.flatMap { route in route.secretNames.filter { !known.contains($0) }.map { (route.name, $0) } }
    }

    /// Lines for `airlock policy explain`: each route, its upstream and the headers it sets
    /// (names and secret names only, never values).
    package func explainRoutes() -> [String] {
        guard !routes.isEmpty else { return ["routes: none"] }
        var lines = ["routes:"]
        for route in routes {
            let budget = route.budget.map { "; budget \($0) requests" } ?? ""
            let sets: String
            if let host = route.sessionHost {
                sets = "sends the git session's upstream token, only for the session's repositories on \(host) (GitHub API scope)"
            } else {
                sets = "sets " + route.headers.map(\.text).joined(separator: ", ")
            }
            lines.append("  \(route.sandboxURL)/… -> \(route.url)/… (\(route.origin)); \(sets)\(budget); client credential headers are removed; redirects are not followed")
        }
        return lines
    }
}
