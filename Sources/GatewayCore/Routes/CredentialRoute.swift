/// One credential route: `http://airlock.internal/api/NAME/…` goes to one HTTPS upstream
/// base URL with headers whose values are secrets the gateway holds.
///
/// Written in the policy as
/// `route NAME https://HOST[:PORT][/BASE] header HEADER=secret:SECRET [header …] [budget N]`;
/// `HEADER=bearer:SECRET` sends `Bearer <secret>`; `budget N` allows N requests through the
/// route for the gateway's life (a run), then answers `429`. A plain value, part of the `Policy`,
/// so routes reload with it. It names secrets, never holds them.
///
/// `route NAME https://API github-session HOST` is a GitHub REST API route: instead of
/// headers, it authenticates with the upstream token of the git session whose token the
/// client presents, and passes only what `GitHubAPIScope` allows for that session's
/// repositories on the git host `HOST`.
package struct CredentialRoute: Sendable, Equatable {
    /// One header the gateway adds to every request of the route.
    package struct Header: Sendable, Equatable {
        /// How the secret is written into the header value.
        package enum Form: String, Sendable, Equatable {
            /// The secret as it is.
            case secret
            /// `Bearer <secret>`.
            case bearer
        }

        /// The header name, lowercase.
        package var name: String
        /// The name of the secret whose value is sent.
        package var secret: String
        package var form: Form

        /// The header value for `value`, the secret's value.
        package func value(for value: String) -> String {
            switch form {
            case .secret: value
            case .bearer: "Bearer " + value
            }
        }

        /// `name=secret:S` as written in the policy.
        package var text: String { "\(name)=\(form.rawValue):\(secret)" }
    }

    /// The route's name: the path segment after `/api/`.
    package var name: String
    /// The upstream host name (lowercase) or IP literal (without brackets).
    package var host: String
    package var port: Int
    /// The upstream base path without a trailing slash; empty for the root.
    package var basePath: String
    /// The headers added to every request.
    package var headers: [Header]
    /// How many requests the route passes in the gateway's life; nil for no limit.
    package var budget: Int?
    /// For a GitHub API route (`github-session HOST`): the git host (lowercase) whose
    /// sessions' repositories and upstream tokens the route uses; nil for a header route.
    package var sessionHost: String?
    /// The line as written (with `@preset: ` in front when a preset expanded it).
    package var text: String
    /// Where the route came from: `line N` or the flag.
    package var origin: String

    /// `https://host[:port]/base`, for messages and `policy explain`.
    package var url: String { "https://\(hostHeader)\(basePath)" }

    /// The `Host` header value sent upstream.
    package var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == 443 ? name : "\(name):\(port)"
    }

    /// The secret names the route needs, in order, without repeats.
    package var secretNames: [String] {
        var names: [String] = []
        for header in headers where !names.contains(header.secret) { names.append(header.secret) }
        return names
    }

    /// The URL the sandbox uses: `http://airlock.internal/api/NAME`.
    package var sandboxURL: String { "http://\(HostName.gateway)/api/\(name)" }

    /// A problem with a route line, one line naming the value.
    package struct Invalid: Error, CustomStringConvertible, Equatable {
        package let description: String

        package init(description: String) { self.description = description }
    }

    /// Whether `name` is a usable route or secret name: 1–64 of `a-z 0-9 - _ .`, starting
    /// with a letter or digit.
    package static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 64 else { return false }
        func allowed(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) }
        return allowed(first) && name.utf8.allSatisfy { allowed($0) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E }
    }

    /// Headers a route may not set: framing, hop-by-hop and the upstream's `Host`.
    static let forbiddenHeaders: Set<String> = [
        "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade",
        "expect", "proxy-connection", "proxy-authorization", "proxy-authenticate",
    ]

    /// Parses the words after `route`: `NAME URL header H=secret:S …`.
    /// - Throws: `Invalid` naming the part that is wrong.
    package init(words: [Substring], text: String, origin: String) throws {
        guard words.count >= 4, words.count % 2 == 0 else {
            throw Invalid(description: "'\(text)': expected 'route NAME https://HOST[/BASE] header HEADER=secret:SECRET [header …]'")
        }
        let name = String(words[0])
        guard Self.isValidName(name) else {
            throw Invalid(description: "route '\(name)': a route name is 1–64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit")
        }
        self.name = name
        (host, port, basePath) = try Self.parseURL(String(words[1]), route: name)
        var headers: [Header] = []
        var budget: Int?
        var sessionHost: String?
        var index = 2
        while index < words.count {
            if words[index] == "github-session" {
                let host = String(words[index + 1])
                guard sessionHost == nil else { throw Invalid(description: "route \(name): github-session is given twice") }
                do {
                    try GitRepository.checkHost(host)
                } catch let error as GitRepository.Invalid {
                    throw Invalid(description: "route \(name): github-session: \(error.description)")
                }
                sessionHost = host.lowercased()
                index += 2
                continue
            }
            if words[index] == "budget" {
                let text = words[index + 1]
                guard budget == nil else { throw Invalid(description: "route \(name): budget is given twice") }
                guard text.count <= 9, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = Int(text), value >= 1 else {
                    throw Invalid(description: "route \(name): budget '\(text)' is not a number of requests (1–999999999)")
                }
                budget = value
                index += 2
                continue
            }
            guard words[index] == "header" else {
                throw Invalid(description: "route \(name): unexpected '\(words[index])' (expected 'header HEADER=secret:SECRET', 'github-session HOST' or 'budget REQUESTS')")
            }
            let header = try Self.parseHeader(words[index + 1], route: name)
            guard !headers.contains(where: { $0.name == header.name }) else {
                throw Invalid(description: "route \(name): header \(header.name) is set twice")
            }
            headers.append(header)
            index += 2
        }
        if sessionHost != nil {
            guard headers.isEmpty else {
                throw Invalid(description: "route \(name): a github-session route sends the session's upstream token; it sets no header")
            }
        } else if headers.isEmpty {
            throw Invalid(description: "route \(name): no header; a route adds at least one 'header HEADER=secret:SECRET'")
        }
        self.headers = headers
        self.sessionHost = sessionHost
        self.budget = budget
        self.text = text
        self.origin = origin
    }

    private static func parseHeader(_ word: Substring, route: String) throws -> Header {
        guard let equals = word.firstIndex(of: "=") else {
            throw Invalid(description: "route \(route): header '\(word)': expected HEADER=secret:SECRET or HEADER=bearer:SECRET")
        }
        let name = word[..<equals].lowercased()
        let value = word[word.index(after: equals)...]
        let tokenCharacters = Set("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~".utf8)
        guard !name.isEmpty, name.utf8.allSatisfy(tokenCharacters.contains) else {
            throw Invalid(description: "route \(route): '\(word[..<equals])' is not a header name")
        }
        guard !forbiddenHeaders.contains(name), !name.hasPrefix("proxy-") else {
            throw Invalid(description: "route \(route): the gateway sets \(name) itself; a route cannot")
        }
        let form: Header.Form
        let secret: Substring
        if value.hasPrefix("secret:") {
            form = .secret
            secret = value.dropFirst("secret:".count)
        } else if value.hasPrefix("bearer:") {
            form = .bearer
            secret = value.dropFirst("bearer:".count)
        } else {
            throw Invalid(description: "route \(route): header \(name): the value must be secret:SECRET or bearer:SECRET (values are never written in the policy)")
        }
        guard isValidName(String(secret)) else {
            throw Invalid(description: "route \(route): header \(name): '\(secret)' is not a secret name (1–64 of a-z, 0-9, '-', '_', '.')")
        }
        return Header(name: name, secret: String(secret), form: form)
    }

    /// `https://HOST[:PORT][/PATH]`: host and port checked, the path without query,
    /// fragment, escapes, `.` or `..`.
    private static func parseURL(_ url: String, route: String) throws -> (host: String, port: Int, basePath: String) {
        let shown = "route \(route): \(url)"
        let parsed: HTTPSBaseURL
        do {
            parsed = try HTTPSBaseURL.parse(url, plainWords: "the upstream must start with https:// (the credential never travels unencrypted)")
        } catch {
            throw Invalid(description: "\(shown): \(error.words)")
        }
        let port = parsed.port
        var hostText = parsed.host
        if let address = IPAddress(hostText) {
            hostText = address.description
        } else {
            guard HostLiteral.parse(hostText) == nil else {
                throw Invalid(description: "\(shown): write an IP address in its usual form (127.0.0.1, [::1])")
            }
            do {
                hostText = try HostName.normalise(hostText)
            } catch let error as HostName.InvalidName {
                throw Invalid(description: "\(shown): \(error.problem)")
            }
            while hostText.hasSuffix(".") { hostText.removeLast() }
            if hostText == HostName.gateway || hostText.hasSuffix("." + HostName.gateway) {
                throw Invalid(description: "\(shown): \(HostName.gateway) is the gateway itself")
            }
        }
        return (hostText, port, parsed.basePath)
    }
}
