#if canImport(Glibc)
import Glibc
#endif
import CSplice
import NIOConcurrencyHelpers
import NIOCore
import SystemCalls

extension SocketLoop {
    /// A listening socket the loop accepts on.
    final class Listener {
        let fd: CInt
        /// Whose listener it is (`closeListeners(owner:)`).
        let owner: UInt64
        let onAccept: @Sendable (CInt) -> Void
        var pausedUntil: UInt64 = 0
        init(fd: CInt, owner: UInt64, onAccept: @escaping @Sendable (CInt) -> Void) {
            self.fd = fd
            self.owner = owner
            self.onAccept = onAccept
        }
    }

    func accept(on listener: Listener, token: UInt64) {
        for _ in 0..<64 {
            let fd = airlock_accept(listener.fd)
            if fd >= 0 {
                listener.onAccept(fd)
                continue
            }
            switch errno {
            case EINTR, ECONNABORTED, EPROTO:  // interrupted, or a peer that gave up: next
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors or memory: stop accepting for a moment instead of
                // spinning on a listener that stays readable.
                listener.pausedUntil = Self.now() + 100_000_000
                var event = epoll_event(events: 0, data: epoll_data_t(u64: token))
                _ = epoll_ctl(epoll, EPOLL_CTL_MOD, listener.fd, &event)
                return
            default:
                return
            }
        }
    }
}
