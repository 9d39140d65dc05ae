/// A DNS message (RFC 1035): header, questions and resource records, read from and
/// written to bytes.
///
/// Parsing follows compression pointers only backwards (to an offset before every byte of
/// the name read so far), so pointer loops cannot exist, and bounds names to 255 bytes and labels to 63.
/// Writing compresses repeated name suffixes.
package struct DNSMessage: Equatable, Sendable {
    /// The fixed 12-byte header.
    package struct Header: Equatable, Sendable {
        package var id: UInt16
        /// QR, opcode, AA, TC, RD, RA, Z, RCODE, as on the wire.
        package var flags: UInt16
        package var questionCount: UInt16
        package var answerCount: UInt16
        package var authorityCount: UInt16
        package var additionalCount: UInt16

        package init(id: UInt16, flags: UInt16, questionCount: UInt16 = 0, answerCount: UInt16 = 0,
                     authorityCount: UInt16 = 0, additionalCount: UInt16 = 0) {
            self.id = id
            self.flags = flags
            self.questionCount = questionCount
            self.answerCount = answerCount
            self.authorityCount = authorityCount
            self.additionalCount = additionalCount
        }

        /// Reads the header from the first 12 bytes; nil when there are fewer.
        package init?(bytes: [UInt8]) {
            guard bytes.count >= 12 else { return nil }
            func u16(_ i: Int) -> UInt16 { UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]) }
            self.init(id: u16(0), flags: u16(2), questionCount: u16(4), answerCount: u16(6),
                      authorityCount: u16(8), additionalCount: u16(10))
        }

        /// Whether this is a response (QR set).
        package var isResponse: Bool { flags & 0x8000 != 0 }
        /// The opcode (0 is QUERY).
        package var opcode: UInt8 { UInt8((flags >> 11) & 0xF) }
        /// Authoritative answer.
        package var isAuthoritative: Bool { flags & 0x0400 != 0 }
        /// Truncated.
        package var isTruncated: Bool { flags & 0x0200 != 0 }
        /// Recursion desired.
        package var recursionDesired: Bool { flags & 0x0100 != 0 }
        /// Recursion available.
        package var recursionAvailable: Bool { flags & 0x0080 != 0 }
        /// The response code.
        package var rcode: DNSResponseCode { DNSResponseCode(rawValue: UInt8(flags & 0xF)) }
    }

    /// One entry of the question section.
    package struct Question: Equatable, Sendable {
        package var name: DNSName
        package var type: DNSRecordType
        package var recordClass: UInt16

        package init(name: DNSName, type: DNSRecordType, recordClass: UInt16 = DNSMessage.classIN) {
            self.name = name
            self.type = type
            self.recordClass = recordClass
        }
    }

    /// One resource record.
    package struct Record: Equatable, Sendable {
        package var name: DNSName
        package var type: DNSRecordType
        package var recordClass: UInt16
        package var ttl: UInt32
        /// RDATA as on the wire. For PTR, CNAME and NS written by `bytes()`, use `target`
        /// instead so the name can be compressed.
        package var data: [UInt8]
        /// For PTR, CNAME and NS: the name the record points to (parsed and written as a name).
        package var target: DNSName?

        package init(name: DNSName, type: DNSRecordType, recordClass: UInt16 = DNSMessage.classIN, ttl: UInt32,
                     data: [UInt8] = [], target: DNSName? = nil) {
            self.name = name
            self.type = type
            self.recordClass = recordClass
            self.ttl = ttl
            self.data = data
            self.target = target
        }
    }

    /// The Internet class.
    package static let classIN: UInt16 = 1

    package var header: Header
    package var questions: [Question]
    package var answers: [Record]
    package var authorities: [Record]
    package var additionals: [Record]

    package init(header: Header, questions: [Question] = [], answers: [Record] = [],
                 authorities: [Record] = [], additionals: [Record] = []) {
        self.header = header
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
    }

    /// Parses a whole message. Bytes after the last record are ignored.
    /// - Throws: `DNSMessageError` naming the problem and its offset.
    package init(parsing bytes: [UInt8]) throws {
        guard let header = Header(bytes: bytes) else { throw DNSMessageError.truncated(offset: bytes.count) }
        var reader = DNSReader(bytes: bytes, offset: 12)
        var questions: [Question] = []
        for _ in 0..<header.questionCount {
            let name = try reader.readName()
            let type = try reader.readUInt16()
            let recordClass = try reader.readUInt16()
            questions.append(Question(name: name, type: DNSRecordType(rawValue: type), recordClass: recordClass))
        }
        func records(_ count: UInt16) throws -> [Record] {
            var out: [Record] = []
            for _ in 0..<count {
                let name = try reader.readName()
                let type = DNSRecordType(rawValue: try reader.readUInt16())
                let recordClass = try reader.readUInt16()
                let ttl = UInt32(try reader.readUInt16()) << 16 | UInt32(try reader.readUInt16())
                let length = Int(try reader.readUInt16())
                let start = reader.offset
                let data = try reader.readBytes(length)
                var target: DNSName?
                if type == .ptr || type == .cname || type == .ns {
                    var inner = DNSReader(bytes: bytes, offset: start)
                    target = try inner.readName()
                    guard inner.offset == start + length else { throw DNSMessageError.badRecordLength(offset: start) }
                }
                out.append(Record(name: name, type: type, recordClass: recordClass, ttl: ttl, data: target == nil ? data : [], target: target))
            }
            return out
        }
        let answers = try records(header.answerCount)
        let authorities = try records(header.authorityCount)
        let additionals = try records(header.additionalCount)
        self.init(header: header, questions: questions, answers: answers, authorities: authorities, additionals: additionals)
    }

    /// The message on the wire. Counts in the header are taken from the sections.
    package func bytes() -> [UInt8] {
        var writer = DNSWriter()
        writer.writeUInt16(header.id)
        writer.writeUInt16(header.flags)
        writer.writeUInt16(UInt16(clamping: questions.count))
        writer.writeUInt16(UInt16(clamping: answers.count))
        writer.writeUInt16(UInt16(clamping: authorities.count))
        writer.writeUInt16(UInt16(clamping: additionals.count))
        for question in questions {
            writer.writeName(question.name)
            writer.writeUInt16(question.type.rawValue)
            writer.writeUInt16(question.recordClass)
        }
        for record in answers + authorities + additionals {
            writer.writeName(record.name)
            writer.writeUInt16(record.type.rawValue)
            writer.writeUInt16(record.recordClass)
            writer.writeUInt16(UInt16(record.ttl >> 16))
            writer.writeUInt16(UInt16(record.ttl & 0xFFFF))
            let lengthAt = writer.bytes.count
            writer.writeUInt16(0)
            if let target = record.target {
                writer.writeName(target)
            } else {
                writer.bytes.append(contentsOf: record.data)
            }
            let length = writer.bytes.count - lengthAt - 2
            writer.bytes[lengthAt] = UInt8(truncatingIfNeeded: length >> 8)
            writer.bytes[lengthAt + 1] = UInt8(truncatingIfNeeded: length)
        }
        return writer.bytes
    }
}

