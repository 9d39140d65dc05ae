import GatewayCore
/// Reading session tokens from, and writing upstream credentials to, `Authorization` headers.
package enum HTTPAuthorization {
    /// The session tokens a request carries: `Bearer <token>`, or `Basic` with the token as
    /// the password (any user name), in header order. Values that are neither are skipped.
    package static func presentedTokens(in values: [String]) -> [String] {
        var tokens: [String] = []
        for value in values {
            let trimmed = value.trimmingSpaces
            guard let space = trimmed.firstIndex(of: " ") else { continue }
            let scheme = trimmed[..<space].lowercased()
            let rest = String(trimmed[trimmed.index(after: space)...]).trimmingSpaces
            switch scheme {
            case "bearer":
                tokens.append(rest)
            case "basic":
                guard let decoded = Base64.decode(rest), let text = String(validating: decoded, as: UTF8.self),
                      let colon = text.firstIndex(of: ":")
                else { continue }
                tokens.append(String(text[text.index(after: colon)...]))
            default:
                continue
            }
        }
        return tokens
    }

    /// The upstream credential in GitHub's style: `Basic base64("x-access-token:" + token)`.
    package static func upstreamCredential(_ token: Secret) -> String {
        token.withRevealed { "Basic " + Base64.encode(Array("x-access-token:\($0)".utf8)) }
    }
}

/// Standard base64 (RFC 4648 §4) with padding.
package enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Encodes with padding.
    package static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i], b1 = i + 1 < bytes.count ? bytes[i + 1] : 0, b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
            let n = UInt32(b0) << 16 | UInt32(b1) << 8 | UInt32(b2)
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(i + 1 < bytes.count ? alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(n & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes padded or unpadded base64; nil for anything else. Inputs over 8 KiB are refused.
    package static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        let bytes = Array(text.utf8)
        guard bytes.count <= 8192 else { return nil }
        var padding = 0
        for byte in bytes {
            if byte == UInt8(ascii: "=") { padding += 1; continue }
            guard padding == 0 else { return nil }
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): values.append(byte - 65)
            case UInt8(ascii: "a")...UInt8(ascii: "z"): values.append(byte - 97 + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): values.append(byte - 48 + 52)
            case UInt8(ascii: "+"): values.append(62)
            case UInt8(ascii: "/"): values.append(63)
            default: return nil
            }
        }
        guard padding <= 2, values.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < values.count {
            let chunk = values[i..<min(i + 4, values.count)]
            var n: UInt32 = 0
            for (k, v) in chunk.enumerated() { n |= UInt32(v) << (18 - 6 * UInt32(k)) }
            out.append(UInt8(n >> 16 & 0xFF))
            if chunk.count > 2 { out.append(UInt8(n >> 8 & 0xFF)) }
            if chunk.count > 3 { out.append(UInt8(n & 0xFF)) }
            i += 4
        }
        return out
    }
}

extension String {
    var trimmingSpaces: String {
        let bytes = Array(utf8)
        var start = 0, end = bytes.count
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }
}
