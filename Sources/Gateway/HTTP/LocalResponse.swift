import NIOCore
import NIOHTTP1

/// A response the gateway writes itself: a refusal (made by `Refusal`), a health answer.
///
/// Bodies are short `text/plain` lines so that curl, pip and git show them to the user
/// (git prints them as `remote:` lines).
package struct LocalResponse: Sendable, Equatable {
    /// The status line's code.
    package var status: HTTPResponseStatus
    /// Extra headers; `Content-Length` and `Connection` are set by the forwarder.
    package var headers: HTTPHeaders
    /// The whole body; kept small (one line).
    package var body: String
    /// Whether the connection closes after this response.
    package var closeConnection: Bool

    /// Creates a local response.
    package init(status: HTTPResponseStatus, headers: HTTPHeaders = HTTPHeaders(), body: String, closeConnection: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.closeConnection = closeConnection
    }

    /// A plain-text answer such as the health check's `ok`.
    package static func text(_ status: HTTPResponseStatus, _ body: String) -> LocalResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        return LocalResponse(status: status, headers: headers, body: body)
    }

    /// The response head for a request of `version`: HTTP/1.0 for an HTTP/1.0 client,
    /// else HTTP/1.1; `Content-Length` of the body and `Connection` as `closing` says.
    package func head(version: HTTPVersion, closing: Bool) -> HTTPResponseHead {
        var head = HTTPResponseHead(version: version.major == 1 && version.minor == 0 ? .http1_0 : .http1_1, status: status)
        var headers = self.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(body.utf8.count))
        headers.replaceOrAdd(name: "Connection", value: closing ? "close" : "keep-alive")
        head.headers = headers
        return head
    }
}

extension LocalResponse {
    /// The whole answer as bytes, as `writeLocalAnswer` puts it on the wire through the
    /// response encoder: status line, headers, empty line, body.
    package func encoded(version: HTTPVersion, closing: Bool) -> [UInt8] {
        let head = head(version: version, closing: closing)
        var text = "HTTP/\(head.version.major).\(head.version.minor) \(head.status.code) \(head.status.reasonPhrase)\r\n"
        for (name, value) in head.headers { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        text += body
        return Array(text.utf8)
    }
}

extension ChannelHandlerContext {
    /// Writes a whole gateway-made answer (`head`, then `body` unless empty, then the end)
    /// and, when `close`, closes the connection once it is written.
    func writeLocalAnswer(_ head: HTTPResponseHead, body: String, close: Bool) {
        write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        if !body.isEmpty {
            write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(string: body)))), promise: nil)
        }
        let written = writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if close { written.whenComplete { _ in self.close(promise: nil) } }
    }
}