/// A response code (RCODE).
package struct DNSResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    package var rawValue: UInt8
    package init(rawValue: UInt8) { self.rawValue = rawValue }

    package static let noError = DNSResponseCode(rawValue: 0)
    package static let formatError = DNSResponseCode(rawValue: 1)
    package static let serverFailure = DNSResponseCode(rawValue: 2)
    package static let nameError = DNSResponseCode(rawValue: 3)
    package static let notImplemented = DNSResponseCode(rawValue: 4)
    package static let refused = DNSResponseCode(rawValue: 5)

    package var description: String {
        ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"].dropFirst(Int(rawValue)).first ?? "RCODE\(rawValue)"
    }
}

/// A record type (TYPE / QTYPE).
package struct DNSRecordType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    package var rawValue: UInt16
    package init(rawValue: UInt16) { self.rawValue = rawValue }

    package static let a = DNSRecordType(rawValue: 1)
    package static let ns = DNSRecordType(rawValue: 2)
    package static let cname = DNSRecordType(rawValue: 5)
    package static let soa = DNSRecordType(rawValue: 6)
    package static let ptr = DNSRecordType(rawValue: 12)
    package static let mx = DNSRecordType(rawValue: 15)
    package static let txt = DNSRecordType(rawValue: 16)
    package static let aaaa = DNSRecordType(rawValue: 28)
    package static let srv = DNSRecordType(rawValue: 33)
    package static let opt = DNSRecordType(rawValue: 41)
    package static let svcb = DNSRecordType(rawValue: 64)
    package static let https = DNSRecordType(rawValue: 65)
    package static let any = DNSRecordType(rawValue: 255)

    private static let names: [UInt16: String] = [
        1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
        33: "SRV", 41: "OPT", 64: "SVCB", 65: "HTTPS", 255: "ANY",
    ]

    /// The mnemonic (`A`, `AAAA`), or `TYPE123` (RFC 3597) for others.
    package var description: String { Self.names[rawValue] ?? "TYPE\(rawValue)" }
}

/// Why a DNS message did not parse.
package enum DNSMessageError: Error, Equatable, CustomStringConvertible {
    case truncated(offset: Int)
    case labelTooLong(offset: Int)
    case nameTooLong(offset: Int)
    /// A compression pointer that does not point before the name read so far (the loop guard).
    case badPointer(offset: Int)
    /// Label types 0b01 and 0b10 (extended labels), which nobody uses.
    case badLabelType(offset: Int)
    case badRecordLength(offset: Int)

    package var description: String {
        switch self {
        case .truncated(let o): return "message truncated at byte \(o)"
        case .labelTooLong(let o): return "label longer than 63 bytes at byte \(o)"
        case .nameTooLong(let o): return "name longer than 255 bytes at byte \(o)"
        case .badPointer(let o): return "compression pointer at byte \(o) does not point before the name"
        case .badLabelType(let o): return "unknown label type at byte \(o)"
        case .badRecordLength(let o): return "record data length does not match its name at byte \(o)"
        }
    }
}

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
