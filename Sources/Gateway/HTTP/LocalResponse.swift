import NIOHTTP1

/// A response the gateway writes itself: a refusal, a health answer, a `404`.
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

    /// A refusal: `text/plain`, `X-Airlock-Denied: <reason>`, body = reason + newline.
    ///
    /// `reason` must be one line naming the host and what to change; it must never carry
    /// a token or a credential. Line breaks are replaced by spaces.
    package static func refusal(_ status: HTTPResponseStatus, reason: String, closeConnection: Bool = false) -> LocalResponse {
        let line = reason.split(whereSeparator: { $0 == "\r" || $0 == "\n" }).joined(separator: " ")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "X-Airlock-Denied", value: line)
        return LocalResponse(status: status, headers: headers, body: line + "\n", closeConnection: closeConnection)
    }

    /// A plain-text answer such as the health check's `ok`.
    package static func text(_ status: HTTPResponseStatus, _ body: String) -> LocalResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        return LocalResponse(status: status, headers: headers, body: body)
    }
}
