#if canImport(Glibc)
import Glibc
#endif
import SystemCalls

/// Talks to a gateway's control socket: one request, one answer, blocking, bounded in
/// time and size. Used by `airlock session …` and to reach the gateway daemon.
package enum ControlClient {
    /// Longest answer accepted (a list of a thousand sessions fits comfortably).
    package static let maxAnswerBytes = 4 * 1024 * 1024

    /// Sends `request` to the socket at `path` and returns the gateway's answer.
    /// - Parameter sandbox: named in error messages.
    /// - Throws: `ControlClientError` saying what failed (no gateway, permission, timeout, bad answer).
    package static func send(_ request: ControlRequest, path: String, sandbox: String, timeoutSeconds: Int = 30) throws -> ControlResponse {
        let answer = try exchange(try request.jsonLine(), path: path, sandbox: sandbox, timeoutSeconds: timeoutSeconds)
        do {
            return try ControlResponse(jsonLine: answer)
        } catch {
            throw ControlClientError(description: String(describing: error))
        }
    }

    /// Sends `request` to the gateway daemon's socket at `path` and returns its answer.
    /// - Throws: `ControlClientError` saying what failed (no daemon, permission, timeout, bad answer).
    package static func send(_ request: DaemonRequest, path: String = DaemonRequest.socketPath, timeoutSeconds: Int = 30) throws -> DaemonResponse {
        let answer = try exchange(try request.jsonLine(), path: path, sandbox: nil, timeoutSeconds: timeoutSeconds)
        do {
            return try DaemonResponse(jsonLine: answer)
        } catch {
            throw ControlClientError(description: String(describing: error))
        }
    }

    /// Writes `line` and a newline to the socket at `path`, and returns the answer's first
    /// line without its newline.
    /// - Parameter sandbox: the sandbox whose gateway listens there, named in errors; nil
    ///   for the gateway daemon.
    private static func exchange(_ request: String, path: String, sandbox: String?, timeoutSeconds: Int) throws -> [UInt8] {
        let peer = sandbox.map { "the gateway of \($0)" } ?? "the gateway daemon"
        let start = sandbox.map { "start it with `airlock gateway serve \($0)`" } ?? "start it with `airlock gateway serve --all`"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlClientError(description: "cannot create a socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        guard let address = UnixSocketAddress.make(path) else {
            throw ControlClientError(description: "control socket path too long: \(path)")
        }
        let connected = UnixSocketAddress.with(address) { connect(fd, $0, $1) }
        if connected != 0 {
            let code = errno
            switch code {
            case ENOENT:
                let who = sandbox.map { "no gateway is serving \($0)" } ?? "no gateway daemon is running"
                throw ControlClientError(description: "\(who) (no control socket at \(path)); \(start)", notFound: true)
            case ECONNREFUSED:
                throw ControlClientError(description: "no gateway is listening on \(path) (stale socket); \(start)", notFound: true)
            case EACCES, EPERM:
                throw ControlClientError(description: "permission denied on \(path): the control socket is for root", permission: true)
            default:
                throw ControlClientError(description: "cannot connect to \(path): \(String(cString: strerror(code)))")
            }
        }

        var line = Array(request.utf8)
        line.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < line.count {
            // MSG_NOSIGNAL: a server that refuses the caller answers and closes before
            // reading the request; its answer is still there to read.
            let n = line[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, CInt(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE || errno == ECONNRESET { break }
                throw ControlClientError(description: "cannot write to \(path): \(String(cString: strerror(errno)))")
            }
            offset += n
        }

        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while !answer.contains(UInt8(ascii: "\n")) {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw ControlClientError(description: "\(peer) did not answer within \(timeoutSeconds)s")
                }
                throw ControlClientError(description: "cannot read from \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            answer.append(contentsOf: chunk[0..<n])
            guard answer.count <= maxAnswerBytes else {
                throw ControlClientError(description: "\(peer)'s answer is longer than \(maxAnswerBytes) bytes")
            }
        }
        guard let newline = answer.firstIndex(of: UInt8(ascii: "\n")) else {
            throw ControlClientError(description: "\(peer) closed the control connection without an answer")
        }
        return Array(answer[..<newline])
    }
}

/// A control request that could not be made; one line.
package struct ControlClientError: Error, CustomStringConvertible {
    package let description: String
    /// No gateway serves the sandbox (CLI exit 3).
    package var notFound = false
    /// The caller may not use the socket (CLI exit 4).
    package var permission = false
}
