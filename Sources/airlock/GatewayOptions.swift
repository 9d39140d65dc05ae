#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Gateway
import Netns
import NIOCore
import GatewayCore

/// Flags shared by `airlock gateway serve` and `airlock run`: the policy, the audit log,
/// the limits, the git upstreams and credential routes.
struct GatewayOptions: PlainOptions {
    /// Where the policy comes from when `--policy` is not given, one sentence for every
    /// command's help (docs/configuration.md and docs/policy.md say the same).
    static let policyLocationsHelp = "Without --policy: as root /etc/airlock/policy and /etc/airlock/policy.d/*.conf, otherwise $XDG_CONFIG_HOME/airlock/policy (default ~/.config/airlock/policy) and its policy.d/*.conf; drop-ins are read after the main file in bytewise name order, other names are ignored, missing files are fine. With --policy FILE, only FILE."

    @Option(name: .long, help: ArgumentHelp("Policy file: allowed hosts, presets, allow-private, resolve and route rules. \(policyLocationsHelp) `gateway serve` reloads the policy on SIGHUP and when a file changes, appears or disappears; `run` reads it once.", valueName: "file"))
    var policy: String?

    @Option(name: .long, help: ArgumentHelp("Allow a host (`host`, `*.suffix`, `host:port`, `@preset`); repeatable.", valueName: "host"))
    var allow: [String] = []

    @Option(name: .long, help: ArgumentHelp("Allow resolved addresses in a private or loopback range, for HOST only or for every name; repeatable.", valueName: "cidr[=host]"))
    var allowPrivate: [String] = []

    @Option(name: .long, help: ArgumentHelp("Pin a name to addresses, like curl --resolve; repeatable.", valueName: "host=addr"))
    var resolve: [String] = []

    @Option(name: .long, help: ArgumentHelp("A credential route: `NAME https://HOST[/BASE] header HEADER=secret:SECRET` (one argument, quoted); http://airlock.internal/api/NAME/… goes there with the header added; repeatable. See docs/credential-routes.md.", valueName: "route"))
    var route: [String] = []

    @Option(name: .long, help: ArgumentHelp("Append audit lines (JSON) to this file instead of stderr.", valueName: "file"))
    var auditLog: String?

    @Option(name: .long, help: ArgumentHelp("Learn mode: enforce nothing (every name, every port; still no IP literals and no private addresses) and append the audit lines, which record what was used, to this file; `airlock policy suggest FILE` turns them into a policy.", valueName: "file"))
    var learn: String?

    @Option(name: .long, help: ArgumentHelp("Largest request head accepted, in bytes.", valueName: "bytes"))
    var maxHeaderBytes: Int = Defaults.maxHeaderBytes

    @Option(name: .long, help: ArgumentHelp("Open connections allowed per sandbox.", valueName: "count"))
    var maxConnections: Int = Defaults.maxConnections

    @Option(name: .long, help: ArgumentHelp("Bytes the sandbox's tunnels may hold for readers that stopped reading; past it the tunnel whose reader took nothing for longest is closed.", valueName: "bytes"))
    var maxUnreadBytes: Int = Defaults.maxUnreadBytes

    @Option(name: .long, help: ArgumentHelp("Seconds to connect to an upstream.", valueName: "seconds"))
    var connectTimeout: Int = Defaults.connectTimeout

    @Option(name: .long, help: ArgumentHelp("Seconds for a TLS handshake (upstream, and the sandbox's ClientHello on 443).", valueName: "seconds"))
    var handshakeTimeout: Int = Defaults.handshakeTimeout

    @Option(name: .long, help: ArgumentHelp("Seconds a client has to send a complete request head.", valueName: "seconds"))
    var headerTimeout: Int = Defaults.headerTimeout

    @Option(name: .long, help: ArgumentHelp("Seconds without a byte in either direction before a connection is closed.", valueName: "seconds"))
    var idleTimeout: Int = Defaults.idleTimeout

    @Option(name: .long, help: ArgumentHelp("Seconds a kept-alive HTTP connection may wait for its next request before it is closed.", valueName: "seconds"))
    var keepaliveTimeout: Int = Defaults.keepaliveTimeout

    @Option(name: .long, help: ArgumentHelp("On shutdown, seconds open connections may finish before they are closed (0 closes them at once). Default: 30 for gateway serve; 2 for run, whose sandbox has no process left once the command exited.", valueName: "seconds"))
    var drainTimeout: Int?

