extension StringProtocol {
    /// The text without leading and trailing spaces and tabs (Unicode space separators, tab
    /// and zero-width space), as Foundation's `trimmingCharacters(in: .whitespaces)` gives it.
    package func trimmingWhitespace() -> String {
        trimmingScalars { ($0.properties.isWhitespace && !Self.isNewline($0)) || $0 == "\u{200B}" }
    }

    /// The text without leading and trailing white space and line breaks, as Foundation's
    /// `trimmingCharacters(in: .whitespacesAndNewlines)` gives it.
    package func trimmingWhitespaceAndNewlines() -> String {
        trimmingScalars { $0.properties.isWhitespace || $0 == "\u{200B}" }
    }

    private func trimmingScalars(_ trimmed: (Unicode.Scalar) -> Bool) -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !trimmed($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !trimmed($0) })!
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[first...last])
        return String(out)
    }

    private static func isNewline(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x0A...0x0D, 0x85, 0x2028, 0x2029: true
        default: false
        }
    }
}

extension String {
    /// The text with every `target` byte (ASCII) replaced by `replacement`. Works on bytes,
    /// as Foundation's `replacingOccurrences(of:with:)` does on code units: the `\n` of a
    /// `\r\n` pair is replaced too.
    package func replacingASCII(_ target: Unicode.Scalar, with replacement: String) -> String {
        precondition(target.isASCII)
        let byte = UInt8(target.value)
        guard utf8.contains(byte) else { return self }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        for b in utf8 {
            if b == byte { out.append(contentsOf: replacement.utf8) } else { out.append(b) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The text cut or padded with spaces to `length` characters, as Foundation's
    /// `padding(toLength:withPad: " ", startingAt: 0)` gives it for the ASCII columns of a table.
    package func padded(toLength length: Int) -> String {
        count >= length ? String(prefix(length)) : self + String(repeating: " ", count: length - count)
    }
}
