import Digests

/// A session token as the sandbox presents it, and the hash the gateway keeps instead.
///
/// A token is `airlock_s_` followed by 43 base64url characters: 256 bits from the system's
/// cryptographic random source. The gateway stores only the SHA-256 digest of the whole
/// token; the session id shown in lists and audit lines is the first 12 hex digits of that
/// digest, which identifies a session without revealing anything that could be replayed.
package enum SessionToken {
    /// The prefix every session token starts with, so a leaked token is recognisable.
    package static let prefix = "airlock_s_"
    /// Random bytes in a token.
    package static let randomByteCount = 32
    /// Characters after the prefix: base64url of 32 bytes without padding.
    package static let encodedLength = 43
    /// Hex digits of the digest used as the session id.
    package static let idLength = 12

    /// A fresh token from the system's cryptographic random source.
    package static func generate() -> Secret {
        let encoded = Base64URL.encode(SecureRandom.bytes(count: randomByteCount))
        return Secret(prefix + encoded)
    }

    /// Whether `text` has the shape of a session token (prefix, length, alphabet).
    /// Says nothing about whether the session exists.
    package static func isWellFormed(_ text: String) -> Bool {
        let utf8 = Array(text.utf8)
        let prefixBytes = Array(prefix.utf8)
        guard utf8.count == prefixBytes.count + encodedLength, utf8.starts(with: prefixBytes) else { return false }
        return utf8[prefixBytes.count...].allSatisfy(Base64URL.isAlphabet)
    }

    /// The SHA-256 digest of a token, the only form the gateway keeps.
    package static func digest(of token: Secret) -> TokenDigest {
        token.withRevealed { TokenDigest(bytes: SHA256.hash(Array($0.utf8))) }
    }
}

/// The SHA-256 digest of a session token.
package struct TokenDigest: Sendable, Hashable {
    package let bytes: [UInt8]

    package init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The session id: the first 12 hex digits of the digest.
    package var sessionID: String {
        String(hex.prefix(SessionToken.idLength))
    }

    /// The digest as lowercase hex.
    package var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Compares two digests in time that does not depend on where they differ.
    package func constantTimeEquals(_ other: TokenDigest) -> Bool {
        guard bytes.count == other.bytes.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<bytes.count {
            difference |= bytes[i] ^ other.bytes[i]
        }
        return difference == 0
    }

    /// Equality is constant-time too, so no caller can compare digests the fast way by accident.
    package static func == (lhs: TokenDigest, rhs: TokenDigest) -> Bool {
        lhs.constantTimeEquals(rhs)
    }
}

/// base64url (RFC 4648 §5) without padding.
package enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// Encodes `bytes` without padding.
    package static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether `byte` is one of the 64 base64url characters.
    package static func isAlphabet(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default:
            false
        }
    }
}
