/// A host and port taken from a request target or a `Host` header, syntax-checked only.
///
/// The host is lowercased and otherwise left as written; the policy decides whether it
/// is a name it allows (and refuses IP literals in every spelling).
package struct HostAndPort: Sendable, Equatable {
    /// The host as written, lowercased; IPv6 literals keep their brackets.
    package var host: String
    /// The port, 1–65535.
    package var port: Int

    /// Creates a host and port.
    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Why a target or header was refused.
    package struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        /// One line for the sandbox, without the `airlock: ` a `Refusal` puts before it.
        package var description: String
    }

    /// Parses `host[:port]`, as in `CONNECT` targets and `Host` headers.
    package static func parseAuthority(_ text: String, defaultPort: Int = 443) -> Result<HostAndPort, Problem> {
        // The text as a refusal shows it; made only for a refusal.
        var shown: String { String(text.prefix(100).filter { $0.isASCII && !$0.isNewline && $0 != "\r" }) }
        guard !text.isEmpty, text.utf8.count <= 300 else {
            return .failure(Problem(description: "malformed request: missing or overlong host"))
        }
        var hostPart: Substring
        var portPart: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                return .failure(Problem(description: "malformed request: bad host \(shown)"))
            }
            hostPart = text[text.startIndex...close]
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else {
                    return .failure(Problem(description: "malformed request: bad host \(shown)"))
                }
                portPart = rest.dropFirst()
            }
        } else if let colon = text.lastIndex(of: ":") {
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        } else {
            hostPart = Substring(text)
        }
        let hostAllowed: (UInt8) -> Bool = { c in
            (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39)
                || c == 0x2D || c == 0x2E || c == 0x5F || c == 0x5B || c == 0x5D || c == 0x3A
        }
        guard !hostPart.isEmpty, hostPart.utf8.allSatisfy(hostAllowed) else {
            return .failure(Problem(description: "malformed request: bad host \(shown)"))
        }
        if !hostPart.hasPrefix("["), hostPart.contains(":") {
            return .failure(Problem(description: "malformed request: bad host \(shown)"))
        }
        var port = defaultPort
        if let portPart {
            guard !portPart.isEmpty, portPart.utf8.count <= 5, portPart.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let value = Int(portPart), value >= 1, value <= 65535 else {
                return .failure(Problem(description: "malformed request: bad port in \(shown)"))
            }
            port = value
        }
        return .success(HostAndPort(host: hostPart.lowercased(), port: port))
    }

    /// An absolute-form target split into its parts.
    package struct AbsoluteTarget: Sendable, Equatable {
        /// `http` or `https`, lowercased.
        package var scheme: String
        /// The authority's host and port (default 80 for http, 443 for https).
        package var authority: HostAndPort
        /// The authority as written (for the `Host` header).
        package var authorityText: String
        /// The origin-form target: path and query, `/` if empty.
        package var originForm: String
    }

    /// Parses an absolute-form request target such as `http://example.org:8080/a?b`.
    package static func parseAbsolute(_ uri: String) -> Result<AbsoluteTarget, Problem> {
        guard let schemeEnd = uri.firstRange(of: "://") else {
            return .failure(Problem(description: "malformed request: the proxy needs an absolute URL such as http://host/path"))
        }
        let scheme = uri[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else {
            return .failure(Problem(description: "malformed request: unsupported scheme \(scheme.prefix(20))"))
        }
        let rest = uri[schemeEnd.upperBound...]
        let pathStart = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authorityText = String(rest[..<pathStart])
        if authorityText.contains("@") {
            return .failure(Problem(description: "malformed request: credentials in the URL are not forwarded"))
        }
        var origin = String(rest[pathStart...])
        if let hash = origin.firstIndex(of: "#") { origin = String(origin[..<hash]) }
        if origin.isEmpty { origin = "/" } else if origin.hasPrefix("?") { origin = "/" + origin }
        switch parseAuthority(authorityText, defaultPort: scheme == "https" ? 443 : 80) {
        case .failure(let problem): return .failure(problem)
        case .success(let authority):
            return .success(AbsoluteTarget(scheme: scheme, authority: authority, authorityText: authorityText, originForm: origin))
        }
    }
}
