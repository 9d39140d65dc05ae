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
        let promise: EventLoopPromise<CInt>
        init(id: UInt64, fd: CInt, deadline: UInt64, promise: EventLoopPromise<CInt>) {
            self.id = id
            self.fd = fd
            self.deadline = deadline
            self.promise = promise
        }
    }

    /// Connects a new TCP socket to `address:port`.
    ///
    /// - Returns: a future for the connected descriptor (non-blocking, close-on-exec,
    ///   `TCP_NODELAY`), owned by the caller; it fails with `ConnectError`.
    package func connect(to address: SocketAddress, timeout: TimeAmount, on eventLoop: any EventLoop) -> EventLoopFuture<CInt> {
        let promise = eventLoop.makePromise(of: CInt.self)
        let fd = socket(address.protocol.rawValue, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            promise.fail(ConnectError.failed(reason: String(cString: strerror(errno))))
            return promise.futureResult
        }
        var one: CInt = 1
        _ = setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
        let result = address.withSockAddr { Glibc.connect(fd, $0, socklen_t($1)) }
        if result == 0 {
            promise.succeed(fd)
            return promise.futureResult
        }
        let code = errno
        guard code == EINPROGRESS else {
            close(fd)
            promise.fail(ConnectError.failed(reason: String(cString: strerror(code))))
            return promise.futureResult
        }
        // Nearby upstreams (loopback, a veth) often finish the handshake before connect
        // returns: look once, without waiting, before involving the loop's thread.
        var poll = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if Glibc.poll(&poll, 1, 0) == 1 {
            let error = Self.socketError(fd)
            if error == 0 {
                promise.succeed(fd)
            } else {
                close(fd)
                promise.fail(ConnectError.failed(reason: String(cString: strerror(error))))
            }
            return promise.futureResult
        }
        let deadline = Self.now() + UInt64(max(0, timeout.nanoseconds))
        submit(.connect(PendingConnect(id: makeID(), fd: fd, deadline: deadline, promise: promise)))
        return promise.futureResult
    }

    func finishConnect(_ pending: PendingConnect) {
        connects[pending.id] = nil
        entries[pending.id] = nil
        _ = epoll_ctl(epoll, EPOLL_CTL_DEL, pending.fd, nil)
        let error = Self.socketError(pending.fd)
        if error == 0 {
            pending.promise.succeed(pending.fd)
        } else {
            close(pending.fd)
            pending.promise.fail(ConnectError.failed(reason: String(cString: strerror(error))))
        }
    }
}
