/// One change to the sessions of a gateway, as one line of the session file.
///
/// Every line starts with the format version and ends with a newline, so a line cut short
/// by a crash is recognisable (it has no newline) and a file from another format is
/// refused as a whole:
///
///     airlock-sessions/1 create DIGEST SANDBOX CREATED EXPIRES USED IDLE SCOPE PROTECTED ALLOWED REWRITABLE DEFAULT MAXPUSH RATE UPSTREAM
///     airlock-sessions/1 use ID USED
///     airlock-sessions/1 end DIGEST revoked|expired
///
/// Times are milliseconds (since the epoch, or of idle timeout), `DIGEST` the token's SHA-256
/// in hex, `ID` the session id. Text fields are percent-encoded (every byte but `A–Z a–z 0–9 _ / *`);
/// lists join their encoded items with `,`, an empty list is `.` and an absent one
/// (`ALLOWED` without `--push-refs`) is `-`.
package enum SessionJournalRecord: Sendable, Equatable {
    /// A session was created (or is live when the file was last rewritten).
    case create(StoredSession)
    /// The session `id` was used at `at` (seconds since the epoch).
    case use(id: String, at: Double)
    /// The session with this digest ended: revoked, or expired.
    case end(digest: TokenDigest, revoked: Bool)

    /// The version every line starts with.
    package static let version = "airlock-sessions/1"

    /// Why a line was not understood; says which field, never its value.
    package struct Malformed: Error, Equatable, CustomStringConvertible {
        package var description: String
    }

    /// The line, newline included.
    package var line: [UInt8] {
        var fields = [Self.version]
        switch self {
        case let .create(s):
            fields += [
                "create", s.digest.hex, Self.encode(s.sandbox), Self.milliseconds(s.createdAt), Self.milliseconds(s.expiresAt),
                Self.milliseconds(s.lastUsedAt), Self.milliseconds(s.idleTimeout), Self.encodeList(s.scope.descriptions),
                Self.encodeList(s.pushPolicy.protected.map(\.description)), s.pushPolicy.allowed.map { Self.encodeList($0.map(\.description)) } ?? "-",
                Self.encodeList(s.pushPolicy.rewritable.map(\.description)), s.pushPolicy.protectsDefaultBranch ? "1" : "0",
                String(s.pushPolicy.maxPushBytes), String(s.pushPolicy.pushesPerMinute),
                s.upstreamToken.withRevealed { Self.encode($0) },
            ]
        case let .use(id, at):
            fields += ["use", id, Self.milliseconds(at)]
        case let .end(digest, revoked):
            fields += ["end", digest.hex, revoked ? "revoked" : "expired"]
        }
        return Array(fields.joined(separator: " ").utf8) + [UInt8(ascii: "\n")]
    }

    /// Reads one line (without its newline).
    /// - Throws: `Malformed` naming what is wrong.
    package init(parsing line: ArraySlice<UInt8>) throws {
        let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard fields.first == Self.version else { throw Malformed(description: "not an \(Self.version) record") }
        guard fields.count >= 2 else { throw Malformed(description: "no record kind") }
        switch (fields[1], fields.count) {
        case ("create", 16):
            let digest = try Self.digest(fields[2])
            let sandbox = try Self.decode(fields[3], "sandbox")
            guard !sandbox.isEmpty, sandbox.utf8.count <= 64 else { throw Malformed(description: "bad sandbox name") }
            let created = try Self.seconds(fields[4], "creation time")
            let expires = try Self.seconds(fields[5], "expiry")
            let used = try Self.seconds(fields[6], "last use")
            let idle = try Self.seconds(fields[7], "idle timeout")
            guard idle >= 1 else { throw Malformed(description: "bad idle timeout") }
            let scope: [ScopeEntry]
            var policy: PushPolicy
            do {
                scope = try Self.decodeList(fields[8], "scope").map { try ScopeEntry(parsing: $0) }
                policy = PushPolicy(protected: try Self.decodeList(fields[9], "protected refs").map { try RefPattern($0) }, allowed: nil)
                if fields[10] != "-" { policy.allowed = try Self.decodeList(fields[10], "allowed refs").map { try RefPattern($0) } }
                policy.rewritable = try Self.decodeList(fields[11], "rewritable refs").map { try RefPattern($0) }
            } catch let error as Malformed {
                throw error
            } catch {
                throw Malformed(description: "bad scope or ref pattern")
            }
            switch fields[12] {
            case "1": policy.protectsDefaultBranch = true
            case "0": policy.protectsDefaultBranch = false
            default: throw Malformed(description: "bad default-branch flag")
            }
            guard let maxPush = Int64(fields[13]), maxPush >= 1 else { throw Malformed(description: "bad push size limit") }
            guard let rate = Int(fields[14]), (1...PushPolicy.maximumPushesPerMinute).contains(rate) else {
                throw Malformed(description: "bad push rate")
            }
            policy.maxPushBytes = maxPush
            policy.pushesPerMinute = rate
            let upstream = try Self.decode(fields[15], "upstream token")
            guard !upstream.isEmpty else { throw Malformed(description: "empty upstream token") }
            self = .create(StoredSession(
                digest: digest, sandbox: sandbox, scope: SessionScope(scope), upstreamToken: Secret(upstream), pushPolicy: policy,
                createdAt: created, expiresAt: expires, lastUsedAt: used, idleTimeout: idle))
        case ("use", 4):
            let id = fields[2]
            guard id.utf8.count == SessionToken.idLength, id.utf8.allSatisfy(Self.isLowerHex) else { throw Malformed(description: "bad session id") }
            self = .use(id: id, at: try Self.seconds(fields[3], "use time"))
        case ("end", 4):
            let digest = try Self.digest(fields[2])
            switch fields[3] {
            case "revoked": self = .end(digest: digest, revoked: true)
            case "expired": self = .end(digest: digest, revoked: false)
            default: throw Malformed(description: "bad end kind")
            }
        default:
            throw Malformed(description: "unknown record kind or field count")
        }
    }

    // MARK: - Fields

    private static func milliseconds(_ seconds: Double) -> String {
        String(Int64((seconds * 1000).rounded()))
    }

    private static func seconds(_ text: String, _ what: String) throws -> Double {
        guard text.utf8.count <= 15, !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let ms = Int64(text) else {
            throw Malformed(description: "bad \(what)")
        }
        return Double(ms) / 1000
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte)
    }

    private static func digest(_ text: String) throws -> TokenDigest {
        let utf8 = Array(text.utf8)
        guard utf8.count == 64, utf8.allSatisfy(isLowerHex) else { throw Malformed(description: "bad token digest") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for i in stride(from: 0, to: 64, by: 2) {
            bytes.append(hexValue(utf8[i]) << 4 | hexValue(utf8[i + 1]))
        }
        return TokenDigest(bytes: bytes)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8 {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x61...0x66: byte - 0x61 + 10
        case 0x41...0x46: byte - 0x41 + 10
        default: 0xFF
        }
    }

    private static func isPlain(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "_"), UInt8(ascii: "/"), UInt8(ascii: "*"):
            true
        default:
            false
        }
    }

    private static func encode(_ text: String) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if isPlain(byte) {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func decode(_ text: String, _ what: String) throws -> String {
        let utf8 = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "%") {
                guard i + 2 < utf8.count else { throw Malformed(description: "bad \(what)") }
                let high = hexValue(utf8[i + 1]), low = hexValue(utf8[i + 2])
                guard high != 0xFF, low != 0xFF else { throw Malformed(description: "bad \(what)") }
                out.append(high << 4 | low)
                i += 3
            } else {
                guard isPlain(utf8[i]) else { throw Malformed(description: "bad \(what)") }
                out.append(utf8[i])
                i += 1
            }
        }
        guard let decoded = String(validating: out, as: UTF8.self) else { throw Malformed(description: "bad \(what)") }
        return decoded
    }

    private static func encodeList(_ items: [String]) -> String {
        items.isEmpty ? "." : items.map(encode).joined(separator: ",")
    }

    private static func decodeList(_ text: String, _ what: String) throws -> [String] {
        if text == "." { return [] }
        return try text.split(separator: ",", omittingEmptySubsequences: false).map { try decode(String($0), what) }
    }
}
