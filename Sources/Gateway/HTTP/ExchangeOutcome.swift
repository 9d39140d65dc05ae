import NIOCore

/// How one forwarded exchange ended; handed to `UpstreamExchange.completion`.
package struct ExchangeOutcome: Sendable, Equatable {
    /// The status sent to the client (upstream's, or the gateway's own on failure);
    /// `nil` if the connection was aborted before a response head was sent.
    package var status: Int?
    /// Request body bytes sent upstream.
    package var bytesUp: UInt64
    /// Response body bytes sent to the client.
    package var bytesDown: UInt64
    /// Wall time from the request head to the end of the exchange.
    package var milliseconds: Int
    /// Why the exchange failed (one line, no secrets); `nil` on success.
    package var failure: String?

    /// Creates an outcome.
    package init(status: Int?, bytesUp: UInt64, bytesDown: UInt64, milliseconds: Int, failure: String? = nil) {
        self.status = status
        self.bytesUp = bytesUp
        self.bytesDown = bytesDown
        self.milliseconds = milliseconds
        self.failure = failure
    }
}

extension NIODeadline {
    /// Whole milliseconds from this deadline to now: an exchange's or tunnel's duration.
    package var millisecondsAgo: Int {
        Int((NIODeadline.now() - self).nanoseconds / 1_000_000)
    }
}
