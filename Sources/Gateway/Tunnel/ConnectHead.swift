/// A `CONNECT` request head read straight from a socket's first bytes, for the socket
/// loop's own `CONNECT` path (`LoopConnect`).
///
/// The reader accepts only the plain shape proxy clients send, a strict subset of what
/// the HTTP decoder and `RequestValidation` accept: `CONNECT target HTTP/1.0|1.1`, CRLF
/// line ends, header names of token characters, values of visible ASCII, spaces and tabs,
/// at most one `Host` (without a comma, which the full path reads as a second one), no `Content-Length`, `Transfer-Encoding` or `Upgrade`, the whole head in
/// the bytes given. Anything else is left to the full request path (`nil`), which answers
/// it exactly as before. So this reader can make no decision of its own: whatever it
/// reads, the full path would have read the same way.
package struct ConnectHead: Equatable, Sendable {
    /// The request target, as sent (`host:port`); parsed and checked by the caller.
    package var target: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    package var minorVersion: Int
    /// The head's length in bytes, its final empty line included.
    package var length: Int

    /// Headers read at most; a head with more goes to the full path.
    package static let maxHeaders = 64

    /// Reads a complete `CONNECT` head at the start of `bytes`, of at most `maxLength` bytes.
    /// - Returns: nil when `bytes` do not start with one in the plain shape above.
    package static func read(_ bytes: UnsafeRawBufferPointer, maxLength: Int) -> ConnectHead? {
        let count = min(bytes.count, maxLength)
        let prefix: StaticString = "CONNECT "
        guard count > prefix.utf8CodeUnitCount, startsWith(prefix, in: bytes, at: 0) else { return nil }
        // The request line: target, one space, the version, CRLF.
        var position = prefix.utf8CodeUnitCount
        let targetStart = position
        while position < count, isTargetByte(bytes[position]) { position += 1 }
        let targetEnd = position
        guard targetEnd > targetStart, targetEnd - targetStart <= 2048 else { return nil }
        let version: StaticString = " HTTP/1."
        guard position + version.utf8CodeUnitCount + 3 <= count, startsWith(version, in: bytes, at: position) else { return nil }
        position += version.utf8CodeUnitCount
        let minor = bytes[position]
        guard minor == UInt8(ascii: "0") || minor == UInt8(ascii: "1") else { return nil }
        position += 1
        guard bytes[position] == 0x0D, bytes[position + 1] == 0x0A else { return nil }
        position += 2
        // Header lines up to the empty line.
        var headers = 0
        var hosts = 0
        while true {
            guard position + 1 < count else { return nil }
            if bytes[position] == 0x0D {
                guard bytes[position + 1] == 0x0A else { return nil }
                position += 2
                break
            }
            headers += 1
            guard headers <= maxHeaders else { return nil }
            let nameStart = position
            while position < count, isTokenByte(bytes[position]) { position += 1 }
            guard position < count, position > nameStart, bytes[position] == UInt8(ascii: ":") else { return nil }
            let kind = Self.named(bytes, from: nameStart, to: position)
            switch kind {
            case .framing: return nil
            case .host: hosts += 1
            case .other: break
            }
            guard hosts <= 1 else { return nil }
            position += 1
            while position < count, bytes[position] != 0x0D {
                guard isValueByte(bytes[position]) else { return nil }
                // The full path reads a comma in `Host` as a second value, and refuses it.
                guard kind != .host || bytes[position] != UInt8(ascii: ",") else { return nil }
                position += 1
            }
            guard position + 1 < count, bytes[position + 1] == 0x0A else { return nil }
            position += 2
        }
        let target = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[targetStart..<targetEnd]), as: UTF8.self)
        return ConnectHead(target: target, minorVersion: minor == UInt8(ascii: "1") ? 1 : 0, length: position)
    }

    private static func startsWith(_ text: StaticString, in bytes: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        for index in 0..<text.utf8CodeUnitCount where bytes[offset + index] != text.utf8Start[index] { return false }
        return true
    }

    private enum HeaderKind { case framing, host, other }

    /// Whether the header named by `bytes[start..<end]` frames a body (`Content-Length`,
    /// `Transfer-Encoding`), asks for an upgrade, or is `Host`; case-insensitive.
    private static func named(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> HeaderKind {
        func equals(_ name: StaticString) -> Bool {
            guard end - start == name.utf8CodeUnitCount else { return false }
            let expected = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
            for offset in 0..<(end - start) where bytes[start + offset] | 0x20 != expected[offset] { return false }
            return true
        }
        if equals("host") { return .host }
        if equals("content-length") || equals("transfer-encoding") || equals("upgrade") { return .framing }
        return .other
    }

    /// What an authority of a name or an address and a port is written with: letters,
    /// digits, `-`, `.`, `_`, `:` and the brackets of an IPv6 literal. Other bytes, even
    /// ones `RequestValidation` allows, go to the full path (the decoder refuses some,
    /// such as `<`).
    private static func isTargetByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"):
            return true
        default:
            return false
        }
    }

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
             UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// A header value's bytes: visible ASCII, space and tab (no bytes above 0x7E, which
    /// the full path checks as UTF-8).
    private static func isValueByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte < 0x7F)
    }
}
