#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The control sockets' framing: one JSON object per line, keys sorted.
enum JSONLine {
    /// `value` as one JSON line, without the newline.
    static func encode<Wire: Encodable>(_ value: Wire) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// Reads one line as `Wire`.
    /// - Throws: `ControlProtocolError(description: malformed)` when it is not one; the
    ///   reason never repeats the line (it may hold a token).
    static func decode<Wire: Decodable>(_ type: Wire.Type, from bytes: [UInt8], malformed: String) throws -> Wire {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw ControlProtocolError(description: malformed)
        }
    }
}
