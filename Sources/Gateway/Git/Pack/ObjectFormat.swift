import Digests

/// The hash a repository names its objects with: SHA-1 (40 hexadecimal digits) or SHA-256
/// (64). A pack's object ids, its ref-delta bases and its trailer all use it.
package enum ObjectFormat: Sendable, Equatable {
    case sha1
    case sha256

    /// The format whose ids are `hexLength` digits long, if any.
    package init?(hexLength: Int) {
        switch hexLength {
        case 40: self = .sha1
        case 64: self = .sha256
        default: return nil
        }
    }

    /// The length of an id in bytes.
    package var byteCount: Int {
        switch self {
        case .sha1: 20
        case .sha256: 32
        }
    }

    /// A fresh incremental hash.
    func hasher() -> ObjectHasher {
        switch self {
        case .sha1: .sha1(SHA1())
        case .sha256: .sha256(SHA256())
        }
    }

    /// The id of an object: the hash of `"<type> <size>\0"` and its content.
    func objectID(type: String, content: [UInt8]) -> [UInt8] {
        var hasher = hasher()
        hasher.update(Array("\(type) \(content.count)\0".utf8))
        hasher.update(content)
        return hasher.finalize()
    }
}

/// An incremental SHA-1 or SHA-256.
enum ObjectHasher {
    case sha1(SHA1)
    case sha256(SHA256)

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        switch self {
        case .sha1(var h):
            h.update(bytes)
            self = .sha1(h)
        case .sha256(var h):
            h.update(bytes)
            self = .sha256(h)
        }
    }

    mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    func finalize() -> [UInt8] {
        switch self {
        case .sha1(let h): h.finalize()
        case .sha256(let h): h.finalize()
        }
    }
}

/// Object ids as git prints them: lower-case hexadecimal.
enum ObjectID {
    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
