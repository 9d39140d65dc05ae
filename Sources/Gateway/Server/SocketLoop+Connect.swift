#if canImport(Glibc)
import Glibc
#endif
import CSplice
import NIOConcurrencyHelpers
import NIOCore
import SystemCalls

extension SocketLoop {
    /// A non-blocking connect the loop waits on.
    final class PendingConnect {
        let id: UInt64
        let fd: CInt
        let deadline: UInt64
        /// Runs once, on the loop thread, with the connected descriptor or why not.
        let finish: (Result<CInt, ConnectError>) -> Void
        init(id: UInt64, fd: CInt, deadline: UInt64, finish: @escaping (Result<CInt, ConnectError>) -> Void) {
            self.id = id
            self.fd = fd
            self.deadline = deadline
            self.finish = finish
        }
    }

    /// How a connect started: done already, failed, or waiting for the handshake.
    private enum ConnectStart {
        case done(Result<CInt, ConnectError>)
        case inProgress(CInt)
    }

    /// Connects a new TCP socket to `address:port`.
    ///
    /// - Returns: a future for the connected descriptor (non-blocking, close-on-exec,
    ///   `TCP_NODELAY`), owned by the caller; it fails with `ConnectError`.
    package func connect(to address: SocketAddress, timeout: TimeAmount, on eventLoop: any EventLoop) -> EventLoopFuture<CInt> {
        let promise = eventLoop.makePromise(of: CInt.self)
        switch Self.startConnect(to: address) {
        case .done(let result):
            promise.completeWith(result.mapError { $0 as any Error })
        case .inProgress(let fd):
            let deadline = Self.now() + UInt64(max(0, timeout.nanoseconds))
            submit(.connect(PendingConnect(id: makeID(), fd: fd, deadline: deadline) { result in
                promise.completeWith(result.mapError { $0 as any Error })
            }))
        }
        return promise.futureResult
    }

    /// `connect(to:timeout:on:)` for callers on the loop's own thread: `then` runs on this
    /// thread, at once when the connect completes without waiting, else from the loop.
    func connectHere(to address: SocketAddress, timeout: TimeAmount, then: @escaping (Result<CInt, ConnectError>) -> Void) {
        switch Self.startConnect(to: address) {
        case .done(let result):
            then(result)
        case .inProgress(let fd):
            let deadline = Self.now() + UInt64(max(0, timeout.nanoseconds))
            waitForConnect(PendingConnect(id: makeID(), fd: fd, deadline: deadline, finish: then))
        }
    }

    /// Watches a connect in progress (on the loop thread).
    func waitForConnect(_ pending: PendingConnect) {
        if register(pending.fd, token: pending.id, events: EPOLLOUT.rawValue | EPOLLONESHOT.rawValue) {
            connects[pending.id] = pending
            entries[pending.id] = .connecting(pending)
        } else {
            let code = errno
            close(pending.fd)
            pending.finish(.failure(.failed(reason: String(cString: strerror(code)))))
        }
    }

    private static func startConnect(to address: SocketAddress) -> ConnectStart {
        let fd = socket(address.protocol.rawValue, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            return .done(.failure(.failed(reason: String(cString: strerror(errno)))))
        }
        var one: CInt = 1
        _ = setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
        let result = address.withSockAddr { Glibc.connect(fd, $0, socklen_t($1)) }
        if result == 0 { return .done(.success(fd)) }
        let code = errno
        guard code == EINPROGRESS else {
            close(fd)
            return .done(.failure(.failed(reason: String(cString: strerror(code)))))
        }
        // Nearby upstreams (loopback, a veth) often finish the handshake before connect
        // returns: look once, without waiting, before involving the loop's thread.
        var poll = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if Glibc.poll(&poll, 1, 0) == 1 {
            let error = socketError(fd)
            if error == 0 { return .done(.success(fd)) }
            close(fd)
            return .done(.failure(.failed(reason: String(cString: strerror(error)))))
        }
        return .inProgress(fd)
    }

    func finishConnect(_ pending: PendingConnect) {
        connects[pending.id] = nil
        entries[pending.id] = nil
        _ = epoll_ctl(epoll, EPOLL_CTL_DEL, pending.fd, nil)
        let error = Self.socketError(pending.fd)
        if error == 0 {
            pending.finish(.success(pending.fd))
        } else {
            close(pending.fd)
            pending.finish(.failure(.failed(reason: String(cString: strerror(error)))))
        }
    }
}
