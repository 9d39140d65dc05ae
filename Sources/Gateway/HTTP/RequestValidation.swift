import NIOHTTP1

/// Refuses request heads with shapes used for request smuggling or header injection.
///
/// The HTTP decoder already rejects much (obs-fold, bad tokens); these checks cover what
/// a lenient parser would let through and what matters once a request is re-encoded.
package enum RequestValidation {
    /// One line saying why `head` is refused (the `Refusal` reason), or `nil` if it is acceptable.
    package static func problem(in head: HTTPRequestHead) -> String? {
        let lengths = head.headers[canonicalForm: "content-length"]
        let encodings = head.headers[canonicalForm: "transfer-encoding"]
        if !lengths.isEmpty && !encodings.isEmpty {
            return "malformed request: both Content-Length and Transfer-Encoding"
        }
        if lengths.count > 1 {
            return "malformed request: more than one Content-Length"
        }
        if let length = lengths.first, length.isEmpty || !length.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) || length.utf8.count > 18 {
            return "malformed request: invalid Content-Length"
        }
        if !encodings.isEmpty && (encodings.count != 1 || encodings[0].lowercased() != "chunked") {
            return "malformed request: only Transfer-Encoding: chunked is accepted"
        }
        if head.headers[canonicalForm: "host"].count > 1 {
            return "malformed request: more than one Host header"
        }
        if head.uri.isEmpty || head.uri.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F || $0 >= 0x80 }) {
            return "malformed request: invalid characters in the request target"
        }
        for (name, value) in head.headers {
            let shown = name.utf8.count <= 64 && name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) ? name : "name"
            if name.utf8.contains(where: { $0 <= 0x20 || $0 == 0x3A || $0 >= 0x7F })
                || value.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
                return "malformed request: invalid header \(shown)"
            }
            // The decoder turned bytes that are not UTF-8 into U+FFFD (three bytes each):
            // forwarding them would change the header and triple its size past the limit
            // the client's bytes were checked against.
            if value.utf8.contains(where: { $0 >= 0x80 }) && value.unicodeScalars.contains("\u{FFFD}") {
                return "malformed request: header \(shown) is not valid UTF-8"
            }
        }
        if head.version.major != 1 {
            return "malformed request: only HTTP/1.0 and HTTP/1.1 are served"
        }
        return nil
    }

    /// A short, safe description of a parser error for the `400` body.
    package static func describe(_ error: Error) -> String {
        let text = String(describing: error)
        return String(text.prefix(80).filter { $0.isASCII && !$0.isNewline })
    }
}
