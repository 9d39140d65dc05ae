/// Bytes from annotated hex: pairs of hex digits, `#` starts a comment to the end of the line.
func annotatedHex(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    for line in text.split(separator: "\n") {
        let code = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        for token in code.split(separator: " ") {
            guard let byte = UInt8(token, radix: 16), token.count == 2 else {
                preconditionFailure("bad hex token \(token) in golden bytes")
            }
            bytes.append(byte)
        }
    }
    return bytes
}

/// Hex of `bytes`, 16 per line, for failure messages.
func hexDump(_ bytes: [UInt8]) -> String {
    stride(from: 0, to: bytes.count, by: 16).map { start in
        bytes[start..<min(start + 16, bytes.count)].map { byte in
            let text = String(byte, radix: 16)
            return text.count == 1 ? "0" + text : text
        }.joined(separator: " ")
    }.joined(separator: "\n")
}
