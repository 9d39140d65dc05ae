import NIOCore
import Synchronization
import GatewayCore

/// Counts each session's pushes over the last minute (a sliding window), for the push
/// rate limit (`PushPolicy.pushesPerMinute`).
///
/// A push is a `POST git-receive-pack` that carries commands: git's 4-byte probe before a
/// large push (`0000`) is not counted. The table is bounded: one entry per session that
/// pushed in the last minute, each holding at most its limit of times, at most `capacity`
/// sessions (more than a gateway's live sessions); when full, the sessions idle longest
/// are forgotten first.
package final class PushRateLimiter: Sendable {
    /// The window pushes are counted over.
    package static let window = TimeAmount.seconds(60)
    /// The most sessions tracked.
    package let capacity: Int
    private let pushes = Mutex([String: [NIODeadline]]())

    package init(capacity: Int = 4096) {
        self.capacity = max(1, capacity)
    }

    /// Whether `session` may push now under `limit` pushes per minute: `nil` when it may
    /// (and, with `count`, the push is counted), else the whole seconds until it may.
    package func admit(session: String, limit: Int, count: Bool, now: NIODeadline = .now()) -> Int? {
        pushes.withLock { table in
            let start = now - Self.window
            var times = (table[session] ?? []).filter { $0 > start }
            if times.count >= limit, let oldest = times.first {
                table[session] = times
                let wait = (oldest + Self.window - now).nanoseconds
                return max(1, Int((wait + 999_999_999) / 1_000_000_000))
            }
            guard count else { return nil }
            times.append(now)
            if table[session] == nil && table.count >= capacity {
                table = table.filter { $0.value.last.map { $0 > start } ?? false }
                if table.count >= capacity, let idlest = table.min(by: { ($0.value.last ?? now) < ($1.value.last ?? now) })?.key {
                    table[idlest] = nil
                }
            }
            table[session] = times
            return nil
        }
    }

    /// Sessions tracked now.
    package var count: Int { pushes.withLock { $0.count } }
}

/// Bounds one push's body while it streams upstream: counts every byte before handing
/// the chunk to the push check it wraps, and refuses the push once the count passes the
/// session's limit. The refusal closes the upstream connection before the body's held
/// tail (the pack's trailer) is sent, so nothing of the push is applied.
package final class PushSizeLimit: RequestBodyInspector {
    private let limit: Int64
    private let inner: any RequestBodyInspector
    private let refuse: @Sendable () -> LocalResponse
    private var seen: Int64 = 0

    /// - Parameters:
    ///   - limit: the most bytes the body may have.
    ///   - inner: the push check that sees the body within the limit.
    ///   - refuse: makes (and audits) the answer to a push over the limit.
    package init(limit: Int64, wrapping inner: any RequestBodyInspector, refuse: @escaping @Sendable () -> LocalResponse) {
        self.limit = limit
        self.inner = inner
        self.refuse = refuse
    }

    package func inspect(_ chunk: ByteBuffer) -> LocalResponse? {
        seen += Int64(chunk.readableBytes)
        guard seen <= limit else { return refuse() }
        return inner.inspect(chunk)
    }

    package func finish() -> InspectorDecision {
        inner.finish()
    }

    /// `bytes` for people: `2 GiB`, `500 MiB`, `1.5 GiB` (rounded down, `1.0 MiB` when just over), `1000 bytes`.
    package static func describe(_ bytes: Int64) -> String {
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] where bytes >= Int64(1) << shift {
            let whole = bytes >> shift
            let rest = bytes - (whole << shift)
            return rest == 0 ? "\(whole) \(unit)" : "\(whole).\((rest * 10) >> shift) \(unit)"
        }
        return "\(bytes) bytes"
    }
}
