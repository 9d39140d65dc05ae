import GatewayCore
/// The command section at the start of a `git-receive-pack` request body
/// (gitprotocol-pack, "Reference Update Request"): optional `shallow` lines, then one
/// update per pkt-line (the first carries the capabilities after a NUL), then a flush;
/// the pack follows.
///
/// Read before anything is forwarded, bounded, and strict: anything it does not
/// understand fails closed, because an update it cannot read is an update it cannot check.
package enum ReceivePackCommands {
    /// What the start of a body holds.
    package enum Parse: Equatable, Sendable {
        /// Every update, the client's capabilities, and the length of the section.
        case complete([RefUpdate], capabilities: [String], length: Int)
        /// The section continues past these bytes.
        case needMore
        /// Not a command section this gateway can check: why.
        case malformed(String)
    }

    /// The largest command section read (git sends one ~100-byte line per ref).
    package static let maximumLength = 1 << 20

    /// Parses the command section at the start of `bytes`.
    package static func parse(_ bytes: [UInt8]) -> Parse {
        var offset = 0
        var updates: [RefUpdate] = []
        var capabilities: [String] = []
        while true {
            if offset > maximumLength { return .malformed("the push names more refs than airlock reads (\(maximumLength >> 10) KiB of commands)") }
            switch PktLine.read(bytes, at: offset) {
            case .needMore:
                return bytes.count > maximumLength ? .malformed("the push's command section is longer than \(maximumLength >> 10) KiB") : .needMore
            case .malformed(let why):
                return .malformed(why)
            case .line(.flush, let next):
                // No command at all is git's probe before a large push (`0000`): it updates nothing.
                return .complete(updates, capabilities: capabilities, length: next)
            case .line(.data(var payload), let next):
                offset = next
                if payload.last == UInt8(ascii: "\n") { payload.removeLast() }
                if let nul = payload.firstIndex(of: 0) {
                    guard updates.isEmpty else { return .malformed("capabilities after the first command") }
                    capabilities = String(decoding: payload[(nul + 1)...], as: UTF8.self).split(separator: " ").map(String.init)
                    payload = Array(payload[..<nul])
                }
                let text = String(decoding: payload, as: UTF8.self)
                if text.hasPrefix("shallow ") && updates.isEmpty { continue }
                if text.hasPrefix("push-cert") { return .malformed("signed pushes (push certificates) cannot be checked by airlock") }
                let fields = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
                guard fields.count == 3, isObjectID(fields[0]), isObjectID(fields[1]), fields[0].count == fields[1].count else {
                    return .malformed("a push command is not `<old-id> <new-id> <ref>`")
                }
                guard isRefName(fields[2]) else { return .malformed("the ref name '\(printable(fields[2]))' is not valid") }
                updates.append(RefUpdate(old: fields[0], new: fields[1], ref: fields[2]))
            case .line:
                return .malformed("an unexpected delimiter in the push's commands")
            }
        }
    }

    /// 40 (SHA-1) or 64 (SHA-256) lower-case hexadecimal digits.
    static func isObjectID(_ text: String) -> Bool {
        (text.utf8.count == 40 || text.utf8.count == 64)
            && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// A ref name git itself would accept (git-check-ref-format), under `refs/`: so that
    /// what the policy matches is what the upstream updates.
    static func isRefName(_ name: String) -> Bool {
        guard name.hasPrefix("refs/"), name.utf8.count <= 1024, !name.hasSuffix("/"), !name.hasSuffix("."),
              !name.contains(".."), !name.contains("@{"), !name.contains("//")
        else { return false }
        for byte in name.utf8 {
            if byte < 0x21 || byte == 0x7F { return false }
            if [UInt8(ascii: "~"), UInt8(ascii: "^"), UInt8(ascii: ":"), UInt8(ascii: "?"), UInt8(ascii: "*"),
                UInt8(ascii: "["), UInt8(ascii: "\\")].contains(byte) { return false }
        }
        return name.split(separator: "/").allSatisfy { !$0.hasPrefix(".") && !$0.hasSuffix(".lock") }
    }

    private static func printable(_ text: String) -> String {
        String(text.unicodeScalars.prefix(80).map { $0.value >= 0x20 && $0.value < 0x7F ? Character($0) : "?" })
    }
}
