import NIOHTTP1
import GatewayCore

/// One refusal as the sandbox and the audit log see it, rendered in one place.
///
/// The sandbox gets `status` with `airlock: <reason>[; <hint>]` as the body line and as
/// `X-Airlock-Denied`; the audit line's `reason` is `<reason>` alone. Reasons and hints
/// are one line each, name the host, and never carry a token or a credential.
package struct Refusal: Sendable, Equatable {
    /// Put before every refusal the sandbox sees, so a user can tell the gateway's answer
    /// from the upstream's.
    package static let prefix = "airlock: "

    package var status: HTTPResponseStatus
    /// What was refused and why; the audit `reason`.
    package var reason: String
    /// What to change, if something can be; shown to the sandbox only.
    package var hint: String?
    /// Whether the connection closes after the answer.
    package var closeConnection: Bool
    /// Extra headers of the answer, such as git's `WWW-Authenticate`.
    package var headers: HTTPHeaders

    package init(_ status: HTTPResponseStatus, reason: String, hint: String? = nil, closeConnection: Bool = false,
                 headers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.reason = reason
        self.hint = hint
        self.closeConnection = closeConnection
        self.headers = headers
    }

    /// The line the sandbox sees: body and `X-Airlock-Denied`.
    package var text: String {
        Self.prefix + reason + (hint.map { "; " + $0 } ?? "")
    }

    /// The answer the forwarder writes: `text/plain`, `X-Airlock-Denied: <text>`, body =
    /// text + newline (line breaks in the text become spaces), then `headers`.
    package var response: LocalResponse {
        let line = text.split(whereSeparator: { $0 == "\r" || $0 == "\n" }).joined(separator: " ")
        var all = HTTPHeaders()
        all.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        all.add(name: "X-Airlock-Denied", value: line)
        all.add(contentsOf: headers)
        return LocalResponse(status: phrased, headers: all, body: line + "\n", closeConnection: closeConnection)
    }

    /// The answer in the GitHub API's error shape, for the GitHub API route: the same status,
    /// phrase and `X-Airlock-Denied` as `response`, with the body
    /// `{"message":"airlock: <reason>[; <hint>]"}`, which GitHub's clients print.
    package var jsonResponse: LocalResponse {
        var answer = response
        var json = JSONLineWriter()
        json.field("message", answer.body.hasSuffix("\n") ? String(answer.body.dropLast()) : answer.body)
        answer.body = json.finish() + "\n"
        answer.headers.replaceOrAdd(name: "Content-Type", value: "application/json; charset=utf-8")
        return answer
    }

    /// The status with the reason in its phrase (`403 airlock: example.org is not on the
    /// allowlist`): clients that show nothing else of a refused CONNECT print the phrase
    /// (pip: "Tunnel connection failed: 403 …", wget: "Proxy tunneling failed: …").
    /// Printable ASCII only, at most 120 characters; the status code is unchanged. Other
    /// statuses keep their standard phrase (git and curl print the body for those).
    var phrased: HTTPResponseStatus {
        guard status.code == 403 else { return status }
        var phrase = String((Self.prefix + reason).unicodeScalars.map { $0.value >= 0x20 && $0.value < 0x7F ? Character($0) : "?" })
        if phrase.count > 120 { phrase = String(phrase.prefix(117)) + "..." }
        return .custom(code: status.code, reasonPhrase: phrase)
    }

    /// The policy's refusal of `host:port` (as the client sent it): `403`, with what to
    /// add to the policy when adding a rule would allow it. `source` is the policy's file
    /// (a path) or the flags it came from.
    package init(denied reason: DenyReason, host: String, port: Int, source: String, closeConnection: Bool = false) {
        let inFile = source.hasPrefix("/")
        let hint: String?
        switch reason {
        case .notAllowlisted:
            hint = (inFile ? "add it to \(source) or pass" : "pass") + " --allow \(host)"
        case .portNotAllowed, .portOutOfRange, .literalPortNotAllowed:
            hint = (inFile ? "add \(host):\(port) to \(source) or pass" : "pass") + " --allow \(host):\(port)"
        case .invalidName, .gatewayItself, .deniedByRule, .literalNotCovered, .literalAddressRefused:
            hint = nil
        }
        self.init(.forbidden, reason: reason.description, hint: hint, closeConnection: closeConnection)
    }

    /// The answer to a failed dial of `host:port`: the `DialError`'s status and reason
    /// (`403`, `502`, `504`), else `502`. The connection closes after it.
    package init(dialFailure error: Error, host: String, port: Int) {
        if let error = error as? DialError {
            self.init(error.status, reason: error.reason, closeConnection: true)
        } else {
            self.init(.badGateway, reason: "cannot connect to \(host):\(port)", closeConnection: true)
        }
    }
}
