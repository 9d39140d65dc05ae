/// The small JSON that state files are written in (`/run/airlock/NAME/state.json`): a
/// strict reader of RFC 8259 text and a writer of the form Foundation's `JSONEncoder` writes
/// with `[.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]`, so files written before and
/// after read the same and look the same.
///
/// Here rather than Foundation's coders because every `netns create`, `destroy` and `list`
/// reads or writes one, and the first use of `JSONEncoder`/`JSONDecoder` in a process costs
/// more than the rest of the file's handling: their generic machinery is instantiated by the
/// Swift runtime on first use (docs/benchmarks.md, "What a netns create and destroy still
/// spend"). A state file is a handful of strings and one flag; it needs none of it.
package indirect enum StateJSON: Equatable, Sendable {
    case string(String)
    /// A number, as written (validated against the grammar; state files have none).
    case number(String)
    case bool(Bool)
    case null
    case array([StateJSON])
    /// Members by key; a key given twice is refused when read.
    case object([String: StateJSON])

    /// Why a text is not JSON, or not the JSON expected: one line with the byte offset.
    package struct Malformed: Error, CustomStringConvertible, Equatable {
        package let description: String
        package init(_ description: String) { self.description = description }
    }

    /// Nesting deeper than this is refused (a state file nests two levels).
    static let maximumDepth = 32

    // MARK: reading

    /// Parses `bytes` as one JSON value with nothing but whitespace around it.
    /// - Throws: `Malformed` naming what was expected and where.
    package static func parse(_ bytes: [UInt8]) throws -> StateJSON {
        var reader = Reader(bytes: bytes)
        reader.skipWhitespace()
        let value = try reader.value(depth: 0)
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw reader.malformed("unexpected text after the value") }
        return value
    }

    private struct Reader {
        let bytes: [UInt8]
        var index = 0

        func malformed(_ what: String) -> Malformed {
            Malformed("\(what) at byte \(index)")
        }

        mutating func skipWhitespace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        mutating func expect(_ literal: StaticString) throws {
            let text = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
            guard index + text.count <= bytes.count, bytes[index..<index + text.count].elementsEqual(text) else {
                throw malformed("expected \(literal)")
            }
            index += text.count
        }

        mutating func value(depth: Int) throws -> StateJSON {
            guard depth < StateJSON.maximumDepth else { throw malformed("nested deeper than \(StateJSON.maximumDepth) levels") }
            guard index < bytes.count else { throw malformed("expected a value") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "n"): try expect("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw malformed("expected a value")
            }
        }

        mutating func object(depth: Int) throws -> StateJSON {
            index += 1
            var members: [String: StateJSON] = [:]
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw malformed("expected a key") }
                let keyAt = index
                let key = try string()
                skipWhitespace()
                try expect(":")
                skipWhitespace()
                let member = try value(depth: depth + 1)
                guard members.updateValue(member, forKey: key) == nil else {
                    index = keyAt
                    throw malformed("key \"\(key)\" given twice")
                }
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ",") || bytes[index] == UInt8(ascii: "}") else {
                    throw malformed("expected , or }")
                }
                index += 1
                if bytes[index - 1] == UInt8(ascii: "}") { return .object(members) }
            }
        }

        mutating func array(depth: Int) throws -> StateJSON {
            index += 1
            var elements: [StateJSON] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                elements.append(try value(depth: depth + 1))
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ",") || bytes[index] == UInt8(ascii: "]") else {
                    throw malformed("expected , or ]")
                }
                index += 1
                if bytes[index - 1] == UInt8(ascii: "]") { return .array(elements) }
            }
        }

        mutating func number() throws -> String {
            let start = index
            func digits() -> Int {
                let from = index
                while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
                return index - from
            }
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            if index < bytes.count, bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else if digits() == 0 {
                throw malformed("expected a digit")
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard digits() > 0 else { throw malformed("expected a digit") }
            }
            if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { throw malformed("expected a digit") }
            }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }

        /// A string from its opening quote; escapes decoded, UTF-8 checked.
        mutating func string() throws -> String {
            let opening = index
            index += 1
            var out: [UInt8] = []
            while true {
                guard index < bytes.count else { throw malformed("unterminated string") }
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    guard let text = String(validating: out, as: UTF8.self) else {
                        index = opening
                        throw malformed("a string that is not UTF-8")
                    }
                    return text
                case UInt8(ascii: "\\"):
                    index += 1
                    guard index < bytes.count else { throw malformed("unterminated string") }
                    let escaped = bytes[index]
                    index += 1
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escaped)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800..<0xDC00).contains(scalar) {
                            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                                throw malformed("a lone surrogate")
                            }
                            index += 2
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw malformed("a lone surrogate") }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { throw malformed("a lone surrogate") }
                        out.append(contentsOf: UTF8.encode(unicode)!)
                    default:
                        index -= 2
                        throw malformed("an unknown escape")
                    }
                case 0x00..<0x20:
                    throw malformed("a control character in a string")
                default:
                    out.append(byte)
                    index += 1
                }
            }
        }

        mutating func hex4() throws -> UInt32 {
            guard index + 4 <= bytes.count else { throw malformed("expected four hex digits") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw malformed("expected four hex digits")
                }
                value = value << 4 | UInt32(digit)
                index += 1
            }
            return value
        }
    }

    // MARK: writing

    /// The text, as `JSONEncoder` writes it with `[.prettyPrinted, .sortedKeys,
    /// .withoutEscapingSlashes]`: two spaces a level, `"key" : value`, keys in order, no
    /// newline at the end.
    package var text: String {
        var out = ""
        write(to: &out, indent: 0)
        return out
    }

    private func write(to out: inout String, indent: Int) {
        switch self {
        case .string(let text): Self.quote(text, to: &out)
        case .number(let text): out += text
        case .bool(let flag): out += flag ? "true" : "false"
        case .null: out += "null"
        case .array(let elements):
            guard !elements.isEmpty else { out += "[\n\n" + String(repeating: " ", count: indent) + "]"; return }
            out += "[\n"
            for (position, element) in elements.enumerated() {
                out += String(repeating: " ", count: indent + 2)
                element.write(to: &out, indent: indent + 2)
                out += position == elements.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "]"
        case .object(let members):
            guard !members.isEmpty else { out += "{\n\n" + String(repeating: " ", count: indent) + "}"; return }
            out += "{\n"
            let keys = members.keys.sorted(by: Self.keyOrder)
            for (position, key) in keys.enumerated() {
                out += String(repeating: " ", count: indent + 2)
                Self.quote(key, to: &out)
                out += " : "
                members[key]!.write(to: &out, indent: indent + 2)
                out += position == keys.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "}"
        }
    }

    /// `JSONEncoder`'s `.sortedKeys` order: by UTF-8 code unit (`Ab`, `B`, `_x`, `a`, `a10`, `a2`).
    private static func keyOrder(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// `text` quoted: `"` and `\` escaped, control characters as `\n`-style or `\u00XX`,
    /// everything else (slashes, non-ASCII) as it is.
    private static func quote(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{00}"..."\u{1F}":
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
