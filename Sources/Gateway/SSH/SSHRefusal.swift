/// What the gateway says to an SSH client: its identification string, then an unencrypted
/// `SSH_MSG_DISCONNECT` (RFC 4253 §11.1 allows one before key exchange), so the client
/// prints why instead of "Connection refused" or "Could not resolve hostname".
///
/// OpenSSH's client shows the description as
/// `Received disconnect from ADDRESS port 22:7: DESCRIPTION`, and git shows that line
/// before its own "Could not read from remote repository".
package enum SSHRefusal {
    /// The identification string (RFC 4253 §4.2), with its CR LF.
    package static let identification = "SSH-2.0-airlock\r\n"

    /// `SSH_DISCONNECT_SERVICE_NOT_AVAILABLE`.
    package static let serviceNotAvailable: UInt32 = 7

    /// The description the client shows: one line, what to do instead.
    package static let description =
        "airlock: SSH is not offered through the gateway; use HTTPS, e.g. git clone https://github.com/OWNER/REPO with airlock run --repo OWNER/REPO"

    /// The identification string followed by the disconnect packet: the whole answer.
    package static let answer: [UInt8] = Array(identification.utf8) + disconnect(reason: serviceNotAvailable, description: description)

    /// An unencrypted binary packet (RFC 4253 §6) carrying `SSH_MSG_DISCONNECT` (1) with
    /// `reason`, `description` and an empty language tag; no MAC, zero padding to a
    /// multiple of 8 bytes with at least 4 bytes of it.
    package static func disconnect(reason: UInt32, description: String) -> [UInt8] {
        var payload: [UInt8] = [1]
        append(reason, to: &payload)
        let text = Array(description.utf8)
        append(UInt32(text.count), to: &payload)
        payload += text
        append(0, to: &payload)  // language tag: empty string
        var padding = 8 - (5 + payload.count) % 8
        if padding < 4 { padding += 8 }
        var packet: [UInt8] = []
        packet.reserveCapacity(5 + payload.count + padding)
        append(UInt32(1 + payload.count + padding), to: &packet)
        packet.append(UInt8(padding))
        packet += payload
        packet += [UInt8](repeating: 0, count: padding)
        return packet
    }

    private static func append(_ value: UInt32, to bytes: inout [UInt8]) {
        bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }
}
