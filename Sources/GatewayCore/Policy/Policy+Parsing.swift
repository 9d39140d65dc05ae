#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Policy {
    /// The largest policy file read, so a wrong path (a device, a huge log) fails fast.
    package static let maximumFileSize = 1 << 20

    /// Parses policy text, one rule a line.
    /// - Parameters:
    ///   - text: the file's contents.
    ///   - source: the file path, used in errors and decisions.
    /// - Throws: `PolicyError` naming the file, the line and the problem.
    package static func parse(_ text: String, source: String) throws -> Policy {
        var policy = Policy(source: source)
        try policy.parseLines(text, source: source)
        return policy
    }

    /// Adds the rules of policy text to this policy, as if it followed the lines already read.
    /// - Parameters:
    ///   - source: the file path, used in errors.
    ///   - originPrefix: put before `line N` in each rule's origin (the file, when a policy
    ///     is read from several).
    /// - Throws: `PolicyError` naming the file, the line and the problem.
    package mutating func parseLines(_ text: String, source: String, originPrefix: String = "") throws {
        var number = 0
        var text = Substring(text)
        if text.hasPrefix("\u{FEFF}") { text = text.dropFirst() }  // a byte-order mark some editors write
        // "\r\n" is one Character in Swift; split on it as well as on "\n".
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            number += 1
            let origin = "\(originPrefix)line \(number)"
            do {
                try addLine(line, origin: origin)
            } catch let error as RuleProblem {
                throw PolicyError(file: source, line: number, message: error.message)
            }
        }
    }

    /// Reads and parses the policy file at `path`.
    /// - Throws: `PolicyError` when the file cannot be read or does not parse.
    package static func load(path: String) throws -> Policy {
        try parse(try readText(path: path), source: path)
    }

    /// The text of the policy file at `path`: a regular file of at most
    /// `maximumFileSize` bytes of UTF-8.
    /// - Throws: `PolicyError` naming the file and why it cannot be used.
    package static func readText(path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw PolicyError(file: path, line: 0, message: "cannot read: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw PolicyError(file: path, line: 0, message: "cannot read: \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw PolicyError(file: path, line: 0, message: "not a regular file")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw PolicyError(file: path, line: 0, message: "cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            guard bytes.count <= maximumFileSize else {
                throw PolicyError(file: path, line: 0, message: "larger than \(maximumFileSize) bytes; is this a policy file?")
            }
        }
        guard let text = String(validatingUTF8: bytes.map { CChar(bitPattern: $0) } + [0]),
              !bytes.contains(0) else {
            throw PolicyError(file: path, line: 0, message: "not UTF-8 text")
        }
        return text
    }

    /// Rules from command-line flags, validated like file lines.
    /// - Parameters:
    ///   - hosts: `--allow` values, each one rule (`pypi.org`, `@npm`, `!x.example`, `host:8443`).
    ///   - allowPrivate: `--allow-private` values: `CIDR` (every name) or `CIDR=HOST`.
    ///   - resolve: `--resolve HOST=ADDRESS[,ADDRESS]` values.
    ///   - source: how the policy names itself, such as `--allow`.
    /// - Throws: `PolicyError` whose file is the flag and whose message names the value.
    ///   - routes: `--route` values, each a route line without the leading `route`.
    package static func rules(allow hosts: [String], allowPrivate: [String], resolve: [String], routes: [String] = [], source: String) throws -> Policy {
        var policy = Policy(source: source)
        func add(_ value: String, flag: String, line: String) throws {
            do {
                try policy.addLine(Substring(line), origin: flag, allowComment: false)
            } catch let error as RuleProblem {
                throw PolicyError(file: flag, line: 0, message: error.message)
            }
        }
        for host in hosts {
            if host.trimmingSpaces.split(separator: " ").count > 1 || host.trimmingSpaces.isEmpty {
                throw PolicyError(file: "--allow", line: 0, message: "'\(host)' is not one host rule")
            }
            try add(host, flag: "--allow", line: host)
        }
        for (flag, value, line) in flagLines(allow: [], allowPrivate: allowPrivate, resolve: resolve, routes: routes) {
            try add(value, flag: flag, line: line)
        }
        return policy
    }

    /// The policy-file line each of these flags' values stands for, in order, with its
    /// flag: what `rules` parses, and what a policy handed on as text carries.
    package static func flagLines(allow hosts: [String], allowPrivate: [String], resolve: [String], routes: [String])
        -> [(flag: String, value: String, line: String)]
    {
        var lines = hosts.map { (flag: "--allow", value: $0, line: $0) }
        for value in allowPrivate {
            // `CIDR=HOST` is the file's `allow-private CIDR for HOST`.
            let parts = value.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let line = parts.count == 2 ? "allow-private \(parts[0]) for \(parts[1])" : "allow-private " + value
            lines.append((flag: "--allow-private", value: value, line: line))
        }
        lines += resolve.map { (flag: "--resolve", value: $0, line: "resolve " + $0) }
        lines += routes.map { (flag: "--route", value: $0, line: "route " + $0) }
        return lines
    }

    /// `text` with control characters, line and paragraph separators and bidirectional
    /// overrides written as escapes, so an error that quotes a line stays one line and
    /// shows what is really there.
    static func escaped<S: StringProtocol>(_ text: S) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            let v = scalar.value
            let hidden = v < 0x20 && scalar != "\t" || (0x7F...0x9F).contains(v) || v == 0x2028 || v == 0x2029
                || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
            if !hidden {
                out.unicodeScalars.append(scalar)
            } else if v < 0x100 {
                out += "\\x" + (v < 0x10 ? "0" : "") + String(v, radix: 16)
            } else {
                out += "\\u{" + String(v, radix: 16) + "}"
            }
        }
        return out
    }

    /// A problem with one rule, before the file and line are attached.
    struct RuleProblem: Error {
        var message: String
    }

    /// Parses one line and appends its rules.
    /// - Throws: `RuleProblem`.
    mutating func addLine(_ raw: Substring, origin: String, allowComment: Bool = true, preset: String? = nil) throws {
        var line = raw
        if allowComment, let hash = line.firstIndex(of: "#") { line = line[..<hash] }
        if line.hasSuffix("\r") { line = line.dropLast() }
        let text = line.trimmingSpaces
        if text.isEmpty { return }
        if text.unicodeScalars.contains(where: { !$0.isASCII }) {
            throw RuleProblem(message: "'\(Self.escaped(text))' contains non-ASCII characters; write international names as punycode (xn--…)")
        }
        if let control = text.unicodeScalars.first(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F }) {
            throw RuleProblem(message: "'\(Self.escaped(text))' contains the control character \\x\(String(control.value, radix: 16))")
        }
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        let shown = preset.map { "@\($0): \(text)" } ?? text
        switch words.first {
        case "allow-private" where words.count == 4 && words[2] == "for":
            let range: CIDR
            do {
                range = try CIDR.parse(String(words[1]))
            } catch {
                throw RuleProblem(message: "allow-private: \(error)")
            }
            let names = try Policy.hostRule(words[3], text: shown, origin: origin)
            guard !names.isDeny, names.port == nil else {
                throw RuleProblem(message: "'\(text)': expected 'allow-private ADDRESS/LENGTH for HOST' (a name or *.suffix, no port, no '!')")
            }
            append(Rule(kind: .allowPrivateFor(range, names: names.kind), text: shown, origin: origin))
        case "cidr", "allow-private":
            guard words.count == 2 else {
                throw RuleProblem(message: words[0] == "cidr" ? "'\(text)': expected 'cidr ADDRESS/LENGTH'"
                                  : "'\(text)': expected 'allow-private ADDRESS/LENGTH' or 'allow-private ADDRESS/LENGTH for HOST'")
            }
            let range: CIDR
            do {
                range = try CIDR.parse(String(words[1]))
            } catch {
                throw RuleProblem(message: "\(words[0]): \(error)")
            }
            let kind: Rule.Kind = words[0] == "cidr" ? .cidr(range) : .allowPrivate(range)
            append(Rule(kind: kind, text: shown, origin: origin))
        case "route":
            try addRoute(Array(words.dropFirst()), text: shown, origin: origin)
        case "resolve":
            guard words.count == 2 else {
                throw RuleProblem(message: "'\(text)': expected 'resolve HOST=ADDRESS[,ADDRESS]'")
            }
            append(try Policy.resolveRule(words[1], text: shown, origin: origin))
        default:
            guard words.count == 1 else {
                throw RuleProblem(message: "'\(text)' is not a rule (one host, @preset, cidr, allow-private, resolve or route a line)")
            }
            let word = words[0]
            if word.hasPrefix("@") {
                guard preset == nil else {
                    throw RuleProblem(message: "presets cannot include presets ('\(word)')")
                }
                let name = String(word.dropFirst()).lowercased()
                guard let lines = Presets.all[name] else {
                    let known = Presets.all.keys.sorted().map { "@" + $0 }.joined(separator: ", ")
                    throw RuleProblem(message: "unknown preset \(word) (known: \(known))")
                }
                for presetLine in lines {
                    try addLine(Substring(presetLine), origin: origin, allowComment: false, preset: name)
                }
                notePreset(name)
                return
            }
            append(try Policy.hostRule(word, text: shown, origin: origin))
        }
    }

    /// `host`, `*.suffix`, `host:port`, `!host`, `!*.suffix`.
    private static func hostRule(_ word: Substring, text: String, origin: String) throws -> Rule {
        var pattern = word
        let isDeny = pattern.hasPrefix("!")
        if isDeny { pattern = pattern.dropFirst() }
        if pattern.hasPrefix("[") || pattern.filter({ $0 == ":" }).count > 1 {
            throw RuleProblem(message: "IP literal in host rule '\(word)'; use 'cidr ADDRESS/LENGTH' to allow literals")
        }
        var port: Int?
        if let colon = pattern.lastIndex(of: ":") {
            let digits = pattern[pattern.index(after: colon)...]
            guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let value = Int(digits), (1...65535).contains(value) else {
                throw RuleProblem(message: "'\(word)' has an invalid port (1–65535)")
            }
            guard !isDeny else {
                throw RuleProblem(message: "'\(word)': deny rules apply to every port; write '!\(pattern[..<colon])'")
            }
            port = value
            pattern = pattern[..<colon]
        }
        var wildcard = false
        if pattern.hasPrefix("*.") {
            wildcard = true
            pattern = pattern.dropFirst(2)
        }
        if pattern.contains("*") {
            throw RuleProblem(message: "'\(word)': '*' is allowed only as a whole first label ('*.example.com')")
        }
        if HostLiteral.parse(String(pattern)) != nil {
            throw RuleProblem(message: "IP literal in host rule '\(word)'; use 'cidr ADDRESS/LENGTH' to allow literals")
        }
        let host: String
        do {
            host = try HostName.normalise(String(pattern))
        } catch let error as HostName.InvalidName {
            throw RuleProblem(message: "'\(word)': \(error.problem)")
        }
        if pattern.hasSuffix(".") && pattern.dropLast().hasSuffix(".") {
            throw RuleProblem(message: "'\(word)': empty label")
        }
        if host == HostName.gateway || host.hasSuffix("." + HostName.gateway) || (wildcard && HostName.gateway.hasSuffix("." + host)) || (wildcard && host == "internal") {
            if !isDeny {
                throw RuleProblem(message: "'\(word)' would cover \(HostName.gateway), the gateway itself, which is never egress")
            }
        }
        if wildcard && !host.contains(".") && !isDeny {
            throw RuleProblem(message: "'\(word)' would allow a whole top-level domain; name a registrable domain")
        }
        return Rule(kind: wildcard ? .subdomains(of: host) : .host(host), port: port, isDeny: isDeny, text: text, origin: origin)
    }

    /// `HOST=ADDRESS[,ADDRESS]`, addresses as strict literals.
    private static func resolveRule(_ value: Substring, text: String, origin: String) throws -> Rule {
        let parts = value.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw RuleProblem(message: "resolve '\(value)': expected HOST=ADDRESS[,ADDRESS]")
        }
        let host: String
        do {
            host = try HostName.normalise(String(parts[0]))
        } catch let error as HostName.InvalidName {
            throw RuleProblem(message: "resolve '\(value)': \(error.problem)")
        }
        if HostLiteral.parse(String(parts[0])) != nil {
            throw RuleProblem(message: "resolve '\(value)': the name is an IP literal")
        }
        if host == HostName.gateway {
            throw RuleProblem(message: "resolve '\(value)': \(HostName.gateway) is the gateway itself")
        }
        var addresses: [IPAddress] = []
        for piece in parts[1].split(separator: ",", omittingEmptySubsequences: false) {
            guard let address = IPAddress(String(piece)) else {
                throw RuleProblem(message: "resolve '\(value)': '\(piece)' is not an address (write 127.0.0.1 or ::1)")
            }
            if !addresses.contains(address) { addresses.append(address) }
        }
        guard addresses.count <= 16 else {
            throw RuleProblem(message: "resolve '\(value)': more than 16 addresses")
        }
        return Rule(kind: .resolve(host: host, addresses: addresses), text: text, origin: origin)
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}
