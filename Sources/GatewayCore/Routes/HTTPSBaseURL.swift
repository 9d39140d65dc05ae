/// An upstream base URL, `https://HOST[:PORT][/PATH]`, split and checked one way for
/// every place that takes one (`--git-upstream`, credential routes). The caller checks the
/// host further by its own rules and puts its own prefix before `Problem.words`.
package struct HTTPSBaseURL: Equatable, Sendable {
    /// The host as written, lowercased; an IPv6 literal without its brackets.
    package var host: String
    /// The port, 443 unless given.
    package var port: Int
    /// The path without trailing slashes; empty for none.
    package var basePath: String

    /// What is wrong with a URL, in words that follow `URL: `.
    package struct Problem: Error, Equatable {
        package var words: String
    }

    /// Splits and checks `url`: https only; no user, query, fragment or escapes; printable
    /// ASCII; a port of 1–65535; no `.` or `..` in the path.
    /// - Throws: `Problem`; `plainWords` is the text for a URL that is not https.
    package static func parse(_ url: String, plainWords: String) throws(Problem) -> HTTPSBaseURL {
        guard url.lowercased().hasPrefix("https://") else { throw Problem(words: plainWords) }
        let rest = url.dropFirst("https://".count)
        let authority: Substring
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[slash...]
        } else {
            authority = rest
        }
        guard !authority.isEmpty, !authority.contains("@"), !path.contains("?"), !path.contains("#"), !path.contains("%"),
              authority.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }), path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
        else {
            throw Problem(words: "expected https://HOST[:PORT][/PATH] without user, query, fragment or escapes")
        }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw Problem(words: "unterminated IPv6 literal") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw Problem(words: "expected https://HOST[:PORT][/PATH]")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        var port = 443
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let value = Int(portText), (1...65535).contains(value)
            else {
                throw Problem(words: "invalid port '\(portText)'")
            }
            port = value
        }
        guard !host.isEmpty else { throw Problem(words: "no host in the URL") }
        var base = String(path)
        while base.hasSuffix("/") { base.removeLast() }
        if base.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }) {
            throw Problem(words: "`.` and `..` are not allowed in the path")
        }
        return HTTPSBaseURL(host: String(host).lowercased(), port: port, basePath: base)
    }
}
