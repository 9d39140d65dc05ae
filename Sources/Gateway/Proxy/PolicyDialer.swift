#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS // TLSUserEvent; built as part of NIOSSL
import GatewayCore

/// The real dialer: resolves in the host namespace, checks every candidate address
/// against the policy, and connects to exactly an address it checked.
///
/// Names pinned by `resolve` rules are used as given; other names go to the host's
/// resolver (`getaddrinfo`) on a thread pool, never on an event loop, as absolute names
/// (with a trailing dot): the resolver never tries them under the host's search domains,
/// so a name under a `*.suffix` rule reaches the host's DNS as that one name and no
/// other (see docs/threat-model.md). If any candidate is refused (private,
/// loopback, the gateway's own address, …) the whole dial is refused, so a name that
/// mixes public and private answers cannot be used to reach the private one. There is no
/// second lookup between the check and the connect. The resolver's answers are kept for
/// a short while (`ResolutionCache`); the checks run on every dial all the same.
package struct PolicyDialer: UpstreamDialer {
    private let policy: PolicyStore
    private let limits: GatewayLimits
    private let forbidden: Set<IPAddress>
    private let lookups: LookupThreads
    private let resolver: any NameResolver
    private let cache: ResolutionCache
    private let metrics: GatewayMetrics?

    /// - Parameters:
    ///   - policy: the sandbox's policy, read per dial.
    ///   - limits: connect and TLS handshake timeouts.
    ///   - forbidden: the gateway's own addresses; never dialled, whatever the policy says.
    ///   - lookups: where blocking name lookups run.
    ///   - resolver: looks names up; the host's resolver unless a test passes its own.
    ///   - cache: keeps the resolver's answers for a short while.
    ///   - metrics: records how long each successful dial took.
    package init(policy: PolicyStore, limits: GatewayLimits, forbidden: Set<IPAddress>, lookups: LookupThreads,
                 resolver: any NameResolver = SystemResolver(), cache: ResolutionCache = .resolverAnswers(),
                 metrics: GatewayMetrics? = nil) {
        self.metrics = metrics
        self.policy = policy
        self.limits = limits
        self.forbidden = forbidden
        self.lookups = lookups
        self.resolver = resolver
        self.cache = cache
    }

    /// `name` as an absolute DNS name: with one trailing dot, so that the resolver asks
    /// for exactly it, never for it under a search domain.
    package static func absoluteName(_ name: String) -> String {
        name.hasSuffix(".") ? name : name + "."
    }

    package func dial(_ target: UpstreamTarget, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        timed(checkedCandidates(for: target, on: eventLoop).flatMap { candidates in
            connect(target, candidates: candidates, on: eventLoop) { address in
                connectOne(target, address: address, on: eventLoop)
            }
        })
    }

    /// `dial` records its time from now to a connected upstream, when there are metrics.
    private func timed<Value>(_ dial: @autoclosure () -> EventLoopFuture<Value>) -> EventLoopFuture<Value> {
        guard let metrics else { return dial() }
        let started = NIODeadline.now()
        let future = dial()
        future.whenSuccess { _ in
            metrics.upstreamDialed(after: .nanoseconds((NIODeadline.now() - started).nanoseconds))
        }
        return future
    }

    /// The addresses `target` may be dialled at: its pinned address, or every address its
    /// name resolves to once each has passed the policy's address rules.
    private func checkedCandidates(for target: UpstreamTarget, on eventLoop: any EventLoop) -> EventLoopFuture<[SocketAddress]> {
        if let address = target.address {
            return eventLoop.makeSucceededFuture([address])
        }
        return candidates(for: target.host, on: eventLoop).flatMapThrowing { addresses in
            try checked(addresses, for: target)
        }
    }

    /// `addresses` of `target` as socket addresses, once each has passed the policy's
    /// address rules.
    /// - Throws: `DialError` for the first address refused.
    private func checked(_ addresses: [IPAddress], for target: UpstreamTarget) throws -> [SocketAddress] {
        let current = policy.current
        let name = (try? HostName.normalise(target.host)) ?? target.host
        var checked: [SocketAddress] = []
        for address in addresses {
            if forbidden.contains(address) {
                throw DialError.refused(host: target.host, reason: "\(address) is the gateway itself")
            }
            if case .refused(let reason) = current.checkResolved(address, for: HostLiteral.parse(target.host) == nil ? name : nil) {
                throw DialError.refused(host: target.host, reason: "resolves to \(reason)")
            }
            guard let socketAddress = try? SocketAddress(ipAddress: address.description, port: target.port) else {
                throw DialError.unresolvable(host: target.host, reason: "unusable address \(address)")
            }
            checked.append(socketAddress)
        }
        return checked
    }

    /// The addresses for `host` known without asking the resolver: a literal, a `resolve`
    /// pin, or an answer the cache still keeps.
    private func knownAddresses(for host: String) -> [IPAddress]? {
        if let literal = HostLiteral.parse(host) {
            return [literal]
        }
        let name = (try? HostName.normalise(host)) ?? host
        if let pinned = policy.current.resolveOverrides[name], !pinned.isEmpty {
            return pinned
        }
        return cache.value(for: Self.absoluteName(name))
    }

    /// The addresses for `host`: a literal, a `resolve` pin, or the system resolver's.
    private func candidates(for host: String, on eventLoop: any EventLoop) -> EventLoopFuture<[IPAddress]> {
        if let known = knownAddresses(for: host) {
            return eventLoop.makeSucceededFuture(known)
        }
        let name = (try? HostName.normalise(host)) ?? host
        let resolver = self.resolver
        let cache = self.cache
        let absolute = Self.absoluteName(name)
        return lookups.run(on: eventLoop) {
            let addresses = try resolver.addresses(of: absolute)
            if !addresses.isEmpty { cache.store(addresses, for: absolute) }
            return addresses
        }.flatMapErrorThrowing { error in
            if let error = error as? DialError { throw error }
            throw DialError.unresolvable(host: name, reason: "\(error)")
        }
    }

    /// Connects to the first candidate that answers (at most four are tried).
    private func connect<Connection>(
        _ target: UpstreamTarget, candidates: [SocketAddress], on eventLoop: any EventLoop,
        one: @escaping (SocketAddress) -> EventLoopFuture<Connection>
    ) -> EventLoopFuture<Connection> {
        var remaining = candidates.prefix(4)
        guard let address = remaining.popFirst() else {
            return eventLoop.makeFailedFuture(DialError.unresolvable(host: target.host, reason: "no addresses"))
        }
        let attempt = one(address)
        if remaining.isEmpty { return attempt }
        return attempt.flatMapError { error -> EventLoopFuture<Connection> in
            if case DialError.refused = error { return eventLoop.makeFailedFuture(error) }
            return connect(target, candidates: Array(remaining), on: eventLoop, one: one)
        }
    }

    private func connectOne(_ target: UpstreamTarget, address: SocketAddress, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let host = target.host
        let port = target.port
        let tls = target.tls
        let handshakeTimeout = limits.tlsHandshakeTimeout
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(limits.connectTimeout)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.autoRead, value: true)
        let connected = bootstrap.connect(to: address).flatMapError { error -> EventLoopFuture<any Channel> in
            if case ChannelError.connectTimeout = error {
                return eventLoop.makeFailedFuture(DialError.timedOut(host: host, port: port, what: "connecting"))
            }
            return eventLoop.makeFailedFuture(DialError.connectFailed(host: host, port: port, reason: Self.shortReason(error)))
        }
        guard let tls else { return connected }
        return connected.flatMap { channel in
            let serverName = HostLiteral.parse(host) == nil ? host : nil
            let waiter = HandshakeWaiter(promise: eventLoop.makePromise(of: Void.self))
            do {
                let handler = try NIOSSLClientHandler(context: tls.context(), serverHostname: serverName)
                try channel.pipeline.syncOperations.addHandler(handler)
                try channel.pipeline.syncOperations.addHandler(waiter)
            } catch {
                channel.close(promise: nil)
                return eventLoop.makeFailedFuture(DialError.connectFailed(host: host, port: port, reason: "TLS setup: \(Self.shortReason(error))"))
            }
            let timeout = eventLoop.scheduleTask(in: handshakeTimeout) {
                waiter.fail(DialError.timedOut(host: host, port: port, what: "TLS handshake"))
            }
            return waiter.promise.futureResult.flatMapError { error in
                timeout.cancel()
                channel.close(promise: nil)
                if let error = error as? DialError { return eventLoop.makeFailedFuture(error) }
                return eventLoop.makeFailedFuture(DialError.connectFailed(host: host, port: port, reason: "TLS: \(Self.shortReason(error))"))
            }.flatMap {
                timeout.cancel()
                return channel.pipeline.removeHandler(waiter).map { channel }
            }
        }
    }

    /// The system's own words for a failed connect ("Connection refused"), not NIO's
    /// description of the call that failed.
    private static func shortReason(_ error: Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return shortReason(first.error)
        }
        let text = String(describing: error)
        return String(text.prefix(120))
    }
}

