#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import FoundationEssentials
import Gateway
import Netns

/// `airlock doctor [--json]`: what this machine supports, with a verdict per mode.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        _superCommandName: "airlock",
        abstract: "Report what this machine supports.",
        discussion: """
            Checks whether airlock runs as root and holds each capability root mode needs (one \
            line each), whether this is a chroot, whether an unprivileged user namespace can \
            be created (tried in a child) and what a rootless sandbox builder would hold in \
            it, user.max_user_namespaces, the AppArmor restriction of Ubuntu 24.04 and later \
            (fixed by the profile the package installs, /etc/apparmor.d/airlock), libmnl and \
            libcap, the kernel, veth, seccomp and /run/netns. Every check that fails says how \
            to fix it. Then gives a verdict for each mode (run rootless, run as root, \
            persistent; and, where a gateway daemon offers sandboxes to users on \
            /run/airlock/users.sock, run through it). --json prints the same as {"checks": [{"name", "ok", "detail", \
            "fix"}], "verdicts": [{"mode", "ready", "missing"}]} (docs/configuration.md). \
            Changes nothing on the machine. Exits 1 when no mode can run.
            """)

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(help: .hidden)
    var childReport = false

    func run() throws {
        if childReport {
            // Started by the rootless launcher check below: report uid and capabilities on fd 3.
            Doctor.writeChildReport(to: 3)
            return
        }
        let facts = Doctor.examine(launchSelf: Self.selfPath().map { [$0, "doctor", "--child-report"] }, userSocket: UserRequest.socketPath)
        let report = Doctor.report(facts)
        if json {
            print(try Self.json(report))
        } else {
            print(Self.render(report), terminator: "")
        }
        if !report.verdicts.contains(where: \.ready) { throw ExitCode(ExitCodes.failure) }
    }

    /// The report as JSON: sorted keys, every key always present.
    static func json(_ report: Doctor.Report) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(report), as: UTF8.self)
    }

    /// The report as text: one line per check, its fix indented below, then the verdicts.
    static func render(_ report: Doctor.Report) -> String {
        var text = ""
        for check in report.checks {
            text += "\(check.ok ? "ok  " : "no  ") \(check.name): \(check.detail)\n"
            if let fix = check.fix { text += "      fix: \(fix)\n" }
        }
        text += "\n"
        for verdict in report.verdicts {
            text += "\(verdict.mode): \(verdict.ready ? "ready" : "not ready")\n"
            for reason in verdict.missing { text += "  - \(reason)\n" }
        }
        return text
    }

    static func selfPath() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
