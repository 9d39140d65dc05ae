import NIOCore
import GatewayCore

/// Serves DNS over UDP: one datagram in, at most one datagram back to its sender.
///
/// Every query is answered from the current policy of the store (taken once per read
/// batch); nothing is forwarded. Refused names are audited as `dns_deny`.
///
/// Work is done per read batch (what the channel reads before `channelReadComplete`: up to
/// four `recvmmsg` calls of `datagramsPerRead` datagrams each): each query is answered in
/// place into one buffer shared by the batch; when the batch ends, its `dns_deny` lines
/// are written to the audit log together (one `write(2)`), and only then are its answers
/// sent (with `sendmmsg`), so a client that got NXDOMAIN finds the line already in the log.
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

    /// The policy's name rules, taken from the store once per read batch and rebuilt
    /// only when a reload replaced them.
    private var rules: DNSNameRules?
    private var batchStarted = false
    /// The answers of the current read batch, back to back; sliced when the batch ends
    /// (slicing earlier would make the next write copy the buffer).
    private var answers: ByteBuffer?
    /// Where each answer of `answers` goes: recipient, offset and length.
    private var pending: [(to: SocketAddress, at: Int, length: Int)] = []
    /// The `dns_deny` events of the current read batch.
    private var denials: [AuditEvent] = []

    /// - Parameters:
    ///   - policy: the sandbox's policy; read once per read batch, so a reload applies
    ///     from the next batch on.
    ///   - gatewayAddress: the address allowed names resolve to.
    ///   - audit: where `dns_deny` events go.
    ///   - gatewayNames: names answered with the gateway address whatever the policy (the git hosts).
    package init(policy: PolicyStore, gatewayAddress: IPAddress, audit: AuditLog, gatewayNames: [String] = []) {
        self.policy = policy
        self.responder = DNSResponder(gatewayAddress: gatewayAddress, gatewayNames: gatewayNames)
        self.audit = audit
        pending.reserveCapacity(Self.datagramsPerRead)
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

    /// Lines of a batch cut short are still written.
    package func handlerRemoved(context: ChannelHandlerContext) {
        writeDenials()
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.data.readableBytes <= Self.maximumQuerySize else { return }
        if answers == nil {
            answers = context.channel.allocator.buffer(capacity: Self.datagramsPerRead * 128)
        }
        if !batchStarted {
            batchStarted = true
            let current = policy.current
            if rules?.describes(current) != true { rules = DNSNameRules(current) }
        }
        let start = answers!.writerIndex
        let reply = envelope.data.withUnsafeReadableBytes { query in
            responder.respond(to: query, rules: rules!, into: &answers!)
        }
        guard case .answer(let event) = reply else { return }
        if let event { denials.append(event) }
        pending.append((envelope.remoteAddress, start, answers!.writerIndex - start))
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        batchStarted = false
        // Every reply of the batch is pending; those that are not denials were answered.
        audit.metrics?.dnsAnswered(pending.count - denials.count)
        writeDenials()
        if let answers, !pending.isEmpty {
            for answer in pending {
                let data = answers.getSlice(at: answer.at, length: answer.length)!
                context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: answer.to, data: data)), promise: nil)
            }
            pending.removeAll(keepingCapacity: true)
            self.answers = nil
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    private func writeDenials() {
        guard !denials.isEmpty else { return }
        audit.record(contentsOf: denials)
        denials.removeAll(keepingCapacity: true)
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A failed send to one client (ICMP unreachable surfaces as an error) must not
        // close the listener.
    }
}
