#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Where audit lines go.
package protocol AuditSink: Sendable {
    /// Writes one complete line (with its newline). Must not throw: auditing never takes
    /// the gateway down; a failed write is counted instead.
    func write(line: String)

    /// Writes several complete lines (each with its newline) at once. A file sink makes
    /// this one `write(2)`; the default writes them one by one.
    func write(lines: [String])
}

extension AuditSink {
    package func write(lines: [String]) {
        for line in lines { write(line: line) }
    }
}

/// The audit log: one JSON line per decision, to stderr or a file.
///
/// Thread-safe; every line, or every batch of lines (`record(contentsOf:)`), is written
/// with a single `write(2)` so lines from different event loops never interleave.
///
/// Denials (`dns_deny`, `egress_deny`, `git_deny`) are the kinds a sandbox can produce as
/// fast as it can send (a denied name costs it one datagram, a refused request 43 bytes
/// on a kept-alive connection), so they share one budget per sandbox: up to
/// `DenialBudget.Limits.burst` at once and `perSecond` a second after that. Denials over
/// the budget are counted by kind, and the next denial line written is preceded by one
/// line per kind saying how many were not written one by one. Every other kind (allowed
/// exchanges, sessions, reloads) is written in full.
package final class AuditLog: Sendable {
    private let sink: any AuditSink
    private let sandbox: String?
    private let denials: DenialBudget
    private let tally: RefusalTally?
    /// Counts every event recorded, those over the denial budget too, and the lines the
    /// budget dropped; nil when the gateway exposes no metrics.
    package let metrics: GatewayMetrics?

    /// - Parameters:
    ///   - sink: where lines go.
    ///   - sandbox: filled into events that do not name their sandbox.
    ///   - denials: the budget for denial lines, shared by every denial kind.
    ///   - clock: the budget's clock; tests pass their own.
    ///   - tally: counts every refusal, those over the budget too (`airlock run`'s report).
    ///   - metrics: counts every event and the dropped lines (`gateway serve --metrics-…`).
    package init(sink: any AuditSink, sandbox: String? = nil, denials: DenialBudget.Limits = .standard,
                 clock: @escaping @Sendable () -> Double = DenialBudget.monotonicClock, tally: RefusalTally? = nil,
                 metrics: GatewayMetrics? = nil) {
        self.sink = sink
        self.sandbox = sandbox
        self.denials = DenialBudget(denials, clock: clock)
        self.tally = tally
        self.metrics = metrics
    }

    /// Records one decision.
    package func record(_ event: AuditEvent) {
        if event.kind.isDenial {
            record(contentsOf: [event])
            return
        }
        metrics?.observe(event)
        var event = event
        if event.sandbox == nil { event.sandbox = sandbox }
        sink.write(line: event.jsonLine() + "\n")
    }

    /// Applies the denial budget to `events`: the denials over it are dropped (and
    /// counted); lines for those dropped earlier come first once there is room again.
    private func limitingDenials(_ events: [AuditEvent]) -> [AuditEvent] {
        let kinds = events.lazy.map(\.kind).filter(\.isDenial)
        guard !kinds.isEmpty else { return events }
        let denied = Array(kinds)
        let grant = denials.take(denied)
        if grant.allowed == denied.count && grant.unreported.isEmpty { return events }
        if let metrics {
            for kind in denied.dropFirst(grant.allowed) { metrics.droppedAuditLines(kind, count: 1) }
        }
        var kept: [AuditEvent] = []
        kept.reserveCapacity(events.count - denied.count + grant.allowed + grant.unreported.count)
        for (kind, count) in grant.unreported {
            kept.append(Self.droppedLine(kind, count: count, limits: denials.limits))
        }
        var left = grant.allowed
        for event in events {
            if event.kind.isDenial {
                guard left > 0 else { continue }
                left -= 1
            }
            kept.append(event)
        }
        return kept
    }

    /// The line that stands for `count` denials of `kind` that were not written.
    private static func droppedLine(_ kind: AuditEvent.Kind, count: Int, limits: DenialBudget.Limits) -> AuditEvent {
        let over = "not written one by one: over \(limits.burst) at once or \(limits.perSecond) a second"
        switch kind {
        case .dnsDeny: return AuditEvent(kind, via: .dns, reason: "\(count) more denied name(s) \(over)")
        case .gitDeny: return AuditEvent(kind, via: .git, reason: "\(count) more refused git request(s) \(over)")
        case .apiDeny: return AuditEvent(kind, via: .api, reason: "\(count) more refused route request(s) \(over)")
        case .sshDeny: return AuditEvent(kind, via: .ssh, reason: "\(count) more refused SSH connection(s) \(over)")
        default: return AuditEvent(kind, reason: "\(count) more refused request(s) or connection(s) \(over)")
        }
    }

    /// Records several decisions with one write to the sink (one `write(2)` for a file),
    /// in order: for a handler that decides many things in one read batch and records
    /// them when the batch ends, before it sends the batch's answers.
    package func record(contentsOf events: [AuditEvent]) {
        tally?.observe(events)
        metrics?.observe(events)
        let events = limitingDenials(events)
        guard events.count > 1 else {
            if var event = events.first {
                if event.sandbox == nil { event.sandbox = sandbox }
                sink.write(line: event.jsonLine() + "\n")
            }
            return
        }
        var lines: [String] = []
        lines.reserveCapacity(events.count)
        var stamp = AuditTimestamp(secondsSinceEpoch: -1, milliseconds: -1)
        var formatted = ""
        for var event in events {
            if event.sandbox == nil { event.sandbox = sandbox }
            let now = AuditTimestamp.now()
            if now.secondsSinceEpoch != stamp.secondsSinceEpoch || now.milliseconds != stamp.milliseconds {
                stamp = now
                formatted = now.iso8601
            }
            lines.append(event.jsonLine(formattedTimestamp: formatted, newline: true))
        }
        sink.write(lines: lines)
    }

    /// An audit log for another sandbox that shares this log's sink.
    package func forSandbox(_ name: String) -> AuditLog {
        AuditLog(sink: sink, sandbox: name, denials: denials.limits, tally: tally, metrics: metrics)
    }
}

