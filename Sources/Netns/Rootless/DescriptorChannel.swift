#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// One end of a Unix socket pair that carries short messages and file descriptors.
///
/// `airlock run` uses it between the gateway (parent) and the sandbox builder (child):
/// the child sends the listening sockets it bound inside G, the parent answers "ready"
/// once it serves them. Messages are at most `maxMessageBytes` and 16 descriptors.
package final class DescriptorChannel {
    /// The socket; closed with the channel.
    package let fd: CInt
    private var closed = false

    /// The largest message carried (the sandbox command's environment travels in one).
    package static let maxMessageBytes = 192 * 1024

    /// Takes ownership of `fd`, a connected `AF_UNIX` `SOCK_SEQPACKET` socket.
    package init(adopting fd: CInt) {
        self.fd = fd
    }

    /// A connected pair; the second end is meant for the child and is inheritable.
    /// - Throws: `DescriptorChannelError.system` when `socketpair(2)` fails.
    package static func pair() throws -> (parent: DescriptorChannel, childFD: CInt) {
        var fds: [CInt] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds) == 0 else {
            throw DescriptorChannelError.system("socketpair", errno)
        }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        var size = CInt(maxMessageBytes + 4096)
        for fd in fds {
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        }
        return (DescriptorChannel(adopting: fds[0]), fds[1])
    }

    /// Sends `message` with `descriptors` attached.
    /// - Throws: `DescriptorChannelError.system` with the failed call and errno.
    package func send(_ message: String, descriptors: [CInt] = []) throws {
        var bytes = Array(message.utf8)
        if bytes.isEmpty { bytes = [0x0A] }
        guard bytes.count <= Self.maxMessageBytes else {
            throw DescriptorChannelError.tooLarge(bytes.count, Self.maxMessageBytes)
        }
        let r = bytes.withUnsafeBytes { buf in
            descriptors.withUnsafeBufferPointer { fds in
                cnl_send_fds(fd, buf.baseAddress, buf.count, fds.baseAddress, CInt(fds.count))
            }
        }
        guard r == 0 else { throw DescriptorChannelError.system("sendmsg", -r) }
    }

    /// Receives one message and the descriptors attached to it; `nil` when the peer closed.
    /// - Throws: `DescriptorChannelError.system` with the failed call and errno.
    /// The buffer is left uninitialised: most messages are a few hundred bytes, and zeroing all
    /// `maxMessageBytes` first made every `run` fault in 48 pages it never used.
    package func receive() throws -> (message: String, descriptors: [CInt])? {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.maxMessageBytes, alignment: 16)
        defer { buffer.deallocate() }
        var fds = [CInt](repeating: -1, count: Int(CNL_FDPASS_MAX))
        var count: CInt = 0
        let n = fds.withUnsafeMutableBufferPointer { fdBuf in
            cnl_recv_fds(fd, buffer.baseAddress, buffer.count, fdBuf.baseAddress, CInt(fdBuf.count), &count)
        }
        if n < 0 { throw DescriptorChannelError.system("recvmsg", CInt(-n)) }
        if n == 0 && count == 0 { return nil }
        return (String(decoding: UnsafeRawBufferPointer(rebasing: buffer[0..<Int(n)]), as: UTF8.self), Array(fds[0..<Int(count)]))
    }

    package func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(fd)
    }

    deinit { close() }
}

/// A failure passing messages or descriptors between parent and child.
package enum DescriptorChannelError: Error, CustomStringConvertible {
    case system(String, CInt)
    case tooLarge(Int, Int)

    package var description: String {
        switch self {
        case let .system(call, err): "\(call): \(String(cString: strerror(err)))"
        case let .tooLarge(size, limit): "message of \(size) bytes is over the limit of \(limit) (is the environment that large?)"
        }
    }
}
