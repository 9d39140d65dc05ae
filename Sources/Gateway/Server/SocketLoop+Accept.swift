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
        /// Other loops accept on the same socket (`listen(_:owner:shared:onAccept:)`).
        let shared: Bool
        let onAccept: @Sendable (CInt) -> Void
        var pausedUntil: UInt64 = 0
        init(fd: CInt, owner: UInt64, shared: Bool, onAccept: @escaping @Sendable (CInt) -> Void) {
            self.fd = fd
            self.owner = owner
            self.shared = shared
            self.onAccept = onAccept
        }
        /// What the loop waits for on it.
        var events: UInt32 { EPOLLIN.rawValue | (shared ? EPOLLEXCLUSIVE.rawValue : 0) }
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
                pause(listener, token: token)
                return
            default:
                return
            }
        }
    }

    /// Stops waiting on a listener for now. An exclusive wait cannot be modified
    /// (`EPOLL_CTL_MOD` refuses it), so a shared listener leaves the set until `resume`.
    func pause(_ listener: Listener, token: UInt64) {
        if listener.shared {
            _ = epoll_ctl(epoll, EPOLL_CTL_DEL, listener.fd, nil)
        } else {
            var event = epoll_event(events: 0, data: epoll_data_t(u64: token))
            _ = epoll_ctl(epoll, EPOLL_CTL_MOD, listener.fd, &event)
        }
    }

    /// Waits on a paused listener again.
    func resume(_ listener: Listener, token: UInt64) {
        if listener.shared {
            _ = register(listener.fd, token: token, events: listener.events)
        } else {
            var event = epoll_event(events: listener.events, data: epoll_data_t(u64: token))
            _ = epoll_ctl(epoll, EPOLL_CTL_MOD, listener.fd, &event)
        }
    }
}
