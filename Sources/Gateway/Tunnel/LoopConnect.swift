#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import GatewayCore

/// The explicit proxy's usual connection, served by the socket loop that accepted it: a
/// `CONNECT` whose head arrives whole in the connection's first bytes.
///
/// The loop looks at those bytes without taking them (`MSG_PEEK`). When they are one
/// plain `CONNECT` head (`ConnectHead`) to an authority the router allows, and the
/// upstream's addresses are known without a name lookup (a literal, a `resolve` pin, an
/// answer the resolver's cache keeps), the loop dials, takes the head, writes the `200`
/// and splices, with no NIO channel and no thread hop before the client's first byte
/// goes through. A refusal the router or the dial makes is answered here too, in the same
/// words and audited once, by the same router and `Refusal`.
///
/// Everything else (other requests, a head split over several reads, a name that must be
/// resolved, bytes that are not the plain shape) goes to NIO untouched, since nothing was
/// read: `ConnectHandler` and the forwarder then serve it exactly as they serve every
/// connection, and the decision is made there once. So this path changes where the common
/// case runs, never what is decided.
package final class LoopConnect: Sendable {
    /// How many connections took each path; for tests and health answers.
    package struct Counters: Sendable, Equatable {
        /// Served on the socket loop: tunnels opened, refusals and dial failures answered.
        package var served = 0
        /// Passed on to NIO.
        package var passedOn = 0
    }

    /// The `200` answer, for HTTP/1.0 and HTTP/1.1 clients (by minor version); made once.
    private static let established = [0, 1].map { Array("HTTP/1.\($0) 200 Connection established\r\n\r\n".utf8) }

    /// The most of a connection's first bytes looked at; a longer head goes to NIO.
    package static let peekBytes = 4096

    private let router: any TunnelRouter
    private let dialer: any TunnelSocketDialer
    private let sandbox: String
    private let contextLoop: any EventLoop
    private let tracker: ConnectionTracker?
    private let maxHeadBytes: Int
    private let idleTimeout: TimeAmount
    private let firstBytesWait: UInt64
    private let unread: UnreadBudget?
    private let counts = NIOLockedValueBox(Counters())

    /// - Parameters:
    ///   - router: decides each tunnel (the proxy's router, as `ConnectHandler` has it).
    ///   - dialer: dials on the loop's thread (`dialHere`), with the policy's checks.
    ///   - sandbox: the sandbox this listener belongs to.
    ///   - contextLoop: the event loop named in the router's `RequestContext`.
    ///   - tracker: counts the connection against the sandbox's limit from its accept.
    ///   - maxHeadBytes: the request head limit (`--max-header-bytes`).
    ///   - idleTimeout: how long a tunnel may move no byte.
    ///   - firstBytesWait: how long the loop waits for the first bytes before passing the
    ///     connection on to NIO, which then applies its own header timeout.
    ///   - unread: the sandbox's unread-tunnel budget; nil for the splicing loop's own.
    package init(router: any TunnelRouter, dialer: any TunnelSocketDialer, sandbox: String, contextLoop: any EventLoop,
                 tracker: ConnectionTracker?, maxHeadBytes: Int, idleTimeout: TimeAmount,
                 firstBytesWait: TimeAmount = .milliseconds(200), unread: UnreadBudget? = nil) {
        self.unread = unread
        self.router = router
        self.dialer = dialer
        self.sandbox = sandbox
        self.contextLoop = contextLoop
        self.tracker = tracker
        self.maxHeadBytes = min(maxHeadBytes, Self.peekBytes)
        self.idleTimeout = idleTimeout
        self.firstBytesWait = UInt64(max(0, firstBytesWait.nanoseconds))
    }

    /// Connections served on the loop and passed on, so far.
    package var counters: Counters {
        counts.withLockedValue { $0 }
    }

    /// Serves the connection `fd`, just accepted by `loop` (call on its thread); an
    /// established tunnel is spliced by `splicer`. `passOn` gets the descriptor, with
    /// nothing read from it, for every connection this path does not serve.
    package func accept(_ fd: CInt, on loop: SocketLoop, splicer: SocketLoop, passOn: @escaping (CInt) -> Void) {
        let handle = splicer.makeHandle()
        // Over the limit: NIO's path refuses it and audits the refusal.
        guard tracker?.admit(handle) ?? true else {
            passOn(fd)
            return
        }
        let pass: (CInt) -> Void = { [tracker, counts] fd in
            tracker?.release(handle)
            counts.withLockedValue { $0.passedOn += 1 }
            passOn(fd)
        }
        switch peek(fd) {
        case .head(let head):
            serve(fd, head: head, handle: handle, loop: loop, splicer: splicer, pass: pass)
        case .nothingYet:
            loop.awaitFirstBytes(fd, within: firstBytesWait) { [self] fd, readable in
                guard readable, case .head(let head) = peek(fd) else {
                    pass(fd)
                    return
                }
                serve(fd, head: head, handle: handle, loop: loop, splicer: splicer, pass: pass)
            }
        case .other:
            pass(fd)
        }
    }

    private enum Peeked {
        case head(ConnectHead)
        case nothingYet
        case other
    }

    private func peek(_ fd: CInt) -> Peeked {
        withUnsafeTemporaryAllocation(byteCount: Self.peekBytes, alignment: 1) { buffer -> Peeked in
            let count = recv(fd, buffer.baseAddress, buffer.count, CInt(MSG_PEEK | MSG_DONTWAIT))
            if count < 0 { return errno == EAGAIN || errno == EWOULDBLOCK ? .nothingYet : .other }
            guard count > 0,
                  let head = ConnectHead.read(UnsafeRawBufferPointer(rebasing: buffer[..<count]), maxLength: maxHeadBytes)
            else { return .other }
            return .head(head)
        }
    }

    private func serve(_ fd: CInt, head: ConnectHead, handle: SocketLoop.Handle, loop: SocketLoop, splicer: SocketLoop,
                       pass: @escaping (CInt) -> Void) {
        // A target the full path would answer with 400: it answers it.
        guard case .success(let authority) = HostAndPort.parseAuthority(head.target) else {
            pass(fd)
            return
        }
        let version: HTTPVersion = head.minorVersion == 0 ? .http1_0 : .http1_1
        let context = RequestContext(sandbox: sandbox, via: .connect, eventLoop: contextLoop)
        switch router.routeTunnel(host: authority.host, port: authority.port, context: context) {
        case .refuse(let response):
            answer(fd, with: response, version: version, handle: handle)
        case .open(let target, let completion):
            let started = NIODeadline.now()
            let tracker = self.tracker
            let idleTimeout = self.idleTimeout
            let dialing = dialer.dialHere(target, loop: loop) { [self] result in
                switch result {
                case .failure(let error):
                    let refusal = Refusal(dialFailure: error, host: target.host, port: target.port)
                    completion(ExchangeOutcome(status: Int(refusal.status.code), bytesUp: 0, bytesDown: 0,
                                               milliseconds: started.millisecondsAgo, failure: refusal.reason))
                    answer(fd, with: refusal.response, version: version, handle: handle)
                case .success(let upstream):
                    guard Self.take(head.length, from: fd) else {
                        close(upstream)
                        close(fd)
                        tracker?.release(handle)
                        counts.withLockedValue { $0.served += 1 }
                        completion(ExchangeOutcome(status: nil, bytesUp: 0, bytesDown: 0, milliseconds: started.millisecondsAgo,
                                                   failure: "the sandbox closed the connection"))
                        return
                    }
                    counts.withLockedValue { $0.served += 1 }
                    // Both sockets come from a socket loop (accepted, dialed), non-blocking.
                    splicer.splice(handle, client: fd, upstream: upstream, toClient: Self.established[head.minorVersion],
                                   idleTimeout: idleTimeout, unread: unread, onLoopThread: splicer === loop,
                                   nonBlocking: true) { totals in
                        tracker?.release(handle)
                        completion(ExchangeOutcome(status: 200, bytesUp: totals.up, bytesDown: totals.down,
                                                   milliseconds: started.millisecondsAgo, failure: totals.ending))
                    }
                }
            }
            // The name needs the resolver: the full path dials it (nothing was audited yet).
            if !dialing { pass(fd) }
        }
    }

    /// Answers `response` and closes, as `ConnectHandler` does: what the client sent is
    /// read first (so the close does not reset the answer away), then the answer and the end.
    private func answer(_ fd: CInt, with response: LocalResponse, version: HTTPVersion, handle: SocketLoop.Handle) {
        counts.withLockedValue { $0.served += 1 }
        Self.drain(fd)
        let bytes = response.encoded(version: version, closing: true)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        shutdown(fd, CInt(SHUT_WR))
        close(fd)
        tracker?.release(handle)
    }

    /// Reads exactly `count` bytes (the head, which the peek saw arrive) and drops them.
    private static func take(_ count: Int, from fd: CInt) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { buffer -> Bool in
            var taken = 0
            while taken < count {
                let read = recv(fd, buffer.baseAddress! + taken, count - taken, CInt(MSG_DONTWAIT))
                if read < 0 && errno == EINTR { continue }
                guard read > 0 else { return false }
                taken += read
            }
            return true
        }
    }

    /// Reads and drops what the client has sent so far (at most 64 KiB).
    private static func drain(_ fd: CInt) {
        withUnsafeTemporaryAllocation(byteCount: peekBytes, alignment: 1) { buffer in
            for _ in 0..<16 {
                let read = recv(fd, buffer.baseAddress, buffer.count, CInt(MSG_DONTWAIT))
                if read < 0 && errno == EINTR { continue }
                if read <= 0 { return }
            }
        }
    }
}