/// Writes audit lines to a file descriptor (stderr, or a file opened for appending).
package final class FileDescriptorAuditSink: AuditSink {
    private let fd: CInt
    private let ownsDescriptor: Bool
    private let lock = Mutex(())
    private let failedWrites = Mutex(0)

    /// Audit lines on standard error.
    package static let standardError = FileDescriptorAuditSink(fd: 2, ownsDescriptor: false)

    private init(fd: CInt, ownsDescriptor: Bool) {
        self.fd = fd
        self.ownsDescriptor = ownsDescriptor
    }

    /// Opens `path` for appending (created 0600 if missing).
    /// - Throws: `AuditLogError.cannotOpen` with the path and the system's reason.
    package convenience init(appendingTo path: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw AuditLogError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        self.init(fd: fd, ownsDescriptor: true)
    }

    deinit {
        if ownsDescriptor { close(fd) }
    }

    /// Lines that could not be written since start.
    package var failures: Int { failedWrites.withLock { $0 } }

    package func write(line: String) {
        write(text: line)
    }

    /// All lines in one `write(2)` (more only if the kernel takes part of it).
    package func write(lines: [String]) {
        switch lines.count {
        case 0: return
        case 1: write(text: lines[0])
        default: write(text: lines.joined())
        }
    }

    private func write(text: String) {
        lock.withLock { _ in
            var line = text
            let ok = line.withUTF8 { buf -> Bool in
                var offset = 0
                while offset < buf.count {
                    let n = Glibc.write(fd, buf.baseAddress! + offset, buf.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return false
                    }
                    offset += n
                }
                return true
            }
            if !ok { failedWrites.withLock { $0 += 1 } }
        }
    }
}

/// Keeps audit lines in memory; for tests and for `airlock run --json` summaries.
package final class MemoryAuditSink: AuditSink {
    private let storage = Mutex<[String]>([])

    package init() {}

    package func write(line: String) {
        storage.withLock { $0.append(line) }
    }

    package func write(lines: [String]) {
        storage.withLock { $0.append(contentsOf: lines) }
    }

    /// Every line written so far, without newlines.
    package var lines: [String] {
        storage.withLock { $0.map { String($0.dropLast()) } }
    }
}

package enum AuditLogError: Error, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)

    package var description: String {
        switch self {
        case let .cannotOpen(path, reason): "cannot open audit log \(path): \(reason)"
        }
    }
}