extension PolicyDialer: TunnelSocketDialer {
    package func dialSocket(_ target: UpstreamTarget, loop: SocketLoop, on eventLoop: any EventLoop) -> EventLoopFuture<CInt> {
        let host = target.host
        let port = target.port
        let timeout = limits.connectTimeout
        return timed(checkedCandidates(for: target, on: eventLoop).flatMap { candidates in
            connect(target, candidates: candidates, on: eventLoop) { address in
                // The address checked above, as it is: no second parse per connection.
                return loop.connect(to: address, timeout: timeout, on: eventLoop).flatMapErrorThrowing { error in
                    throw Self.dialError(error, host: host, port: port)
                }
            }
        })
    }

    package func dialHere(_ target: UpstreamTarget, loop: SocketLoop, then: @escaping (Result<CInt, DialError>) -> Void) -> Bool {
        let candidates: [SocketAddress]
        if let address = target.address {
            candidates = [address]
        } else {
            guard let known = knownAddresses(for: target.host) else { return false }
            do {
                candidates = try checked(known, for: target)
            } catch {
                then(.failure(error as? DialError ?? DialError.unresolvable(host: target.host, reason: "\(error)")))
                return true
            }
        }
        guard !candidates.isEmpty else {
            then(.failure(DialError.unresolvable(host: target.host, reason: "no addresses")))
            return true
        }
        let started = NIODeadline.now()
        let metrics = self.metrics
        let timeout = limits.connectTimeout
        // At most four candidates, one after another, as `dialSocket` tries them.
        func attempt(_ remaining: ArraySlice<SocketAddress>) {
            loop.connectHere(to: remaining.first!, timeout: timeout) { result in
                switch result {
                case .success(let fd):
                    metrics?.upstreamDialed(after: .nanoseconds((NIODeadline.now() - started).nanoseconds))
                    then(.success(fd))
                case .failure(let error):
                    if remaining.count > 1 {
                        attempt(remaining.dropFirst())
                    } else {
                        then(.failure(Self.dialError(error, host: target.host, port: target.port)))
                    }
                }
            }
        }
        attempt(candidates.prefix(4))
        return true
    }