    /// The drain when `--drain-timeout` is not given: `gateway serve` stops while its
    /// sandbox may still be running.
    static let serveDrainTimeout = 30
    /// The drain of `run`: when it stops the gateway, the command and everything it started
    /// are gone, so an open connection can only be an upstream that keeps it open; two
    /// seconds let the last forwarded bytes reach the upstream.
    static let runDrainTimeout = 2

    @Option(name: .long, help: ArgumentHelp("Git upstream for a host (default https://HOST); repeatable.", valueName: "host=url"))
    var gitUpstream: [String] = []

    @Option(name: .long, help: ArgumentHelp("Extra CA certificates (PEM) trusted for git upstreams and route upstreams.", valueName: "file"))
    var upstreamCA: String?

    /// The defaults of the options above that have one (named once, for the declarations
    /// and `plainOptions`).
    enum Defaults {
        static let maxHeaderBytes = GatewayLimits().maxHeaderBytes
        static let maxConnections = GatewayLimits().maxConnections
        static let maxUnreadBytes = GatewayLimits().maxUnreadBytes
        static let connectTimeout = 10
        static let handshakeTimeout = 10
        static let headerTimeout = 10
        static let idleTimeout = 300
        static let keepaliveTimeout = 15
    }

    /// The options above, for a plain line of `run` (PlainLine).
    static let plainOptions: [PlainOption<Self>] = [
        .value("policy") { $0.policy = $1 }, .values("allow") { $0.allow = $1 },
        .values("allow-private") { $0.allowPrivate = $1 }, .values("resolve") { $0.resolve = $1 },
        .values("route") { $0.route = $1 }, .value("audit-log") { $0.auditLog = $1 }, .value("learn") { $0.learn = $1 },
        .value("max-header-bytes", default: Defaults.maxHeaderBytes) { $0.maxHeaderBytes = $1 },
        .value("max-connections", default: Defaults.maxConnections) { $0.maxConnections = $1 },
        .value("max-unread-bytes", default: Defaults.maxUnreadBytes) { $0.maxUnreadBytes = $1 },
        .value("connect-timeout", default: Defaults.connectTimeout) { $0.connectTimeout = $1 },
        .value("handshake-timeout", default: Defaults.handshakeTimeout) { $0.handshakeTimeout = $1 },
        .value("header-timeout", default: Defaults.headerTimeout) { $0.headerTimeout = $1 },
        .value("idle-timeout", default: Defaults.idleTimeout) { $0.idleTimeout = $1 },
        .value("keepalive-timeout", default: Defaults.keepaliveTimeout) { $0.keepaliveTimeout = $1 },
        .value("drain-timeout") { $0.drainTimeout = $1 }, .values("git-upstream") { $0.gitUpstream = $1 },
        .value("upstream-ca") { $0.upstreamCA = $1 },
    ]

    func validate() throws {
        if let learn, auditLog != nil {
            throw ValidationError("--learn \(learn) is the audit log: give --learn or --audit-log, not both")
        }
        if maxHeaderBytes < 1024 || maxHeaderBytes > 1 << 20 {
            throw ValidationError("--max-header-bytes \(maxHeaderBytes) is out of range (1024…1048576)")
        }
        if maxConnections < 1 || maxConnections > 1_000_000 {
            throw ValidationError("--max-connections \(maxConnections) is out of range (1…1000000)")
        }
        if maxUnreadBytes < 1 << 20 || maxUnreadBytes > 1 << 40 {
            throw ValidationError("--max-unread-bytes \(maxUnreadBytes) is out of range (1048576…1099511627776)")
        }
        for (flag, value) in [("--connect-timeout", connectTimeout), ("--handshake-timeout", handshakeTimeout),
                              ("--header-timeout", headerTimeout), ("--idle-timeout", idleTimeout),
                              ("--keepalive-timeout", keepaliveTimeout)] {
            if value < 1 || value > 86_400 {
                throw ValidationError("\(flag) \(value) is out of range (1…86400 seconds)")
            }
        }
        if let drainTimeout, drainTimeout < 0 || drainTimeout > 3600 {
            throw ValidationError("--drain-timeout \(drainTimeout) is out of range (0…3600 seconds)")
        }
        _ = try gitUpstreams()
    }

