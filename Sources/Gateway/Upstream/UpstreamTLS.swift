import NIOConcurrencyHelpers
import NIOSSL

/// The TLS client context upstreams are dialled with, made when the first TLS upstream is
/// dialled rather than when the gateway starts.
///
/// A context that verifies against the system trust store parses the whole store (about
/// 150 certificates, 200 KB of PEM) when it is made: a few milliseconds and several hundred
/// KB of memory that a gateway which never dials an HTTPS upstream (`airlock run -- true`,
/// a sandbox using only CONNECT tunnels) does not need. The extra CAs of `--upstream-ca` are
/// still read and checked when the gateway starts, so a bad file is refused before anything
/// runs; only the system store is read later. If making the context fails then (an
/// unreadable system store), the dial fails with that reason and the next dial tries again:
/// nothing is ever sent without verification.
///
/// Compared by identity: connections dialled through the same instance may be reused for
/// each other (`UpstreamPool.Key`).
package final class UpstreamTLS: Sendable {
    /// The CAs of `--upstream-ca`, trusted besides the system store.
    private let extraRoots: [NIOSSLCertificate]
    private let made: NIOLockedValueBox<NIOSSLContext?>

    /// A context with full verification (chain and host name, or IP address for an
    /// IP-literal upstream) against the system trust store plus the CAs in `caFile`.
    /// - Throws: `UpstreamTLS.Invalid` for an unreadable CA file or one without a certificate.
    package init(caFile: String?) throws {
        var extraRoots: [NIOSSLCertificate] = []
        if let caFile {
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMFile(caFile)
            } catch {
                throw Invalid(description: "--upstream-ca \(caFile): cannot read a PEM certificate (\(error))")
            }
            guard !certificates.isEmpty else {
                throw Invalid(description: "--upstream-ca \(caFile): no PEM certificate in the file")
            }
            extraRoots = certificates
        }
        self.extraRoots = extraRoots
        made = NIOLockedValueBox(nil)
    }

    /// Wraps a context that is already made (tests, and callers with their own configuration).
    package init(context: NIOSSLContext) {
        extraRoots = []
        made = NIOLockedValueBox(context)
    }

    /// Whether the context has been made (the system trust store read).
    package var isMade: Bool { made.withLockedValue { $0 != nil } }

    /// The context, made on the first call.
    /// - Throws: NIOSSL's error when the trust store cannot be loaded.
    package func context() throws -> NIOSSLContext {
        try made.withLockedValue { made in
            if let made { return made }
            // The configuration too is made here: NIOSSL's defaults (the cipher list joined
            // into a string) are a tenth of the instructions `run` spends before it forks.
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .fullVerification
            // Kept connections are closed after idling; never wait long for the peer's goodbye.
            configuration.shutdownTimeout = UpstreamPool.tlsShutdownTimeout
            if !extraRoots.isEmpty { configuration.additionalTrustRoots = [.certificates(extraRoots)] }
            let context = try NIOSSLContext(configuration: configuration)
            made = context
            return context
        }
    }

    /// An `--upstream-ca` file that cannot be used; one line naming it.
    package struct Invalid: Error, CustomStringConvertible, Equatable {
        package let description: String
    }
}
