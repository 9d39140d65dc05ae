import NIOCore

/// Serves DNS over UDP: one datagram in, at most one datagram back to its sender.
///
/// Every query is answered from the current policy of the store; nothing is forwarded.
/// Refused names are audited as `dns_deny`.
package final class DNSUDPHandler: ChannelInboundHandler {
    package typealias InboundIn = AddressedEnvelope<ByteBuffer>
    package typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    /// Datagrams larger than this are dropped unread (a query is a few hundred bytes;
    /// EDNS allows up to 4096).
    package static let maximumQuerySize = 4096

    /// Datagrams read per system call (`recvmmsg`) when the channel supports it.
    package static let datagramsPerRead = 16

    private let policy: PolicyStore
    private let responder: DNSResponder
    private let audit: AuditLog
    private var flushPending = false

    /// - Parameters:
    ///   - policy: the sandbox's policy; read on every query, so reloads apply at once.
    ///   - gatewayAddress: the address allowed names resolve to.
    ///   - audit: where `dns_deny` events go.
    package init(policy: PolicyStore, gatewayAddress: IPAddress, audit: AuditLog) {
        self.policy = policy
        self.responder = DNSResponder(gatewayAddress: gatewayAddress)
        self.audit = audit
    }

    /// Asks the socket channel to read several datagrams per system call, each with room
    /// for `maximumQuerySize` bytes. Channels without these options (tests) are unaffected.
    package func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        channel.setOption(ChannelOptions.recvAllocator,
                          value: FixedSizeRecvByteBufferAllocator(capacity: Self.datagramsPerRead * Self.maximumQuerySize))
            .flatMap { channel.setOption(ChannelOptions.datagramVectorReadMessageCount, value: Self.datagramsPerRead) }
            .whenComplete { _ in }
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.data.readableBytes <= Self.maximumQuerySize,
              let query = envelope.data.getBytes(at: envelope.data.readerIndex, length: envelope.data.readableBytes) else {
            return
        }
        let outcome = responder.respond(to: query, policy: policy.current)
        if let event = outcome.audit { audit.record(event) }
        guard let response = outcome.response else { return }
        let buffer = context.channel.allocator.buffer(bytes: response)
        // Answers are flushed together when the read batch ends (one `sendmmsg`).
        context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: buffer)), promise: nil)
        flushPending = true
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        if flushPending {
            flushPending = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A failed send to one client (ICMP unreachable surfaces as an error) must not
        // close the listener.
    }
}
