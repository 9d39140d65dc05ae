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

    private let policy: PolicyStore
    private let responder: DNSResponder
    private let audit: AuditLog

    /// - Parameters:
    ///   - policy: the sandbox's policy; read on every query, so reloads apply at once.
    ///   - gatewayAddress: the address allowed names resolve to.
    ///   - audit: where `dns_deny` events go.
    package init(policy: PolicyStore, gatewayAddress: IPAddress, audit: AuditLog) {
        self.policy = policy
        self.responder = DNSResponder(gatewayAddress: gatewayAddress)
        self.audit = audit
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
        context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: buffer)), promise: nil)
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A failed send to one client (ICMP unreachable surfaces as an error) must not
        // close the listener.
    }
}
