#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import SystemCalls

/// Audit lines held in memory while a sandboxed command runs, and written out once it has
/// ended: `airlock run` without `--audit-log` shares its standard error with the command,
/// which must neither forge an audit line there nor break one mid-line.
///
/// Bounded: past `limit` bytes further lines are counted, not kept, and the count is
/// reported when the lines are released.
package final class HeldAuditSink: AuditSink {
    private struct State {
        var lines: [String] = []
        var bytes = 0
        var dropped = 0
    }

    private let state = Mutex(State())
    private let limit: Int

    /// A sink that keeps at most `limit` bytes of lines.
    package init(limit: Int = 8 << 20) {
        self.limit = limit
    }

    package func write(line: String) {
        state.withLock { state in
            let size = line.utf8.count
            if state.bytes + size > limit {
                state.dropped += 1
            } else {
                state.lines.append(line)
                state.bytes += size
            }
        }
    }

    /// The lines held so far and how many were dropped; the sink is emptied.
    package func take() -> (lines: [String], dropped: Int) {
        state.withLock { state in
            defer { state = State() }
            return (state.lines, state.dropped)
        }
    }

    /// Writes every held line to `fd`, then a note of the dropped ones, if any.
    package func release(to fd: CInt) {
        let (lines, dropped) = take()
        var text = lines.joined()
        if dropped > 0 {
            text += "airlock: \(dropped) more audit lines were dropped (over \(limit >> 20) MiB held during the run); use --audit-log FILE to keep every line\n"
        }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = retryingInterrupted { bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } }
            if n <= 0 { return }
            bytes = bytes.dropFirst(n)
        }
    }
}
