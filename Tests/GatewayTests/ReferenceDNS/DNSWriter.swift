@testable import Gateway

/// Writes big-endian fields and names, compressing name suffixes already written.
struct DNSWriter {
    var bytes: [UInt8] = []
    private var suffixes: [DNSName: Int] = [:]

    mutating func writeUInt16(_ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    mutating func writeName(_ name: DNSName) {
        for index in name.labels.indices {
            let suffix = DNSName(labels: Array(name.labels[index...])).lowercased
            if let at = suffixes[suffix] {
                writeUInt16(0xC000 | UInt16(at))
                return
            }
            if bytes.count < 0x3FFF { suffixes[suffix] = bytes.count }
            bytes.append(UInt8(name.labels[index].count))
            bytes.append(contentsOf: name.labels[index])
        }
        bytes.append(0)
    }
}
