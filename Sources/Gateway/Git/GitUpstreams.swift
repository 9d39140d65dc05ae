import NIOCore
import NIOSSL
import GatewayCore

/// Where each git host's requests go: an HTTPS URL and one TLS client context.
///
/// TLS verifies the certificate chain against the system trust store plus an optional CA
/// file (GitHub Enterprise, tests), and verifies the host name (or the IP address, for an
/// IP-literal URL). Plain `http://` upstreams are refused: the real credential never
/// travels unencrypted.
package struct GitUpstreams: Sendable {
    /// One git host's upstream.
    package struct Upstream: Sendable {
        /// The git host as the sandbox names it (`github.com`), lowercase.
        package let gitHost: String
        /// The upstream URL's host (a name or an IP literal without brackets).
        package let host: String
        package let port: Int
        /// The URL's path, without a trailing slash (empty for the root).
        package let basePath: String
        /// Set when `host` is an IP literal: the address to connect to, no lookup.
        package let address: SocketAddress?
        package let tls: UpstreamTLS

        /// The `Host` header value for upstream requests.
        package var hostHeader: String {
            let name = host.contains(":") ? "[\(host)]" : host
            return port == 443 ? name : "\(name):\(port)"
        }

        /// `https://host[:port]/base`, for messages.
        package var url: String { "https://\(hostHeader)\(basePath)" }

        /// The target the forwarder dials.
        package var target: UpstreamTarget {
            UpstreamTarget(host: host, port: port, tls: tls, address: address)
        }
    }

    /// A `HOST=URL` pair as given on the command line or in the configuration file.
    package struct Mapping: Sendable, Equatable, CustomStringConvertible {
        package var gitHost: String
        package var url: String

        package init(gitHost: String, url: String) {
            self.gitHost = gitHost
            self.url = url
        }

        /// Parses `HOST=URL` (or just `HOST`, meaning `https://HOST`).
        /// - Throws: `GitUpstreams.ConfigurationError` naming the value.
        package init(parsing text: String) throws {
            if let eq = text.firstIndex(of: "=") {
                gitHost = String(text[..<eq]).lowercased()
                url = String(text[text.index(after: eq)...])
            } else {
                gitHost = text.lowercased()
                url = "https://\(gitHost)"
            }
            do {
                try GitRepository.checkHost(gitHost)
            } catch let error as GitRepository.Invalid {
                throw ConfigurationError(description: "--git-upstream \(GitRepository.printable(text)): \(error.description)")
            }
        }

        package var description: String { "\(gitHost)=\(url)" }
    }

    /// A configuration that cannot be used; one line naming the value.
    package struct ConfigurationError: Error, CustomStringConvertible, Equatable {
        package let description: String
    }

    private let upstreams: [String: Upstream]

    /// The configured git hosts, sorted.
    package var hosts: [String] { upstreams.keys.sorted() }

    /// The upstream for a (lowercase) git host.
    package func upstream(for gitHost: String) -> Upstream? { upstreams[gitHost.lowercased()] }

    /// Builds the upstreams; `github.com` is configured by default when `mappings` is empty.
    /// - Parameters:
    ///   - mappings: `HOST=URL` pairs; a host named twice is an error.
    ///   - caFile: a PEM file of extra trusted CAs, added to the system trust store.
    /// - Throws: `ConfigurationError` for a bad URL, a duplicate host, or an unreadable CA file.
    package init(mappings: [Mapping], caFile: String? = nil) throws {
        let tls: UpstreamTLS
        do {
            tls = try UpstreamTLS(caFile: caFile)
        } catch let error as UpstreamTLS.Invalid {
            throw ConfigurationError(description: error.description)
        }
        try self.init(mappings: mappings, tls: tls)
    }

    /// Builds the upstreams over a TLS client context shared with other upstreams (routes).
    /// - Throws: `ConfigurationError` for a bad URL or a duplicate host.
    package init(mappings: [Mapping], tls context: UpstreamTLS) throws {
        let all = mappings.isEmpty ? [Mapping(gitHost: "github.com", url: "https://github.com")] : mappings
        var upstreams: [String: Upstream] = [:]
        for mapping in all {
            guard upstreams[mapping.gitHost] == nil else {
                throw ConfigurationError(description: "--git-upstream: \(mapping.gitHost) is configured twice")
            }
            upstreams[mapping.gitHost] = try Self.parse(mapping, tls: context)
        }
        self.upstreams = upstreams
    }

    private static func parse(_ mapping: Mapping, tls: UpstreamTLS) throws -> Upstream {
        let shown = "--git-upstream \(mapping.gitHost)=\(GitRepository.printable(mapping.url))"
        let parsed: HTTPSBaseURL
        do {
            parsed = try HTTPSBaseURL.parse(mapping.url, plainWords: "the URL must start with https:// (the credential never travels unencrypted)")
        } catch {
            throw ConfigurationError(description: "\(shown): \(GitRepository.printable(error.words))")
        }
        let (hostText, port) = (parsed.host, parsed.port)
        let address = try? SocketAddress(ipAddress: hostText, port: port)
        if address == nil {
            do {
                try GitRepository.checkHost(hostText)
            } catch {
                throw ConfigurationError(description: "\(shown): invalid host \(GitRepository.printable(hostText))")
            }
        }
        return Upstream(gitHost: mapping.gitHost, host: hostText, port: port, basePath: parsed.basePath, address: address, tls: tls)
    }
}
