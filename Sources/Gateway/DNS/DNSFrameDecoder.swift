import NIOCore

/// Splits a DNS-over-TCP stream into messages: each is preceded by its length as two
/// big-endian bytes (RFC 1035 section 4.2.2).
///
/// Bounded: a frame longer than `maximumMessageLength` or of length zero is an error and
/// the connection is closed; at most one frame is buffered.
package struct DNSFrameDecoder: ByteToMessageDecoder {
    package typealias InboundOut = ByteBuffer

    /// Why a stream was refused.
    package enum FrameError: Error, Equatable {
        case emptyMessage
        case messageTooLong(Int)
    }

    /// The largest message accepted.
    package let maximumMessageLength: Int

    package init(maximumMessageLength: Int = 65535) {
        self.maximumMessageLength = maximumMessageLength
    }

    package mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) else { return .needMoreData }
        guard length > 0 else { throw FrameError.emptyMessage }
        guard Int(length) <= maximumMessageLength else { throw FrameError.messageTooLong(Int(length)) }
        guard buffer.readableBytes >= 2 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2)
        guard let message = buffer.readSlice(length: Int(length)) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(message))
        return .continue
    }

    package mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A partial frame at the end of the stream is dropped.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}
