/// A repository on a git host, in canonical form: `host/owner/repo`, lowercase, no `.git`.
///
/// Owners and repositories are ASCII `[A-Za-z0-9._-]`, never `.`, `..` or containing `..`;
/// hosts are ASCII `[A-Za-z0-9.-]` with an optional `:port`. Anything else (percent
/// escapes, backslashes, NUL, non-ASCII look-alikes, `*`) is refused, so two spellings
/// can never name different repositories and a name can never climb out of its owner.
package struct GitRepository: Sendable, Hashable, CustomStringConvertible {
    /// The git host, lowercase, as configured (`github.com`, `ghe.example.com:8443`).
    package let host: String
    /// The owner (user or organisation), lowercase.
    package let owner: String
    /// The repository name, lowercase, without a `.git` suffix.
    package let name: String

    /// Validates and canonicalises the three parts.
    /// - Throws: `GitRepository.Invalid` naming the part that is refused and why.
    package init(host: String, owner: String, name: String) throws {
        try Self.checkHost(host)
        try Self.checkSegment(owner, role: "owner")
        var repo = name
        if repo.utf8.count > 4, repo.lowercased().hasSuffix(".git") {
            repo = String(repo.dropLast(4))
        }
        try Self.checkSegment(repo, role: "repository")
        self.host = host.lowercased()
        self.owner = owner.lowercased()
        self.name = repo.lowercased()
    }

    /// `host/owner/repo`.
    package var description: String { "\(host)/\(owner)/\(name)" }

    /// Why a repository name was refused.
    package struct Invalid: Error, CustomStringConvertible, Equatable {
        /// One line naming the refused value.
        package let description: String
    }

    /// The longest owner or repository name accepted.
    package static let maxSegmentLength = 100

    /// Checks one owner or repository segment.
    /// - Throws: `Invalid` naming the segment.
    package static func checkSegment(_ segment: String, role: String) throws {
        let shown = printable(segment)
        guard !segment.isEmpty else { throw Invalid(description: "empty \(role) name") }
        guard segment.utf8.count <= maxSegmentLength else {
            throw Invalid(description: "\(role) name \(shown) is longer than \(maxSegmentLength) characters")
        }
        for byte in segment.utf8 where !isNameByte(byte) {
            if byte == UInt8(ascii: "*") {
                throw Invalid(description: "\(role) name \(shown) contains `*`; wildcards are not supported, name each repository")
            }
            throw Invalid(description: "\(role) name \(shown) may only contain ASCII letters, digits, `.`, `_` and `-`")
        }
        guard !segment.contains("..") else {
            throw Invalid(description: "\(role) name \(shown) contains `..`")
        }
        guard segment != "." else { throw Invalid(description: "\(role) name \(shown) is not a name") }
    }

    /// Checks a git host name (with an optional port).
    /// - Throws: `Invalid` naming the host.
    package static func checkHost(_ host: String) throws {
        let shown = printable(host)
        var name = Substring(host)
        if let colon = host.firstIndex(of: ":") {
            name = host[..<colon]
            let port = host[host.index(after: colon)...]
            guard !port.isEmpty, port.utf8.count <= 5, port.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                  let value = Int(port), value > 0, value <= 65535
            else { throw Invalid(description: "git host \(shown) has an invalid port") }
        }
        guard !name.isEmpty, name.utf8.count <= 253 else { throw Invalid(description: "git host \(shown) is not a host name") }
        for byte in name.utf8 {
            let ok = (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
            guard ok else { throw Invalid(description: "git host \(shown) may only contain ASCII letters, digits, `.` and `-`") }
        }
        guard !name.hasPrefix("."), !name.hasSuffix("."), !name.contains("..") else {
            throw Invalid(description: "git host \(shown) is not a host name")
        }
    }

    static func isNameByte(_ byte: UInt8) -> Bool {
        (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }

    /// A value quoted for an error line: control and non-ASCII characters escaped.
    package static func printable(_ value: String) -> String {
        var out = "\""
        for scalar in value.prefix(120).unicodeScalars {
            if scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "\\" {
                out.unicodeScalars.append(scalar)
            } else {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            }
        }
        return out + (value.count > 120 ? "…\"" : "\"")
    }
}
