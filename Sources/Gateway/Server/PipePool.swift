#if canImport(Glibc)
import Glibc
#endif
import CSplice

/// The socket loop's pipes: made on demand with the capacity the kernel grants, lent to a
/// tunnel direction while bytes are in flight, and kept for reuse (up to a limit) once
/// empty. Used on the loop's thread only.
struct PipePool {
    /// Both ends of one pipe.
    struct Pipe {
        var read: CInt
        var write: CInt
    }

    /// The capacity each pipe gets, as the kernel granted it for the first one.
    private(set) var capacity = 65536
    /// Pipes lent out now.
    private(set) var inUse = 0
    /// Empty pipes kept beyond this many are closed.
    let limit: Int
    private var idle: [Pipe] = []

    /// Empty pipes kept for reuse now.
    var pooled: Int { idle.count }

    init(limit: Int) {
        self.limit = limit
    }

    /// Makes the first pipe, asking for `size`, and keeps it: what the kernel grants is
    /// the capacity of every pipe after it.
    mutating func prepare(size: Int) {
        var fds: [CInt] = [0, 0]
        guard airlock_pipe(&fds) == 0 else { return }
        let granted = Int(airlock_set_pipe_size(fds[1], CInt(size)))
        capacity = granted > 0 ? granted : 65536
        idle.append(Pipe(read: fds[0], write: fds[1]))
    }

    /// An empty pipe, from the pool or new; nil when no descriptor is left.
    mutating func acquire() -> Pipe? {
        if let pipe = idle.popLast() {
            inUse += 1
            return pipe
        }
        var fds: [CInt] = [0, 0]
        guard airlock_pipe(&fds) == 0 else { return nil }
        if capacity > 65536 { _ = airlock_set_pipe_size(fds[1], CInt(capacity)) }
        inUse += 1
        return Pipe(read: fds[0], write: fds[1])
    }

    /// Takes back an empty pipe.
    mutating func release(_ pipe: Pipe) {
        inUse -= 1
        if idle.count < limit {
            idle.append(pipe)
        } else {
            Self.close(pipe)
        }
    }

    /// Takes back a pipe that may still hold bytes (its tunnel is gone): closed, not reused.
    mutating func discard(_ pipe: Pipe) {
        inUse -= 1
        Self.close(pipe)
    }

    /// Closes every pooled pipe.
    mutating func closeAll() {
        idle.forEach(Self.close)
        idle.removeAll()
    }

    private static func close(_ pipe: Pipe) {
        Glibc.close(pipe.read)
        Glibc.close(pipe.write)
    }
}
