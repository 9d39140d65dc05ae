import NIOCore
import NIOHTTP1

/// `CONNECT host:port` on the explicit proxy: decides, dials and hands the connection to
/// the tunnel sink; every other request passes on to the `HTTPForwarder` behind it.
///
/// An absolute-form `GET http://host/…` asking for a protocol upgrade (`Upgrade:` with
/// `Connection: upgrade`, as `ws://` clients send through a proxy) becomes a tunnel too:
/// decided like a request to `host:port`, the connection goes to the sink with the request
/// re-encoded in origin form as its first bytes, so the server's `101` and the frames
/// after it flow as they are (`wss://` goes through `CONNECT` already).
///
/// Sits right after the HTTP decoder. A `CONNECT` is answered in order: one that arrives
/// while earlier requests on the connection are unanswered waits for their responses
/// (counted as the forwarder writes them). Refusals and dial failures are HTTP answers
/// (`400`, `403`, `502`, `504`) and the connection closes. Once the upstream is connected
/// and the request has ended, the decoder is removed (the bytes it holds, sent after the
/// `CONNECT` head, are collected), and the connection leaves for the sink with the `200`
/// answer and those bytes. While it decides and dials it reads nothing more.
package final class ConnectHandler {
    private enum State {
        /// Requests pass on to the forwarder; `unanswered` of them have no response end yet.
        case forwarding(unanswered: Int)
        /// A `CONNECT` arrived before earlier requests were answered: its parts wait.
        case waiting(unanswered: Int, parts: [HTTPServerRequestPart])
        /// The router allowed the tunnel; dialling.
        case dialing(OpeningTunnel, head: HTTPRequestHead, requestEnded: Bool)
        /// Connected; waiting for the request's end.
        case connected(OpeningTunnel, head: HTTPRequestHead)
        /// The decoder is being removed; then the connection is handed off.
        case handingOff
        /// Answered with a refusal, handed off, or the client left.
        case done
    }

    private let opener: TunnelOpener
    private let upgrades: TunnelOpener?
    private let headGuard: RequestHeadGuard?
    private var state = State.forwarding(unanswered: 0)
    /// The re-encoded upgrade request, sent to the upstream first; nil for a `CONNECT`.
    private var upgradeRequest: [UInt8]?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    /// - Parameters:
    ///   - opener: decides, dials and hands off the tunnels (`via: .connect`).
    ///   - upgrades: decides, dials and hands off upgrade requests (`via: .proxy`); nil
    ///     passes them on to the forwarder.
    ///   - headGuard: the guard ahead of the decoder, told when a `CONNECT` head is taken.
    package init(opener: TunnelOpener, upgrades: TunnelOpener? = nil, headGuard: RequestHeadGuard? = nil) {
        self.opener = opener
        self.upgrades = upgrades
        self.headGuard = headGuard
    }

    /// Whether `head` asks for a protocol upgrade: `Upgrade` present and `Connection`
    /// naming it.
    static func isUpgrade(_ head: HTTPRequestHead) -> Bool {
        !head.headers[canonicalForm: "upgrade"].isEmpty
            && head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
    }

    private var isForwarding: Bool {
        if case .forwarding = state { return true }
        return false
    }

    /// Reads go on while requests pass on, and while a connected tunnel waits for its
    /// request's end; never while deciding, dialling or handing off.
    private var canRead: Bool {
        switch state {
        case .forwarding, .connected: return true
        case .waiting, .dialing, .handingOff, .done: return false
        }
    }

    // MARK: one CONNECT

    private func receive(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch state {
        case .forwarding(let unanswered):
            if case .head(let head) = part, head.method == .CONNECT || (upgrades != nil && Self.isUpgrade(head)) {
                if unanswered > 0 {
                    state = .waiting(unanswered: unanswered, parts: [part])
                } else {
                    start(head, context: context)
                }
                return
            }
            if case .head = part { state = .forwarding(unanswered: unanswered + 1) }
            context.fireChannelRead(NIOAny(part))
        case .waiting(let unanswered, var parts):
            parts.append(part)
            state = .waiting(unanswered: unanswered, parts: parts)
        case .dialing(let tunnel, let head, _):
            if case .end = part { state = .dialing(tunnel, head: head, requestEnded: true) }
        case .connected(let tunnel, let head):
            if case .end = part { handOff(tunnel, head: head, context: context) }
        case .handingOff, .done:
            break
        }
    }

    private func start(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        headGuard?.headReceived()
        if let problem = RequestValidation.problem(in: head) {
            refuse(Refusal(.badRequest, reason: problem, closeConnection: true).response, version: head.version, context: context)
            return
        }
        let authority: HostAndPort
        let opener: TunnelOpener
        if head.method == .CONNECT {
            opener = self.opener
            switch HostAndPort.parseAuthority(head.uri) {
            case .success(let parsed): authority = parsed
            case .failure(let problem):
                refuse(Refusal(.badRequest, reason: problem.description, closeConnection: true).response, version: head.version, context: context)
                return
            }
        } else {
            guard let upgrades else { return }
            opener = upgrades
            switch Self.upgradeRequest(head) {
            case .success(let (target, bytes)):
                authority = target
                upgradeRequest = bytes
            case .failure(let problem):
                refuse(Refusal(.badRequest, reason: problem.description, closeConnection: true).response, version: head.version, context: context)
                return
            }
        }
        switch opener.decide(host: authority.host, port: authority.port, for: context.channel) {
        case .refused(let response):
            refuse(response, version: head.version, context: context)
        case .allowed(let tunnel):
            state = .dialing(tunnel, head: head, requestEnded: false)
            tunnel.dial(on: context.eventLoop) { refusal in
                guard case .dialing(_, let head, let ended) = self.state, let context = self.context else { return }
                if let refusal {
                    self.refuse(refusal.response, version: head.version, context: context)
                } else if ended {
                    self.handOff(tunnel, head: head, context: context)
                } else {
                    self.state = .connected(tunnel, head: head)
                    self.resumeReading()
                }
            }
        }
    }

    /// Removes the decoder, collecting the bytes it still holds, then hands the connection
    /// to the sink with the `200` answer first.
    private func handOff(_ tunnel: OpeningTunnel, head: HTTPRequestHead, context: ChannelHandlerContext) {
        state = .handingOff
        let channel = context.channel
        let leftover = LeftoverBytes()
        let decoderRemoved = context.eventLoop.makePromise(of: Void.self)
        do {
            let pipeline = context.pipeline
            let decoder = try pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try pipeline.syncOperations.addHandler(leftover, position: .after(decoder))
            // Removing the decoder (done on the next loop tick) passes on any bytes it
            // still holds, sent after the CONNECT head; they reach `leftover`.
            pipeline.syncOperations.removeHandler(decoder, promise: decoderRemoved)
        } catch {
            state = .done
            tunnel.cancel()
            context.close(promise: nil)
            return
        }
        let upgradeRequest = self.upgradeRequest
        let answer = upgradeRequest == nil
            ? Array("HTTP/\(head.version.major).\(head.version.minor) 200 Connection established\r\n\r\n".utf8) : []
        decoderRemoved.futureResult.whenComplete { _ in
            self.state = .done
            tunnel.handOff(channel, toClient: answer, toUpstream: (upgradeRequest ?? []) + leftover.bytes,
                           answeredStatus: upgradeRequest == nil ? 200 : nil)
        }
    }

    /// The upstream and the bytes of an upgrade request in origin form: its hop-by-hop
    /// headers removed except `Upgrade` (with `Connection: Upgrade`), `Host` set to the
    /// target's authority. Only `http://` targets, without a body.
    static func upgradeRequest(_ head: HTTPRequestHead) -> Result<(HostAndPort, [UInt8]), HostAndPort.Problem> {
        let target: HostAndPort.AbsoluteTarget
        switch HostAndPort.parseAbsolute(head.uri) {
        case .success(let parsed): target = parsed
        case .failure(let problem): return .failure(problem)
        }
        guard target.scheme == "http" else {
            return .failure(HostAndPort.Problem(description: "malformed request: an upgrade through the proxy must be http:// (wss:// and https:// go through CONNECT)"))
        }
        guard head.method == .GET, head.headers[canonicalForm: "content-length"].allSatisfy({ $0 == "0" }),
              head.headers[canonicalForm: "transfer-encoding"].isEmpty else {
            return .failure(HostAndPort.Problem(description: "malformed request: an upgrade request is a GET without a body"))
        }
        var headers = HopByHopHeaders.stripped(head.headers)
        headers.remove(name: "host")
        var text = "GET \(target.originForm) HTTP/1.1\r\nHost: \(target.authorityText)\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        for value in head.headers[canonicalForm: "upgrade"] { text += "Upgrade: \(value)\r\n" }
        text += "Connection: Upgrade\r\n\r\n"
        return .success((target.authority, Array(text.utf8)))
    }

    /// Answers with `response` and closes the connection.
    private func refuse(_ response: LocalResponse, version: HTTPVersion, context: ChannelHandlerContext) {
        state = .done
        context.writeLocalAnswer(response.head(version: version, closing: true), body: response.body, close: true)
    }

    private func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    /// The forwarder answered a request: a waiting `CONNECT` starts once all are answered,
    /// on the next tick, after the forwarder has finished with its request.
    private func answered(context: ChannelHandlerContext) {
        switch state {
        case .forwarding(let unanswered):
            state = .forwarding(unanswered: max(0, unanswered - 1))
        case .waiting(let unanswered, let parts):
            guard unanswered <= 1 else {
                state = .waiting(unanswered: unanswered - 1, parts: parts)
                return
            }
            state = .forwarding(unanswered: 0)
            context.eventLoop.execute {
                guard let context = self.context, case .forwarding = self.state else { return }
                for part in parts { self.receive(part, context: context) }
                self.resumeReading()
            }
        default:
            break
        }
    }
}

extension ConnectHandler: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = HTTPServerRequestPart
    package typealias InboundOut = HTTPServerRequestPart
    package typealias OutboundIn = HTTPServerResponsePart
    package typealias OutboundOut = HTTPServerResponsePart

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receive(unwrapInboundIn(data), context: context)
    }

    package func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = unwrapOutboundIn(data)
        context.write(data, promise: promise)
        if case .end = part { answered(context: context) }
    }

    package func read(context: ChannelHandlerContext) {
        if canRead {
            context.read()
        } else {
            pendingRead = true
        }
    }

    package func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .dialing(let tunnel, _, _), .connected(let tunnel, _):
            state = .done
            tunnel.cancel()
        default:
            break
        }
        context.fireChannelInactive()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event, !isForwarding {
            // A tunnel being opened carries the half-close on; the forwarder must not see it.
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Collects the bytes the HTTP decoder releases when it is removed for a tunnel (bytes the
/// client sent right after its `CONNECT`).
private final class LeftoverBytes: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    private(set) var bytes: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if let read = buffer.readBytes(length: buffer.readableBytes) { bytes += read }
    }
}
