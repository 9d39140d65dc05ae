#if canImport(Glibc)
import Glibc
#endif
import CSplice

extension SocketLoop {
    /// A new connection the loop watches until its first bytes arrive.
    final class FirstBytesWait {
        let id: UInt64
        let fd: CInt
        let deadline: UInt64
        let then: (CInt, Bool) -> Void
        init(id: UInt64, fd: CInt, deadline: UInt64, then: @escaping (CInt, Bool) -> Void) {
            self.id = id
            self.fd = fd
            self.deadline = deadline
            self.then = then
        }
    }

    /// Watches `fd` (a connection this loop accepted; call on the loop's thread) until it
    /// is readable, for at most `nanoseconds`. `then` runs once on this thread with the
    /// descriptor and whether bytes (or the peer's end) arrived; by then the loop no
    /// longer watches it, so it may go to NIO or to a tunnel. When the loop stops first,
    /// `then` runs with false.
    func awaitFirstBytes(_ fd: CInt, within nanoseconds: UInt64, then: @escaping (CInt, Bool) -> Void) {
        let wait = FirstBytesWait(id: makeID(), fd: fd, deadline: Self.now() + nanoseconds, then: then)
        guard register(fd, token: wait.id, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLONESHOT.rawValue) else {
            then(fd, false)
            return
        }
        firstBytes[wait.id] = wait
        entries[wait.id] = .awaitingBytes(wait)
    }

    /// Ends a wait: the descriptor leaves the loop's epoll and goes to its continuation.
    func endFirstBytesWait(_ wait: FirstBytesWait, readable: Bool) {
        firstBytes[wait.id] = nil
        entries[wait.id] = nil
        _ = epoll_ctl(epoll, EPOLL_CTL_DEL, wait.fd, nil)
        wait.then(wait.fd, readable)
    }
}
