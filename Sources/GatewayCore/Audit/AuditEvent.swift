/// One decision the gateway made, as it appears in the audit log.
///
/// Events are built from explicit fields only, never from a request's description, so a
/// token, a credential or a body can never reach the log by accident. Absent fields are
/// left out of the JSON line.
package struct AuditEvent: Sendable, Equatable {
    /// What was decided. The raw value is the `event` field of the JSON line.
    package enum Kind: String, Sendable, Equatable {
        case egressAllow = "egress_allow"
        case egressDeny = "egress_deny"
        case dnsDeny = "dns_deny"
        case gitAllow = "git_allow"
        case gitDeny = "git_deny"
        case apiAllow = "api_allow"
        case apiDeny = "api_deny"
        case sshDeny = "ssh_deny"
        case secretSet = "secret_set"
        case sessionCreate = "session_create"
        case sessionRevoke = "session_revoke"
        case sessionExpire = "session_expire"
        /// A live session read back from the session file at the gateway's start (`ok`), or
        /// a session file that could not be read (`ok: false`, the reason; none came back).
        case sessionRestore = "session_restore"
        case policyReload = "policy_reload"
        /// A transparent listener on a policy port opened after a reload (`ok`), or that
        /// could not be (`ok: false` and the reason).
        case portListen = "port_listen"
        /// A transparent listener closed after a reload removed its port.
        case portClose = "port_close"
        /// A request on the gateway daemon's socket (`serve`, `stop`, `reload`, `list`), with
        /// the caller's `uid` and `pid`, `ok`, and the reason of a refusal.
        case daemonRequest = "daemon_request"
        /// A request on the gateway daemon's user socket (`create`, `control`, `exec`,
        /// `destroy`, `list`), with the caller's `uid` and `pid`, `ok`, and the reason of a
        /// refusal.
        case userRequest = "user_request"

        /// The refusals, which share the sandbox's `DenialBudget`, in the order their
        /// dropped-line counts are written.
        package static let denials: [Kind] = [.dnsDeny, .egressDeny, .gitDeny, .apiDeny, .sshDeny]

        /// Whether this kind is a refusal, limited by the sandbox's `DenialBudget`.
        package var isDenial: Bool { self == .dnsDeny || self == .egressDeny || self == .gitDeny || self == .apiDeny || self == .sshDeny }
    }

    /// The listener or path a decision was made on.
    package enum Via: String, Sendable, Equatable {
        /// The explicit proxy, `CONNECT`.
        case connect
        /// The explicit proxy, an absolute-form HTTP request.
        case proxy
        /// Transparent TLS on port 443, routed by SNI.
        case sni
        /// Transparent HTTP on port 80, routed by `Host`.
        case http
        case dns
        case git
        /// A credential route, `http://airlock.internal/api/NAME/…`.
        case api
        /// A transparent listener on a policy port other than 80 and 443, before it knew
        /// whether TLS or HTTP came (then `sni` or `http`).
        case port
        /// Port 22, answered with "SSH is not offered".
        case ssh
        case control
    }

    package var kind: Kind
    package var sandbox: String?
    package var via: Via?
    package var host: String?
    package var port: Int?
    /// The policy rule that allowed the decision, as written in the policy.
    package var rule: String?
    /// Why something was refused, one line.
    package var reason: String?
    package var bytesUp: UInt64?
    package var bytesDown: UInt64?
    package var ms: Int?
    /// DNS: the query type, such as `A` or `TXT`.
    package var qtype: String?
    /// Git: `host/owner/repo`, canonical (lowercase, no `.git`).
    package var repo: String?
    /// Git: `git-upload-pack` or `git-receive-pack`.
    package var service: String?
    /// Git: the HTTP status sent to the sandbox.
    package var status: Int?
    /// Sessions: the session id, a prefix of the token's hash; never the token.
    package var session: String?
    /// Sessions: the scope entries, such as `github.com/owner/repo:rw`.
    package var scope: [String]?
    /// Policy reload: whether the new policy was taken.
    package var ok: Bool?
    /// Policy reload: the file that was read.
    package var file: String?
    /// Credential routes: the route's name.
    package var route: String?
    /// Credential routes: the request method.
    package var method: String?
    /// Credential routes: the request path below the route, without the query.
    package var path: String?
    /// Secrets: the secret's name; never its value.
    package var secret: String?
    /// Daemon requests: the operation (`serve`, `stop`, `reload`, `list`).
    package var op: String?
    /// Daemon requests: the caller's uid and pid (`SO_PEERCRED`).
    package var uid: UInt32?
    package var pid: Int32?

    package init(
        _ kind: Kind, sandbox: String? = nil, via: Via? = nil, host: String? = nil, port: Int? = nil,
        rule: String? = nil, reason: String? = nil, bytesUp: UInt64? = nil, bytesDown: UInt64? = nil,
        ms: Int? = nil, qtype: String? = nil, repo: String? = nil, service: String? = nil,
        status: Int? = nil, session: String? = nil, scope: [String]? = nil, ok: Bool? = nil,
        file: String? = nil, route: String? = nil, method: String? = nil, path: String? = nil, secret: String? = nil,
        op: String? = nil, uid: UInt32? = nil, pid: Int32? = nil
    ) {
        self.op = op
        self.uid = uid
        self.pid = pid
        self.kind = kind
        self.sandbox = sandbox
        self.via = via
        self.host = host
        self.port = port
        self.rule = rule
        self.reason = reason
        self.bytesUp = bytesUp
        self.bytesDown = bytesDown
        self.ms = ms
        self.qtype = qtype
        self.repo = repo
        self.service = service
        self.status = status
        self.session = session
        self.scope = scope
        self.ok = ok
        self.file = file
        self.route = route
        self.method = method
        self.path = path
        self.secret = secret
    }

    /// The JSON line for this event, without the trailing newline. `ts` is UTC with
    /// milliseconds. Field order is fixed so lines diff and grep well.
    package func jsonLine(timestamp: AuditTimestamp = .now()) -> String {
        jsonLine(formattedTimestamp: timestamp.iso8601, newline: false)
    }

    /// `jsonLine(timestamp:)` with the timestamp already formatted (lines of one batch
    /// share it within a millisecond), and the newline when asked.
    package func jsonLine(formattedTimestamp: String, newline: Bool) -> String {
        var json = JSONLineWriter()
        json.field("ts", formattedTimestamp)
        json.field("event", kind.rawValue)
        json.field("sandbox", sandbox)
        json.field("via", via?.rawValue)
        json.field("host", host)
        json.field("port", port)
        json.field("qtype", qtype)
        json.field("repo", repo)
        json.field("service", service)
        json.field("route", route)
        json.field("method", method)
        json.field("path", path)
        json.field("secret", secret)
        json.field("op", op)
        json.field("uid", uid.map(Int.init))
        json.field("pid", pid.map(Int.init))
        json.field("status", status)
        json.field("session", session)
        json.field("scope", scope)
        json.field("rule", rule)
        json.field("reason", reason)
        json.field("ok", ok)
        json.field("file", file)
        json.field("bytes_up", bytesUp)
        json.field("bytes_down", bytesDown)
        json.field("ms", ms)
        return json.finish(newline: newline)
    }
}

