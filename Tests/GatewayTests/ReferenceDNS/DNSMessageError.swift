@testable import Gateway

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