    /// The limits these flags describe.
    var limits: GatewayLimits {
        var limits = GatewayLimits()
        limits.maxHeaderBytes = maxHeaderBytes
        limits.maxConnections = maxConnections
        limits.maxUnreadBytes = maxUnreadBytes
        limits.connectTimeout = .seconds(Int64(connectTimeout))
        limits.tlsHandshakeTimeout = .seconds(Int64(handshakeTimeout))
        limits.clientHelloTimeout = .seconds(Int64(min(handshakeTimeout, 5)))
        limits.headerTimeout = .seconds(Int64(headerTimeout))
        limits.idleTimeout = .seconds(Int64(idleTimeout))
        limits.keepAliveTimeout = .seconds(Int64(keepaliveTimeout))
        limits.drainTimeout = .seconds(Int64(drainTimeout ?? Self.serveDrainTimeout))
        return limits
    }

    /// `--git-upstream` as a map from git host to upstream URL.
    /// - Throws: `ValidationError` naming a malformed value.
    func gitUpstreams() throws -> [String: String] {
        var result: [String: String] = [:]
        for value in gitUpstream {
            guard let equals = value.firstIndex(of: "="), equals != value.startIndex else {
                throw ValidationError("--git-upstream \(value): expected HOST=URL")
            }
            let host = String(value[..<equals]).lowercased()
            let url = String(value[value.index(after: equals)...])
            guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
                throw ValidationError("--git-upstream \(value): the URL must start with https://")
            }
            result[host] = url
        }
        return result
    }

    /// Where audit lines go instead of stderr: `--audit-log`, or `--learn`'s file.
    var auditLogPath: String? { learn ?? auditLog }

    /// The notice printed when a learn-mode gateway starts.
    var learnStartNotice: String? {
        learn.map { "airlock: learn mode: NOTHING IS ENFORCED: every name is reachable on every port (no IP literals, no private addresses); what is used is recorded in \($0)" }
    }

    /// The notice printed when a learn-mode gateway ends.
    var learnEndNotice: String? {
        learn.map { "airlock: learn mode: nothing was enforced; what was used is in \($0); turn it into a policy with `airlock policy suggest \($0)`" }
    }

    /// The policy files `run` and `gateway serve` read: `--policy FILE` alone, else the
    /// default locations (`PolicyFiles.defaults`: `/etc/airlock` as root, the user's
    /// `$XDG_CONFIG_HOME/airlock` otherwise). Nil for a rootless caller without a home.
    func policyFiles(root: Bool, environment: [String: String] = ProcessInfoEnvironment.current) -> PolicyFiles? {
        if let policy { return PolicyFiles(file: policy) }
        return PolicyFiles.defaults(root: root, environment: environment)
    }

    /// For a policy root reads: a path of `files` (a file read, the drop-in directory, the
    /// main file) that an account other than root could change, as a one-line refusal.
    /// `reloads` says why it matters: the gateway re-reads the files.
    static func refusalOfNonRootPaths(_ files: PolicyFiles, reloads: Bool) throws {
        let listing = try files.listing()
        for path in files.guardedPaths(listing: listing) {
            guard let weak = PathSafety.changeableByNonRoot(path) else { continue }
            let why = reloads ? ", and the gateway reloads the policy from it" : ""
            throw CLIError("policy \(path): \(weak) can be changed by an account other than root\(why); make the file and its directories root-owned and not group- or world-writable")
        }
    }

    /// The check a root gateway's reloads apply to each path of its policy files.
    static let rootOnlyPaths: @Sendable (String) -> String? = { path in
        PathSafety.changeableByNonRoot(path).map {
            "\($0) can be changed by an account other than root; make the file and its directories root-owned and not group- or world-writable"
        }
    }

    /// The rules from `--allow`, `--allow-private`, `--resolve` and `--route`.
    /// - Throws: `PolicyError` naming the flag and the value.
    func flagPolicy() throws -> Policy {
        var policy = try Policy.rules(allow: allow, allowPrivate: allowPrivate, resolve: resolve, routes: route, source: "command line")
        policy.learning = learn != nil
        return policy
    }

    /// The audit log: `--audit-log FILE` (appended, 0600) or stderr.
    /// - Throws: `AuditLogError.cannotOpen` naming the file.
    func openAuditLog(sandbox: String, tally: RefusalTally? = nil, metrics: GatewayMetrics? = nil) throws -> AuditLog {
        if let auditLog = auditLogPath {
            return AuditLog(sink: try FileDescriptorAuditSink(appendingTo: auditLog), sandbox: sandbox, tally: tally, metrics: metrics)
        }
        return AuditLog(sink: FileDescriptorAuditSink.standardError, sandbox: sandbox, tally: tally, metrics: metrics)
    }
}