/// A UTC wall-clock instant with millisecond precision.
package struct AuditTimestamp: Sendable {
    package var secondsSinceEpoch: Int
    package var milliseconds: Int

    package init(secondsSinceEpoch: Int, milliseconds: Int) {
        self.secondsSinceEpoch = secondsSinceEpoch
        self.milliseconds = milliseconds
    }

    package static func now() -> AuditTimestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return AuditTimestamp(secondsSinceEpoch: Int(ts.tv_sec), milliseconds: Int(ts.tv_nsec / 1_000_000))
    }

    /// `2026-11-29T08:15:00.123Z`
    package var iso8601: String {
        var t = time_t(secondsSinceEpoch)
        var parts = tm()
        gmtime_r(&t, &parts)
        // Written digit by digit: this runs once per audit line. Years past 9999 keep
        // all their digits.
        let year = Int(parts.tm_year) + 1900
        guard (0...9999).contains(year), (0...999).contains(milliseconds) else {
            func pad(_ v: Int, _ width: Int) -> String {
                let s = String(v)
                return String(repeating: "0", count: max(0, width - s.count)) + s
            }
            return "\(pad(year, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))T"
                + "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2)).\(pad(milliseconds, 3))Z"
        }
        return String(unsafeUninitializedCapacity: 24) { out in
            var i = 0
            func digits(_ value: Int, _ width: Int) {
                var v = value
                for k in stride(from: width - 1, through: 0, by: -1) {
                    out[i + k] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: v % 10)
                    v /= 10
                }
                i += width
            }
            func byte(_ c: Unicode.Scalar) {
                out[i] = UInt8(ascii: c)
                i += 1
            }
            digits(year, 4); byte("-"); digits(Int(parts.tm_mon) + 1, 2); byte("-"); digits(Int(parts.tm_mday), 2)
            byte("T"); digits(Int(parts.tm_hour), 2); byte(":"); digits(Int(parts.tm_min), 2); byte(":")
            digits(Int(parts.tm_sec), 2); byte("."); digits(milliseconds, 3); byte("Z")
            return i
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds one flat JSON object, field by field, escaping strings per RFC 8259.
package struct JSONLineWriter {
    /// UTF-8 so far; bytes append faster than small Strings.
    private var out: [UInt8] = []
    private var first = true

    package init() {
        out.reserveCapacity(256)
        out.append(UInt8(ascii: "{"))
    }

    private mutating func key(_ name: String) {
        if !first { out.append(UInt8(ascii: ",")) }
        first = false
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: name.utf8)
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    package mutating func field(_ name: String, _ value: String?) {
        guard let value else { return }
        key(name)
        Self.appendQuoted(value, to: &out)
    }

    package mutating func field(_ name: String, _ value: Int?) {
        guard let value else { return }
        key(name)
        out.append(contentsOf: String(value).utf8)
    }

    package mutating func field(_ name: String, _ value: UInt64?) {
        guard let value else { return }
        key(name)
        out.append(contentsOf: String(value).utf8)
    }

    package mutating func field(_ name: String, _ value: Bool?) {
        guard let value else { return }
        key(name)
        out.append(contentsOf: (value ? "true" : "false").utf8)
    }

    package mutating func field(_ name: String, _ value: [String]?) {
        guard let value else { return }
        key(name)
        out.append(UInt8(ascii: "["))
        for (index, element) in value.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            Self.appendQuoted(element, to: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    /// An array of objects, each a complete JSON object from another writer's `finish()`.
    package mutating func field(_ name: String, objects: [String]) {
        key(name)
        out.append(UInt8(ascii: "["))
        out.append(contentsOf: objects.joined(separator: ",").utf8)
        out.append(UInt8(ascii: "]"))
    }

    package mutating func finish() -> String {
        finish(newline: false)
    }

    /// The object, closed, and with a newline when asked (an audit line ready to write).
    package mutating func finish(newline: Bool) -> String {
        out.append(UInt8(ascii: "}"))
        if newline { out.append(UInt8(ascii: "\n")) }
        return String(decoding: out, as: UTF8.self)
    }

    /// A JSON string literal for `s`, with control characters escaped.
    package static func quote(_ s: String) -> String {
        var r: [UInt8] = []
        appendQuoted(s, to: &r)
        return String(decoding: r, as: UTF8.self)
    }

    /// Appends the JSON string literal for `s`: at once when it is printable ASCII with
    /// nothing to escape (host names, reasons, rules), else scalar by scalar.
    private static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        func isPlain(_ byte: UInt8) -> Bool {
            byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\")
        }
        let plain = s.utf8.withContiguousStorageIfAvailable { bytes in
            for byte in bytes where !isPlain(byte) { return false }
            return true
        } ?? s.utf8.allSatisfy(isPlain)
        out.append(UInt8(ascii: "\""))
        if plain {
            out.append(contentsOf: s.utf8)
        } else {
            var r = ""
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": r += "\\\""
                case "\\": r += "\\\\"
                case "\n": r += "\\n"
                case "\r": r += "\\r"
                case "\t": r += "\\t"
                case _ where scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x2028 || scalar.value == 0x2029:
                    let hex = String(scalar.value, radix: 16)
                    r += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default:
                    r.unicodeScalars.append(scalar)
                }
            }
            out.append(contentsOf: r.utf8)
        }
        out.append(UInt8(ascii: "\""))
    }
}
