#if canImport(Glibc)
import Glibc
#endif
import Gateway
import SystemCalls
import GatewayCore

/// What `airlock run` prints when its command has ended: every refusal of the run, by
/// what was refused, with how often and what would allow it.
///
/// Built from the gateway's `RefusalTally` (so refusals the audit log's budget did not
/// write one by one are counted too), never from the command's output. Empty when nothing
/// was refused, and then nothing is printed.
struct RunReport: Equatable {
    /// What would allow one refusal: a flag of `airlock run` and, where one exists, the
    /// policy file line that does the same.
    struct Fix: Equatable {
        var flag: String
        var policyLine: String?
    }

    /// One refused thing, ready to print.
    struct Item: Equatable {
        /// `host:port`, `host (DNS A)`, `github.com/o/r (git)`, or the reason alone.
        var what: String
        var count: Int
        var reason: String
        var fix: Fix?
        var entry: RefusalTally.Entry
    }

    let items: [Item]
    let untallied: Int

    init(_ summary: RefusalTally.Summary) {
        items = summary.entries.map(Self.item)
        untallied = summary.untallied
    }

    /// Whether nothing was refused.
    var isEmpty: Bool { items.isEmpty && untallied == 0 }

    /// Refusals counted in all.
    var total: Int { items.reduce(untallied) { $0 + $1.count } }

    // MARK: Text

    /// The lines for stderr, each prefixed `airlock: ` or indented; empty when nothing was refused.
    var lines: [String] {
        guard !isEmpty else { return [] }
        var lines = ["airlock: refused during the run (\(Self.times(total))):"]
        for item in items {
            lines.append("  \(item.what) (\(Self.times(item.count))): \(item.reason)")
            if let fix = item.fix {
                lines.append("    to allow: \(fix.flag)" + (fix.policyLine.map { " (policy line: \($0))" } ?? ""))
            }
        }
        if untallied > 0 {
            lines.append("  and \(untallied) more, of names and addresses past the first \(items.count) listed")
        }
        return lines
    }

    /// The report as GitHub Actions' step summary shows it (`GITHUB_STEP_SUMMARY`).
    var markdown: String {
        guard !isEmpty else { return "" }
        var text = "### airlock: refused during the run (\(Self.times(total)))\n\n"
        text += "| refused | count | reason | to allow |\n| --- | --- | --- | --- |\n"
        for item in items {
            var fix = ""
            if let flag = item.fix?.flag {
                fix = Self.code(flag) + (item.fix?.policyLine.map { " or the policy line " + Self.code($0) } ?? "")
            }
            text += "| \(Self.code(item.what)) | \(item.count) | \(Self.cell(item.reason)) | \(fix) |\n"
        }
        if untallied > 0 {
            text += "\nAnd \(untallied) more, of names and addresses past the first \(items.count) listed.\n"
        }
        return text + "\n"
    }

