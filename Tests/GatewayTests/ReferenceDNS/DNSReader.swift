@testable import Gateway

/// Reads big-endian fields and names from a message.
struct DNSReader {
    let bytes: [UInt8]
    var offset: Int

    mutating func readUInt16() throws -> UInt16 {
        guard offset + 2 <= bytes.count else { throw DNSMessageError.truncated(offset: offset) }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func readBytes(_ count: Int) throws -> [UInt8] {
        guard offset + count <= bytes.count else { throw DNSMessageError.truncated(offset: offset) }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    /// Reads a possibly compressed name and leaves `offset` after it.
    mutating func readName() throws -> DNSName {
        var labels: [[UInt8]] = []
        var wireLength = 1
        var position = offset
        var resumeAt: Int?
        // Each pointer must point before every byte of the name read so far, so the
        // jump targets strictly decrease and the walk ends; the hop bound is a second guard.
        var lowest = offset
        var hops = 0
        while true {
            guard position < bytes.count else { throw DNSMessageError.truncated(offset: position) }
            let length = bytes[position]
            switch length & 0xC0 {
            case 0x00:
                if length == 0 {
                    offset = resumeAt ?? position + 1
                    return DNSName(labels: labels)
                }
                let count = Int(length)
                guard position + 1 + count <= bytes.count else { throw DNSMessageError.truncated(offset: position) }
                wireLength += 1 + count
                guard wireLength <= DNSName.maximumWireLength else { throw DNSMessageError.nameTooLong(offset: position) }
                labels.append(Array(bytes[(position + 1)...(position + count)]))
                position += 1 + count
            case 0xC0:
                guard position + 2 <= bytes.count else { throw DNSMessageError.truncated(offset: position) }
                let target = Int(length & 0x3F) << 8 | Int(bytes[position + 1])
                hops += 1
                guard target < lowest, hops <= 127 else { throw DNSMessageError.badPointer(offset: position) }
                lowest = target
                if resumeAt == nil { resumeAt = position + 2 }
                position = target
            default:
                throw DNSMessageError.badLabelType(offset: position)
            }
        }
    }
}
