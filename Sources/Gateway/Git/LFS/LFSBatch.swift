import FoundationEssentials
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
        guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(body)) else {
            return .failure(Problem("the LFS batch request is not a JSON object"))
        }
        guard case .string(let text)? = object["operation"] else {
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
        guard case .object(var object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView)) else {
            return .failure(Problem("the upstream's LFS batch response is not a JSON object"))
        }
        if let transfer = object["transfer"] {
            guard case .string("basic") = transfer else {
                return .failure(Problem("the upstream chose an LFS transfer adapter other than basic"))
            }
        }
        guard case .array(let objects)? = object["objects"] else {
            return .failure(Problem("the upstream's LFS batch response has no objects list"))
        }
        var pending: [(index: Int, kind: LFSActionTable.Kind, href: Href, headers: HTTPHeaders, lifetime: Int?)] = []
        var rewritten: [[String: JSONValue]] = []
        for (index, item) in objects.enumerated() {
            guard case .object(var entry) = item else {
                return .failure(Problem("the upstream's LFS batch response has an object that is not a JSON object"))
            }
            if let actions = entry["actions"] {
                guard case .object(let actions) = actions else {
                    return .failure(Problem("the upstream's LFS batch response has actions that are not a JSON object"))
                }
                for (name, value) in actions.sorted(by: { $0.key < $1.key }) {
                    guard let kind = LFSActionTable.Kind(rawValue: name), operation.allowedActions.contains(kind) else {
                        return .failure(Problem("the upstream's answer to an LFS \(operation.rawValue) holds a \(GitRepository.printable(String(name.prefix(40)))) action, which airlock does not pass on"))
                    }
                    guard case .object(let action) = value, case .string(let hrefText)? = action["href"],
                          let href = Href.parse(hrefText) else {
                        return .failure(Problem("the upstream's LFS \(name) action has no https href airlock can use"))
                    }
                    var headers = HTTPHeaders()
                    if let given = action["header"] {
                        guard case .object(let given) = given else {
                            return .failure(Problem("the upstream's LFS \(name) action has a header that is not a JSON object"))
                        }
                        for (headerName, headerValue) in given.sorted(by: { $0.key < $1.key }) {
                            guard case .string(let value) = headerValue, isToken(headerName), isFieldValue(value) else {
                                return .failure(Problem("the upstream's LFS \(name) action has a header airlock cannot send"))
                            }
                            headers.add(name: headerName, value: value)
                        }
                    }
                    pending.append((index, kind, href, headers, lifetime(of: action, now: now)))
                }
                entry["actions"] = .object([:])
                entry["authenticated"] = .bool(true)
            }
            rewritten.append(entry)
        }
        for action in pending {
            let registration = register(action.kind, action.href, action.headers, action.lifetime)
            var actions: [String: JSONValue] = [:]
            if case .object(let kept)? = rewritten[action.index]["actions"] { actions = kept }
            actions[action.kind.rawValue] = .object(["href": .string(registration.url), "expires_in": .int(Int64(registration.expiresIn))])
            rewritten[action.index]["actions"] = .object(actions)
        }
        object["objects"] = .array(rewritten.map { .object($0) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(JSONValue.object(object)) else {
            return .failure(Problem("the upstream's LFS batch response cannot be written back"))
        }
        return .success(String(decoding: data, as: UTF8.self))
    }

    /// The lifetime the upstream gave an action, in seconds from `now`: the shorter of
    /// `expires_in` and `expires_at` (RFC 3339), `nil` when it gave neither.
    static func lifetime(of action: [String: JSONValue], now: Date) -> Int? {
        var seconds: Int?
        if let given = action["expires_in"]?.integer {
            seconds = given
        }
        if case .string(let text)? = action["expires_at"], let date = parseDate(text) {
            let interval = date.timeIntervalSince(now).rounded(.down)
            let until = interval >= 0x1p62 ? 1 << 62 : interval <= -0x1p62 ? -(1 << 62) : Int(interval)
            seconds = min(seconds ?? until, until)
        }
        return seconds
    }

    /// An RFC 3339 date-time (`2023-11-14T22:15:20Z`, `…20.5+01:00`), as the LFS API writes
    /// `expires_at`; `nil` for anything else.
    static func parseDate(_ text: String) -> Date? {
        let b = Array(text.utf8)
        func digits(_ at: Int, _ count: Int) -> Int? {
            guard at + count <= b.count else { return nil }
            var value = 0
            for byte in b[at..<(at + count)] {
                guard byte >= 0x30 && byte <= 0x39 else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            return value
        }
        func byte(_ at: Int, _ allowed: String) -> Bool { at < b.count && allowed.utf8.contains(b[at]) }
        guard let year = digits(0, 4), byte(4, "-"), let month = digits(5, 2), byte(7, "-"), let day = digits(8, 2),
              byte(10, "Tt"), let hour = digits(11, 2), byte(13, ":"), let minute = digits(14, 2), byte(16, ":"),
              let second = digits(17, 2),
              (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
              hour <= 23, minute <= 59, second <= 59 else { return nil }
        var at = 19
        var fraction = 0.0
        if byte(at, ".") {
            at += 1
            var scale = 0.1
            let start = at
            while at < b.count, b[at] >= 0x30 && b[at] <= 0x39 {
                fraction += Double(b[at] - 0x30) * scale
                scale /= 10
                at += 1
            }
            guard at > start else { return nil }
        }
        var offset = 0
        if byte(at, "Zz") {
            at += 1
        } else if byte(at, "+-"), let zoneHour = digits(at + 1, 2), byte(at + 3, ":"), let zoneMinute = digits(at + 4, 2),
                  zoneHour <= 23, zoneMinute <= 59 {
            offset = (zoneHour * 60 + zoneMinute) * 60 * (b[at] == UInt8(ascii: "-") ? -1 : 1)
            at += 6
        } else {
            return nil
        }
        guard at == b.count else { return nil }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
    private static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
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
