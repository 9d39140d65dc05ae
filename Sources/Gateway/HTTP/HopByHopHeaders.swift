import GatewayCore
import NIOHTTP1

/// The headers that belong to one connection and must not cross the gateway.
package enum HopByHopHeaders {
    /// Headers always removed: RFC 9110 §7.6.1's list, the `Proxy-*` family, and the
    /// framing headers, which the forwarder sets itself for each side.
    package static let fixed: Set<String> = [
        "connection", "keep-alive", "te", "trailer", "upgrade", "transfer-encoding",
        "proxy-connection", "proxy-authorization", "proxy-authenticate",
    ]

    /// `headers` without hop-by-hop headers: the fixed list, anything starting with
    /// `proxy-`, and every header named in `Connection` except those in `kept` (lowercase
    /// names of headers the gateway set itself, which the request cannot take away).
    package static func stripped(_ headers: HTTPHeaders, keeping kept: Set<String> = []) -> HTTPHeaders {
        var named = Set<String>()
        for value in headers[canonicalForm: "connection"] {
            named.insert(value.lowercased().trimmingWhitespace())
        }
        named.subtract(kept)
        var out = HTTPHeaders()
        for (name, value) in headers {
            let lower = name.lowercased()
            if fixed.contains(lower) || lower.hasPrefix("proxy-") || named.contains(lower) { continue }
            out.add(name: name, value: value)
        }
        return out
    }
}
