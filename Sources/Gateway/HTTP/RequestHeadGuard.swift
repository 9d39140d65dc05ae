import NIOCore
import NIOHTTP1

/// Bounds how large and how slow a request head may be, ahead of the HTTP decoder.
///
/// Counts the raw bytes of each request head before the decoder sees them: while the
/// decoder is between requests or inside a head, it is fed at most `maxBytes` of them; if
/// no head came out of those, the head is too large and the connection gets `431` and is
/// closed (the decoder never sees the rest, so an oversized head never reaches an
/// upstream, whether it arrived in one read or many, first or pipelined). The forwarder
/// tells the guard what the decoder produced (`headDecoded`, `requestDecoded`).
///
/// It also arms deadlines: a connection that opened, or started a head, and did not
/// complete it within `timeout` gets `408` (or is closed silently if it sent nothing);
/// a kept-alive connection whose next request has not started within `keepAliveTimeout`
/// is closed silently. The answers are written as raw bytes because the guard sits
/// before the encoder; they wait until no other response is in flight.
package final class RequestHeadGuard: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let maxBytes: Int
    private let timeout: TimeAmount
    private let keepAliveTimeout: TimeAmount?
    /// The forwarder waits for a head (for the deadlines).
    private var awaitingHead = true
    private var bytesSinceHead = 0
    /// The decoder is between requests or inside a head (for the size limit).
    private var decodingHead = true
    /// Bytes fed to the decoder since it last finished a request.
    private var headBytes = 0
    /// The connection became a tunnel: bytes are no longer HTTP.
    private var tunnelling = false
    /// Body bytes of the current request not yet fed to the decoder (`Content-Length`).
    private var bodyRemaining: Int?
    /// How much of a blank line the last bytes fed were: 0 none, 1 after `LF`, 2 after `LF CR`.
    private var blankLineState = 0
    /// An oversized head was found while a response was in flight; answered once the
    /// forwarder is idle.
    private var oversized = false
    private var deadline: Scheduled<Void>?
    private var keepAliveDeadline: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    private var refused = false

    /// - Parameters:
    ///   - maxBytes: the largest head accepted.
    ///   - timeout: the time allowed for a complete head.
    ///   - keepAliveTimeout: the time a kept-alive connection may wait for its next
    ///     request to start; `nil` leaves it to the idle timeout.
    package init(maxBytes: Int, timeout: TimeAmount, keepAliveTimeout: TimeAmount? = nil) {
        self.maxBytes = maxBytes
        self.timeout = timeout
        self.keepAliveTimeout = keepAliveTimeout
    }

    /// Whether the guard answered the connection itself (`431`, `408`) and is closing it.
    package var hasAnswered: Bool { refused }

    /// Called by the forwarder when it takes a complete head.
    package func headReceived() {
        awaitingHead = false
        bytesSinceHead = 0
        deadline?.cancel()
        deadline = nil
        keepAliveDeadline?.cancel()
        keepAliveDeadline = nil
    }

    /// Called by the forwarder when it is ready for the next request on the connection.
    /// The header deadline starts with the first byte of that request; until then the
    /// keep-alive deadline runs.
    /// - Returns: false when the guard answered `431` for a pipelined head and closes the
    ///   connection: the forwarder must not start another request.
    @discardableResult
    package func awaitNextHead() -> Bool {
        awaitingHead = true
        bytesSinceHead = 0
        if oversized, let context {
            refuseOversized(context: context)
            return false
        }
        armKeepAliveDeadline()
        return true
    }

    /// Called by the forwarder, synchronously, when the decoder produced a request head.
    /// - Parameters:
    ///   - isConnect: the bytes after this request are a tunnel's, not HTTP.
    ///   - bodyLength: the body's `Content-Length`; `nil` for a chunked body.
    package func headDecoded(isConnect: Bool, bodyLength: Int?) {
        decodingHead = false
        headBytes = 0
        blankLineState = 0
        bodyRemaining = bodyLength
        if isConnect { tunnelling = true }
    }

    /// Called by the forwarder, synchronously, when the decoder produced a request's end.
    package func requestDecoded() {
        guard !tunnelling else { return }
        decodingHead = true
        headBytes = 0
        blankLineState = 0
        bodyRemaining = nil
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { armDeadline(context: context) }
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        keepAliveDeadline?.cancel()
        keepAliveDeadline = nil
        self.context = nil
    }

    package func channelActive(context: ChannelHandlerContext) {
        armDeadline(context: context)
        context.fireChannelActive()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        keepAliveDeadline?.cancel()
        keepAliveDeadline = nil
        context.fireChannelInactive()
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if refused || oversized { return }
        var bytes = unwrapInboundIn(data)
        if awaitingHead && bytes.readableBytes > 0 {
            keepAliveDeadline?.cancel()
            keepAliveDeadline = nil
            if deadline == nil { armDeadline(context: context) }
            bytesSinceHead += bytes.readableBytes
        }
        // The bytes go to the decoder in pieces that end where a head or a request can
        // end (after a blank line, or after a body's last byte), so that what the
        // decoder produced from each piece says exactly how many head bytes it took. It
        // runs synchronously: the forwarder has told the guard before the next piece.
        while bytes.readableBytes > 0 {
            if refused || oversized || self.context == nil { return }
            if tunnelling {
                context.fireChannelRead(wrapInboundOut(bytes))
                return
            }
            var length = bytes.readableBytes
            if decodingHead {
                let room = maxBytes - headBytes
                guard room > 0 else {
                    headTooLarge(context: context)
                    return
                }
                length = lengthThroughBlankLine(in: bytes, limit: min(length, room))
                headBytes += length
            } else if let remaining = bodyRemaining, remaining > 0 {
                length = min(length, remaining)
                bodyRemaining = remaining - length
            } else {
                // A chunked body: its last chunk ends with a blank line.
                length = lengthThroughBlankLine(in: bytes, limit: length)
            }
            context.fireChannelRead(wrapInboundOut(bytes.readSlice(length: length)!))
        }
        if decodingHead && !tunnelling && !refused && !oversized && headBytes >= maxBytes { headTooLarge(context: context) }
    }

    /// How many of `bytes`' first `limit` bytes to feed: through the first blank line
    /// (`LF LF` or `LF CR LF`, the end of a head or of a chunked body), else all `limit`.
    /// Tracks a blank line split over reads.
    private func lengthThroughBlankLine(in bytes: ByteBuffer, limit: Int) -> Int {
        bytes.withUnsafeReadableBytes { raw in
            var index = 0
            while index < limit {
                let byte = raw[index]
                index += 1
                switch (blankLineState, byte) {
                case (_, UInt8(ascii: "\n")) where blankLineState != 0:
                    blankLineState = 0
                    return index
                case (_, UInt8(ascii: "\n")):
                    blankLineState = 1
                case (1, UInt8(ascii: "\r")):
                    blankLineState = 2
                default:
                    blankLineState = 0
                }
            }
            return limit
        }
    }

    /// The decoder took `maxBytes` of a head without finishing it.
    private func headTooLarge(context: ChannelHandlerContext) {
        oversized = true
        if awaitingHead { refuseOversized(context: context) }
    }

    private func refuseOversized(context: ChannelHandlerContext) {
        refuse(context: context, Refusal(.requestHeaderFieldsTooLarge, reason: "request head larger than \(maxBytes) bytes",
                                         hint: "the gateway's limit is --max-header-bytes"))
    }

    private func armKeepAliveDeadline() {
        guard let keepAliveTimeout, let context, keepAliveDeadline == nil else { return }
        keepAliveDeadline = context.eventLoop.scheduleTask(in: keepAliveTimeout) { [weak self] in
            guard let self, let context = self.context, self.awaitingHead, self.bytesSinceHead == 0 else { return }
            self.keepAliveDeadline = nil
            context.close(promise: nil)
        }
    }

    private func armDeadline(context: ChannelHandlerContext) {
        guard deadline == nil, awaitingHead else { return }
        deadline = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, let context = self.context, self.awaitingHead else { return }
            self.deadline = nil
            if self.bytesSinceHead == 0 {
                context.close(promise: nil)
            } else {
                self.refuse(context: context, Refusal(.requestTimeout, reason: "request head not complete within the gateway's header timeout"))
            }
        }
    }

    private func refuse(context: ChannelHandlerContext, _ refusal: Refusal) {
        guard !refused else { return }
        refused = true
        deadline?.cancel()
        deadline = nil
        keepAliveDeadline?.cancel()
        keepAliveDeadline = nil
        let response = refusal.response
        var text = "HTTP/1.1 \(response.status.code) \(response.status.reasonPhrase)\r\n"
        for (name, value) in response.headers { text += "\(name): \(value)\r\n" }
        text += "Content-Length: \(response.body.utf8.count)\r\nConnection: close\r\n\r\n" + response.body
        let buffer = context.channel.allocator.buffer(string: text)
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in context.close(promise: nil) }
    }
}

extension RequestHeadGuard {
    /// Sits right after the HTTP decoder and tells the guard, synchronously, what the
    /// decoder produced from the bytes the guard fed it: a head (and whether the bytes after
    /// its request are a tunnel's), a request's end.
    package final class DecodedParts: ChannelInboundHandler, RemovableChannelHandler {
        package typealias InboundIn = HTTPServerRequestPart
        package typealias InboundOut = HTTPServerRequestPart

        private let watched: RequestHeadGuard

        /// - Parameter headGuard: the guard ahead of the decoder.
        package init(_ headGuard: RequestHeadGuard) {
            self.watched = headGuard
        }

        package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                let chunked = head.headers[canonicalForm: "transfer-encoding"].contains { $0.lowercased() == "chunked" }
                let length = chunked ? nil : (head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0)
                watched.headDecoded(isConnect: head.method == .CONNECT, bodyLength: length)
            case .end:
                watched.requestDecoded()
            case .body:
                break
            }
            context.fireChannelRead(data)
        }
    }
}
