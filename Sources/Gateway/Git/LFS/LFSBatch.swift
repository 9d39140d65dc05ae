import Foundation
import NIOCore
import NIOHTTP1
import GatewayCore

/// The Git LFS batch API as the gateway reads and rewrites it (`POST …/info/lfs/objects/batch`,
/// `application/vnd.git-lfs+json`).
///
/// Both bodies are JSON, so each is read whole, at most `bodyLimit` bytes (git-lfs asks for
/// 100 objects per batch: a few tens of KiB). The request's `operation` decides what the
/// session needs (`download`: read, `upload`: rw). In the response every action's `href`
/// is replaced by a gateway URL and its `header` values are dropped from the sandbox's copy
/// (the gateway keeps both, see `LFSActionTable`); an answer airlock cannot vouch for (an
/// action the operation does not call for, an href that is not https, a transfer adapter
/// other than `basic`, malformed JSON) is refused whole.
package enum LFSBatch {
    /// The most bytes of a batch request or response body read.
    package static let bodyLimit = 1 << 20

    /// The media type of the LFS API.
    package static let contentType = "application/vnd.git-lfs+json"

    /// What a batch request asks for.
    package enum Operation: String, Sendable, Equatable {
        case download, upload

        /// The access a session needs for it.
        package var requiredAccess: RepoAccess { self == .download ? .read : .rw }

        /// The actions a response to it may hold.
        package var allowedActions: Set<LFSActionTable.Kind> {
            self == .download ? [.download] : [.upload, .verify]
        }
    }

    /// The `operation` of a batch request body.
    /// - Returns: the operation, or one line saying what is wrong.
    package static func operation(of body: [UInt8]) -> Result<Operation, Problem> {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            return .failure(Problem("the LFS batch request is not a JSON object"))
        }
        guard let text = object["operation"] as? String else {
            return .failure(Problem("the LFS batch request names no operation"))
        }
        guard let operation = Operation(rawValue: text) else {
            return .failure(Problem("unknown LFS batch operation \(GitRepository.printable(String(text.prefix(40)))) (download or upload)"))
        }
        return .success(operation)
    }

    /// One line saying why a body was refused.
    package struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        package let description: String
        package init(_ description: String) { self.description = description }
    }

    /// An action's `href`, split: `https://HOST[:PORT]/PATH[?QUERY]`.
    package struct Href: Sendable, Equatable {
        /// The host, lowercase; an IPv6 literal without brackets.
        package var host: String
        package var port: Int
        /// The path and query, origin form.
        package var uri: String

        /// The `Host` header for requests to it.
        package var hostHeader: String {
            let name = host.contains(":") ? "[\(host)]" : host
            return port == 443 ? name : "\(name):\(port)"
        }

        /// Splits `text`: https only; no user or fragment; printable ASCII.
        package static func parse(_ text: String) -> Href? {
            guard text.utf8.count <= 8192, text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }), !text.contains("#"),
                  text.lowercased().hasPrefix("https://") else { return nil }
            let rest = text.dropFirst("https://".count)
            let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
            let authority = rest[..<end]
            var uri = String(rest[end...])
            if uri.hasPrefix("?") || uri.isEmpty { uri = "/" + uri }
            guard let base = try? HTTPSBaseURL.parse("https://" + authority, plainWords: ""), base.basePath.isEmpty else { return nil }
            if HostLiteral.parse(base.host) == nil, (try? GitRepository.checkHost(base.host)) == nil { return nil }
            return Href(host: base.host, port: base.port, uri: uri)
        }
    }

    /// What the gateway answers in place of an action: its URL and lifetime in seconds.
    package typealias Registration = (url: String, expiresIn: Int)

    /// Rewrites a batch response body for the sandbox.
    /// - Parameters:
    ///   - body: the upstream's `200` body.
    ///   - operation: the request's operation.
    ///   - now: the time `expires_at` is measured from.
    ///   - register: keeps one action (kind, href, the upstream's headers, the upstream's
    ///     lifetime in seconds when it gave one) and says what the sandbox gets instead.
    /// - Returns: the body the sandbox gets, or why the response is refused.
    package static func rewrite(
        _ body: ByteBuffer, operation: Operation, now: Date = Date(),
        register: (LFSActionTable.Kind, Href, HTTPHeaders, Int?) -> Registration
    ) -> Result<String, Problem> {
        guard var object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            return .failure(Problem("the upstream's LFS batch response is not a JSON object"))
        }
        if let transfer = object["transfer"] {
            guard let name = transfer as? String, name == "basic" else {
                return .failure(Problem("the upstream chose an LFS transfer adapter other than basic"))
            }
        }
        guard let objects = object["objects"] as? [Any] else {
            return .failure(Problem("the upstream's LFS batch response has no objects list"))
        }
        var pending: [(index: Int, kind: LFSActionTable.Kind, href: Href, headers: HTTPHeaders, lifetime: Int?)] = []
        var rewritten: [[String: Any]] = []
        for (index, item) in objects.enumerated() {
            guard var entry = item as? [String: Any] else {
                return .failure(Problem("the upstream's LFS batch response has an object that is not a JSON object"))
            }
            if let actions = entry["actions"] {
                guard let actions = actions as? [String: Any] else {
                    return .failure(Problem("the upstream's LFS batch response has actions that are not a JSON object"))
                }
                for (name, value) in actions.sorted(by: { $0.key < $1.key }) {
                    guard let kind = LFSActionTable.Kind(rawValue: name), operation.allowedActions.contains(kind) else {
                        return .failure(Problem("the upstream's answer to an LFS \(operation.rawValue) holds a \(GitRepository.printable(String(name.prefix(40)))) action, which airlock does not pass on"))
                    }
                    guard let action = value as? [String: Any], let hrefText = action["href"] as? String,
                          let href = Href.parse(hrefText) else {
                        return .failure(Problem("the upstream's LFS \(name) action has no https href airlock can use"))
                    }
                    var headers = HTTPHeaders()
                    if let given = action["header"] {
                        guard let given = given as? [String: Any] else {
                            return .failure(Problem("the upstream's LFS \(name) action has a header that is not a JSON object"))
                        }
                        for (headerName, headerValue) in given.sorted(by: { $0.key < $1.key }) {
                            guard let value = headerValue as? String, isToken(headerName), isFieldValue(value) else {
                                return .failure(Problem("the upstream's LFS \(name) action has a header airlock cannot send"))
                            }
                            headers.add(name: headerName, value: value)
                        }
                    }
                    pending.append((index, kind, href, headers, lifetime(of: action, now: now)))
                }
                entry["actions"] = [String: Any]()
                entry["authenticated"] = true
            }
            rewritten.append(entry)
        }
        for action in pending {
            let registration = register(action.kind, action.href, action.headers, action.lifetime)
            var actions = rewritten[action.index]["actions"] as? [String: Any] ?? [:]
            actions[action.kind.rawValue] = ["href": registration.url, "expires_in": registration.expiresIn] as [String: Any]
            rewritten[action.index]["actions"] = actions
        }
        object["objects"] = rewritten
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            return .failure(Problem("the upstream's LFS batch response cannot be written back"))
        }
        return .success(String(decoding: data, as: UTF8.self))
    }

    /// The lifetime the upstream gave an action, in seconds from `now`: the shorter of
    /// `expires_in` and `expires_at` (RFC 3339), `nil` when it gave neither.
    static func lifetime(of action: [String: Any], now: Date) -> Int? {
        var seconds: Int?
        if let given = action["expires_in"] as? NSNumber {
            seconds = Int(clamping: given.int64Value)
        }
        if let text = action["expires_at"] as? String, let date = parseDate(text) {
            let until = Int(clamping: Int64(date.timeIntervalSince(now).rounded(.down)))
            seconds = min(seconds ?? until, until)
        }
        return seconds
    }

    private static func parseDate(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    /// An HTTP header name (RFC 9110 token).
    private static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 256 && text.utf8.allSatisfy { byte in
            byte > 0x20 && byte < 0x7F && !"()<>@,;:\\\"/[]?={}".utf8.contains(byte)
        }
    }

    /// A header value: visible ASCII, spaces and tabs, no line breaks.
    private static func isFieldValue(_ text: String) -> Bool {
        text.utf8.count <= 8192 && text.utf8.allSatisfy { ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x09 }
    }
}
