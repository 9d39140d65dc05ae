/// git's pkt-line framing (gitprotocol-common): four hexadecimal digits giving the length
/// of the line including themselves, then the data; `0000` is a flush, `0001` a delimiter,
/// `0002` a response end. Lines are at most 65520 bytes.
package enum PktLine: Equatable, Sendable {
    case data([UInt8])
    case flush
    case delimiter
    case responseEnd

    /// The largest pkt-line git writes or accepts.
    package static let maximumLength = 65520

    /// The outcome of reading one pkt-line.
    package enum Read: Equatable, Sendable {
        /// A line and the offset just after it.
        case line(PktLine, next: Int)
        /// The bytes end inside the line.
        case needMore
        /// Not a pkt-line: why.
        case malformed(String)
    }

    /// Reads the pkt-line at `offset` of `bytes`.
    package static func read(_ bytes: [UInt8], at offset: Int) -> Read {
        guard bytes.count - offset >= 4 else { return .needMore }
        var length = 0
        for byte in bytes[offset..<(offset + 4)] {
            guard let digit = hexValue(byte) else { return .malformed("a pkt-line length is not hexadecimal") }
            length = length << 4 | digit
        }
        switch length {
        case 0: return .line(.flush, next: offset + 4)
        case 1: return .line(.delimiter, next: offset + 4)
        case 2: return .line(.responseEnd, next: offset + 4)
        case 3: return .malformed("a pkt-line length of 3")
        case let n where n > maximumLength: return .malformed("a pkt-line longer than \(maximumLength) bytes")
        default:
            guard bytes.count - offset >= length else { return .needMore }
            return .line(.data(Array(bytes[(offset + 4)..<(offset + length)])), next: offset + length)
        }
    }

    /// `text` as one pkt-line.
    package static func encode(_ payload: [UInt8]) -> [UInt8] {
        let length = payload.count + 4
        let digits = Array("0123456789abcdef".utf8)
        return [digits[length >> 12 & 0xF], digits[length >> 8 & 0xF], digits[length >> 4 & 0xF], digits[length & 0xF]] + payload
    }

    /// `0000`.
    package static let flushBytes: [UInt8] = Array("0000".utf8)

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}
