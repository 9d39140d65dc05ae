import NIOSSL
import GatewayCore

/// How route upstreams are verified: one TLS client context with full verification (chain
/// and host name, or IP address for an IP-literal upstream) against the system trust store
/// plus the CAs of `--upstream-ca`. Routes are HTTPS only.
package struct RouteUpstreamTrust: Sendable {
    /// The client context every route upstream is dialled with.
    package let context: NIOSSLContext

    /// - Parameter caFile: a PEM file of extra trusted CAs.
    /// - Throws: `CredentialRoute.Invalid` for an unreadable or empty CA file.
    package init(caFile: String?) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .fullVerification
        configuration.shutdownTimeout = UpstreamPool.tlsShutdownTimeout
        if let caFile {
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMFile(caFile)
            } catch {
                throw CredentialRoute.Invalid(description: "--upstream-ca \(caFile): cannot read a PEM certificate (\(error))")
            }
            guard !certificates.isEmpty else {
                throw CredentialRoute.Invalid(description: "--upstream-ca \(caFile): no PEM certificate in the file")
            }
            configuration.additionalTrustRoots = [.certificates(certificates)]
        }
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw CredentialRoute.Invalid(description: "cannot set up TLS for route upstreams: \(error)")
        }
    }
}
