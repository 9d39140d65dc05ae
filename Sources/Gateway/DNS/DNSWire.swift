/// Reads a DNS message in place, from the bytes it arrived in: no arrays, no `DNSName`.
///
/// Accepts exactly what the tests' reference codec, `DNSMessage(parsing:)`, accepts (same pointer rule, same limits,
/// same record checks), so a query is malformed for the in-place responder when and only
/// when it is for the codec.
enum DNSWire {
    /// The Internet class, the only one answered.
    static let classIN: UInt16 = 1

    /// The offset just after the name at `start`, or nil when `DNSReader.readName` would
    /// throw there. `usesPointer` is set when the name contains a compression pointer.
    static func endOfName(_ bytes: UnsafeRawBufferPointer, at start: Int, usesPointer: inout Bool) -> Int? {
        var wireLength = 1
        var position = start
        var resumeAt = -1
        // As in DNSReader: every pointer points before every byte of the name read so far.
        var lowest = start
        var hops = 0
        while true {
            guard position >= 0, position < bytes.count else { return nil }
            let length = bytes[position]
            switch length & 0xC0 {
            case 0x00:
                if length == 0 {
                    return resumeAt >= 0 ? resumeAt : position + 1
                }
                let count = Int(length)
                guard position + 1 + count <= bytes.count else { return nil }
                wireLength += 1 + count
                guard wireLength <= DNSName.maximumWireLength else { return nil }
                position += 1 + count
            case 0xC0:
                guard position + 2 <= bytes.count else { return nil }
                let target = Int(length & 0x3F) << 8 | Int(bytes[position + 1])
                hops += 1
                guard target < lowest, hops <= 127 else { return nil }
                lowest = target
                if resumeAt < 0 { resumeAt = position + 2 }
                usesPointer = true
                position = target
            default:
                return nil
            }
        }
    }

    /// Calls `body` with the offset and length of each label of the name at `start`,
    /// following pointers. Only for names `endOfName` accepted.
    static func forEachLabel(_ bytes: UnsafeRawBufferPointer, at start: Int, _ body: (Int, Int) -> Void) {
        var position = start
        while position < bytes.count {
            let length = bytes[position]
            if length & 0xC0 == 0xC0 {
                guard position + 1 < bytes.count else { return }
                position = Int(length & 0x3F) << 8 | Int(bytes[position + 1])
                continue
            }
            if length == 0 { return }
            body(position + 1, Int(length))
            position += 1 + Int(length)
        }
    }

    static func uint16(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    /// Where the question of a one-question message is, once the whole message was checked.
    struct Question {
        /// Offset of QNAME (always 12).
        var nameStart: Int
        /// Offset just after QNAME, where QTYPE starts.
        var nameEnd: Int
        /// Whether QNAME contains a compression pointer (then it is not a contiguous run of bytes).
        var nameUsesPointer: Bool
        var type: UInt16
        var recordClass: UInt16
    }

    /// Checks a whole message with one question the way `DNSMessage(parsing:)` does and
    /// returns where its question is; nil when the codec would throw. Bytes after the last
    /// record are ignored, as there.
    static func checkQuery(_ bytes: UnsafeRawBufferPointer) -> Question? {
        guard bytes.count >= 12, uint16(bytes, at: 4) == 1 else { return nil }
        var usesPointer = false
        guard let nameEnd = endOfName(bytes, at: 12, usesPointer: &usesPointer), nameEnd + 4 <= bytes.count else { return nil }
        let question = Question(nameStart: 12, nameEnd: nameEnd, nameUsesPointer: usesPointer,
                                type: uint16(bytes, at: nameEnd), recordClass: uint16(bytes, at: nameEnd + 2))
        var offset = nameEnd + 4
        let records = Int(uint16(bytes, at: 6)) + Int(uint16(bytes, at: 8)) + Int(uint16(bytes, at: 10))
        var ignored = false
        for _ in 0..<records {
            guard let end = endOfName(bytes, at: offset, usesPointer: &ignored), end + 10 <= bytes.count else { return nil }
            let type = uint16(bytes, at: end)
            let length = Int(uint16(bytes, at: end + 8))
            let start = end + 10
            guard start + length <= bytes.count else { return nil }
            if type == DNSRecordType.ptr.rawValue || type == DNSRecordType.cname.rawValue || type == DNSRecordType.ns.rawValue {
                guard endOfName(bytes, at: start, usesPointer: &ignored) == start + length else { return nil }
            }
            offset = start + length
        }
        return question
    }

    /// The name at `start` as a `DNSName` (original case), for audit events.
    static func name(_ bytes: UnsafeRawBufferPointer, at start: Int) -> DNSName {
        var labels: [[UInt8]] = []
        forEachLabel(bytes, at: start) { offset, count in
            labels.append(Array(bytes[offset..<(offset + count)]))
        }
        return DNSName(labels: labels)
    }

    /// The wire form of `name` lowercased (length-prefixed labels and the root's 0).
    static func lowercaseWire(_ name: DNSName) -> [UInt8] {
        var out: [UInt8] = []
        for label in name.lowercased.labels {
            out.append(UInt8(label.count))
            out.append(contentsOf: label)
        }
        return out + [0]
    }
}