    /// A socket loop's connect failure in the words of a dial.
    private static func dialError(_ error: Error, host: String, port: Int) -> DialError {
        switch error as? SocketLoop.ConnectError {
        case .timedOut?: DialError.timedOut(host: host, port: port, what: "connecting")
        case .failed(let reason)?: DialError.connectFailed(host: host, port: port, reason: reason)
        case .stopped?: DialError.connectFailed(host: host, port: port, reason: "the gateway is stopping")
        case nil: DialError.connectFailed(host: host, port: port, reason: Self.shortReason(error))
        }
    }
}

/// Completes a promise when the TLS handshake finishes or fails.
private final class HandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<Void>
    private var done = false

    init(promise: EventLoopPromise<Void>) {
        self.promise = promise
    }

    func fail(_ error: Error) {
        guard !done else { return }
        done = true
        promise.fail(error)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event, !done {
            done = true
            promise.succeed(())
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ChannelError.eof)
        context.fireChannelInactive()
    }
}

/// Looks a name up in the host namespace; blocking, so called on a thread pool.
package protocol NameResolver: Sendable {
    /// The addresses of `name`, an absolute name (with its trailing dot).
    /// - Throws: `DialError.unresolvable` when there are none.
    func addresses(of name: String) throws -> [IPAddress]
}

/// The host's resolver, `getaddrinfo`: `/etc/hosts` and DNS as `nsswitch.conf` says. An
/// absolute name is never tried under a search domain; glibc's `/etc/hosts` lookup does
/// not match it either, so names known only there need a `resolve` rule.
package struct SystemResolver: NameResolver {
    package init() {}

    /// `getaddrinfo` for TCP; blocking.
    package func addresses(of name: String) throws -> [IPAddress] {
        let shown = name.hasSuffix(".") ? String(name.dropLast()) : name
        var hints = addrinfo()
        hints.ai_socktype = CInt(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(name, nil, &hints, &result)
        guard status == 0, let first = result else {
            throw DialError.unresolvable(host: shown, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(first) }
        var addresses: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        var count = 0
        while let entry = cursor, count < 32 {
            count += 1
            if let sa = entry.pointee.ai_addr {
                if entry.pointee.ai_family == AF_INET {
                    let bytes = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                        withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) }
                    }
                    if let address = IPAddress(bytes: bytes) { addresses.append(address) }
                } else if entry.pointee.ai_family == AF_INET6 {
                    let bytes = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                        withUnsafeBytes(of: sin6.pointee.sin6_addr) { Array($0) }
                    }
                    if let address = IPAddress(bytes: bytes) { addresses.append(address) }
                }
            }
            cursor = entry.pointee.ai_next
        }
        var seen = Set<IPAddress>()
        addresses = addresses.filter { seen.insert($0).inserted }
        guard !addresses.isEmpty else {
            throw DialError.unresolvable(host: shown, reason: "no addresses")
        }
        return addresses
    }
}