    /// Appends `markdown` to `path` (GitHub Actions' step summary); a file that cannot be
    /// written gets a one-line notice on stderr, and the run's status is unchanged.
    func appendMarkdown(to path: String) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            printNotice("airlock: cannot write the run report to GITHUB_STEP_SUMMARY \(path): \(String(cString: strerror(errno)))")
            return
        }
        defer { close(fd) }
        var bytes = Array(markdown.utf8)[...]
        while !bytes.isEmpty {
            let n = retryingInterrupted { bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
            if n <= 0 {
                printNotice("airlock: cannot write the run report to GITHUB_STEP_SUMMARY \(path): \(String(cString: strerror(errno)))")
                return
            }
            bytes = bytes.dropFirst(n)
        }
    }

    /// The `refused` array of `--json`'s `run_exit` line: one object per item.
    var jsonObjects: [String] {
        items.map { item in
            var json = JSONLineWriter()
            json.field("event", item.entry.event)
            json.field("host", item.entry.host)
            json.field("port", item.entry.port)
            json.field("repo", item.entry.repo)
            json.field("service", item.entry.service)
            json.field("qtypes", item.entry.qtypes.isEmpty ? nil : item.entry.qtypes)
            json.field("count", item.count)
            json.field("reason", item.reason)
            json.field("allow", item.fix?.flag)
            json.field("policy_line", item.fix?.policyLine)
            return json.finish()
        }
    }

    // MARK: Building

    private static func item(_ entry: RefusalTally.Entry) -> Item {
        let reason = entry.reason ?? "refused"
        switch entry.event {
        case AuditEvent.Kind.dnsDeny.rawValue:
            let host = entry.host ?? "?"
            let types = entry.qtypes.isEmpty ? "" : " " + entry.qtypes.joined(separator: " ")
            return Item(what: "\(host) (DNS\(types))", count: entry.count, reason: reason,
                        fix: allowFix(host: entry.host, port: nil, rule: nil, reason: reason), entry: entry)
        case AuditEvent.Kind.sshDeny.rawValue:
            return Item(what: "SSH to \(entry.host ?? "the gateway"):\(entry.port ?? 22)", count: entry.count,
                        reason: "SSH is not offered; use HTTPS (git: https:// URLs with --repo OWNER/REPO)", fix: nil, entry: entry)
        case AuditEvent.Kind.gitDeny.rawValue:
            let what = entry.repo.map { "\($0) (git)" } ?? "\(entry.host ?? "git") (git)"
            return Item(what: what, count: entry.count, reason: reason, fix: repoFix(entry), entry: entry)
        default:
            guard let host = entry.host else {
                return Item(what: "egress", count: entry.count, reason: reason, fix: nil, entry: entry)
            }
            let shown = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
            let what = entry.port.map { "\(shown):\($0)" } ?? shown
            return Item(what: what, count: entry.count, reason: reason,
                        fix: allowFix(host: host, port: entry.port, rule: entry.rule, reason: reason), entry: entry)
        }
    }

    /// The rule that would allow a refused name: when no rule allowed it, `--allow HOST`
    /// (`HOST:PORT` off 80 and 443); when its address was refused, the `allow-private`
    /// rule the reason names, for this name only. Nothing for deny rules, literals and
    /// failures no rule can fix.
    static func allowFix(host: String?, port: Int?, rule: String?, reason: String) -> Fix? {
        guard let host else { return nil }
        if rule == nil {
            if reason.hasSuffix(" is not on the allowlist") || reason.hasPrefix("port ") && reason.contains(" is not allowed for \(host) ") {
                let value = port.map { $0 == 80 || $0 == 443 ? host : "\(host):\($0)" } ?? host
                return Fix(flag: "--allow \(value)", policyLine: value)
            }
            return nil
        }
        // An allowed name whose address was refused: "… is loopback; add allow-private 127.0.0.0/8 to permit it".
        guard let marker = reason.firstRange(of: "add allow-private ") else { return nil }
        let cidr = reason[marker.upperBound...].prefix { $0 != " " && $0 != ";" }
        guard !cidr.isEmpty else { return nil }
        return Fix(flag: "--allow-private \(cidr)=\(host)", policyLine: "allow-private \(cidr) for \(host)")
    }

    /// The `--repo` a refused git request needed: the repository, `:rw` for a push.
    static func repoFix(_ entry: RefusalTally.Entry) -> Fix? {
        guard let repo = entry.repo else { return nil }
        let reason = entry.reason ?? ""
        let needsRepo = reason == "repository not in session scope" || reason.hasPrefix("this run has no --repo")
        let needsWrite = reason == "push with a read-only session"
        guard needsRepo || needsWrite else { return nil }
        let name = repo.hasPrefix("github.com/") ? String(repo.dropFirst("github.com/".count)) : repo
        let write = needsWrite || entry.service == "git-receive-pack"
        return Fix(flag: "--repo \(name)\(write ? ":rw" : "")", policyLine: nil)
    }

    private static func times(_ count: Int) -> String {
        count == 1 ? "1 time" : "\(count) times"
    }

    /// Inline code in a Markdown table cell.
    private static func code(_ text: String) -> String {
        "`" + text.replacingASCII("`", with: "'").replacingASCII("|", with: "\\|") + "`"
    }

    /// Plain text in a Markdown table cell.
    private static func cell(_ text: String) -> String {
        text.replacingASCII("|", with: "\\|").replacingASCII("\n", with: " ")
    }
}
