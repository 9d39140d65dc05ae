@testable import Gateway

/// The reference DNS codec (tests only; the gateway answers in place, see `DNSWire`).
///
/// A DNS message (RFC 1035): header, questions and resource records, read from and
/// written to bytes.
///
/// Parsing follows compression pointers only backwards (to an offset before every byte of
/// the name read so far), so pointer loops cannot exist, and bounds names to 255 bytes and labels to 63.
/// Writing compresses repeated name suffixes.
package struct DNSMessage: Equatable, Sendable {
    /// The fixed 12-byte header.
    package struct Header: Equatable, Sendable {
        /// Matches a response to its query.
        package var id: UInt16
        /// QR, opcode, AA, TC, RD, RA, Z, RCODE, as on the wire.
        package var flags: UInt16
        /// QDCOUNT: entries in the question section.
        package var questionCount: UInt16
        /// ANCOUNT: records in the answer section.
        package var answerCount: UInt16
        /// NSCOUNT: records in the authority section.
        package var authorityCount: UInt16
        /// ARCOUNT: records in the additional section.
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
        /// QNAME.
        package var name: DNSName
        /// QTYPE.
        package var type: DNSRecordType
        /// QCLASS (1 is IN).
        package var recordClass: UInt16

        package init(name: DNSName, type: DNSRecordType, recordClass: UInt16 = DNSMessage.classIN) {
            self.name = name
            self.type = type
            self.recordClass = recordClass
        }
    }

    /// One resource record.
    package struct Record: Equatable, Sendable {
        /// The owner name.
        package var name: DNSName
        /// TYPE.
        package var type: DNSRecordType
        /// CLASS (1 is IN).
        package var recordClass: UInt16
        /// Seconds the record may be cached.
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
    package static let classIN: UInt16 = DNSWire.classIN

    /// The header; its counts are recomputed by `bytes()`.
    package var header: Header
    /// The question section.
    package var questions: [Question]
    /// The answer section.
    package var answers: [Record]
    /// The authority section.
    package var authorities: [Record]
    /// The additional section (EDNS OPT records land here).
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
