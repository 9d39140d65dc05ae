import Prometheus
import Synchronization

/// A gateway's Prometheus metrics: counted from the audit events it records, plus the few
/// things no audit line carries (DNS answers that were given, upstream dial times, lines the
/// denial budget dropped) and gauges sampled when the metrics are read.
///
/// Every label value comes from a bounded set: the sandbox (one per gateway process), an
/// event kind, a listener (`via`), a reason class, a direction or a result. Host names,
/// repositories, routes, session ids and reasons as written never become label values:
/// they are unbounded, and some are the sandbox's own choice. The audit log has them.
///
/// Counting is cheap on the hot path: one atomic add per counter, once per decision or
/// per connection end (bytes are added from the connection's totals, never per read),
/// and a short lock to find a labelled counter. See docs/metrics.md for the names.
package final class GatewayMetrics: Sendable {
    /// The registry the metrics live in; `exposition()` renders it.
    package let registry: PrometheusCollectorRegistry
    private let sandbox: String

    private let decisions: Mutex<[DecisionKey: Counter]> = Mutex([:])
    private let bytesUp: Counter
    private let bytesDown: Counter
    private let dnsAnswered: Counter
    private let dnsRefused: Counter
    private let reloadsOK: Counter
    private let reloadsFailed: Counter
    private let sessionEvents: [AuditEvent.Kind: Counter]
    private let dropped: [AuditEvent.Kind: Counter]
    private let connectionsOpen: Gauge
    private let tunnelsOpen: Gauge
    private let sessionsActive: Gauge
    private let dialSeconds: DurationHistogram
    private let gitSeconds: DurationHistogram
    private let samplers: Mutex<Samplers> = Mutex(Samplers())

    private struct DecisionKey: Hashable {
        var kind: AuditEvent.Kind
        var via: AuditEvent.Via?
        var reasonClass: ReasonClass
    }

    private struct Samplers {
        var connections: (@Sendable () -> (connections: Int, tunnels: Int))?
        var sessions: (@Sendable () -> Int)?
    }

    /// Why a decision came out as it did, in a few words fit for a label.
    package enum ReasonClass: String, Sendable, CaseIterable {
        /// Allowed.
        case allowed
        /// Refused by the policy (a name, port or address it does not allow).
        case policy
        /// Allowed by the policy, then the upstream could not be reached or failed.
        case upstream
        /// A git or route request without a usable session token (401).
        case unauthenticated
        /// A git or route request outside its session's scope or the push policy (403).
        case forbidden
        /// A request the gateway will not take as sent (another 4xx).
        case request
        /// SSH on port 22, which is not offered.
        case notOffered = "not_offered"
        /// Anything else.
        case other
    }

    /// The dial-time histogram's bucket bounds.
    package static let dialBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    /// The git-exchange histogram's bucket bounds.
    package static let gitBuckets: [Duration] = [
        .milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
    ]

    /// - Parameter sandbox: the sandbox name, a label on every metric so that several
    ///   gateways' textfiles can sit side by side.
    package init(sandbox: String) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        self.sandbox = sandbox
        let base = [("sandbox", sandbox)]
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "airlock", metricName: metric, unitName: unit, helpText: help)
        }
        let bytes = name("bytes", "total", "Bytes moved for the sandbox, from each exchange's or tunnel's totals at its end.")
        bytesUp = registry.makeCounter(descriptor: bytes, labels: base + [("direction", "up")])
        bytesDown = registry.makeCounter(descriptor: bytes, labels: base + [("direction", "down")])
        let dns = name("dns_answers", "total", "DNS queries answered, by result: answered (a record, an empty answer, FORMERR or NOTIMP) or refused (NXDOMAIN for a name the policy does not allow).")
        dnsAnswered = registry.makeCounter(descriptor: dns, labels: base + [("result", "answered")])
        dnsRefused = registry.makeCounter(descriptor: dns, labels: base + [("result", "refused")])
        let reloads = name("policy_reloads", "total", "Policy reloads, by result: ok (taken) or failed (the old policy stays).")
        reloadsOK = registry.makeCounter(descriptor: reloads, labels: base + [("result", "ok")])
        reloadsFailed = registry.makeCounter(descriptor: reloads, labels: base + [("result", "failed")])
        let sessions = name("session_events", "total", "Git sessions created, revoked, expired and restored at start.")
        var sessionEvents: [AuditEvent.Kind: Counter] = [:]
        for kind in [AuditEvent.Kind.sessionCreate, .sessionRevoke, .sessionExpire, .sessionRestore] {
            sessionEvents[kind] = registry.makeCounter(descriptor: sessions, labels: base + [("event", kind.rawValue)])
        }
        self.sessionEvents = sessionEvents
        let droppedName = name("audit_lines_dropped", "total", "Denial lines not written one by one because the sandbox exceeded the denial budget, by event.")
        var dropped: [AuditEvent.Kind: Counter] = [:]
        for kind in AuditEvent.Kind.denials {
            dropped[kind] = registry.makeCounter(descriptor: droppedName, labels: base + [("event", kind.rawValue)])
        }
        self.dropped = dropped
        connectionsOpen = registry.makeGauge(
            descriptor: name("connections_open", "", "Connections from the sandbox open now, tunnels included."), labels: base)
        tunnelsOpen = registry.makeGauge(
            descriptor: name("tunnels_open", "", "Tunnels (CONNECT, TLS by SNI, upgrades) open now."), labels: base)
        sessionsActive = registry.makeGauge(
            descriptor: name("sessions_active", "", "Git sessions live now."), labels: base)
        dialSeconds = registry.makeDurationHistogram(
            descriptor: name("upstream_dial", "seconds", "Time from the decision to a connected upstream: name lookup, address checks and connect."),
            labels: base, buckets: Self.dialBuckets)
        gitSeconds = registry.makeDurationHistogram(
            descriptor: name("git_exchange", "seconds", "Duration of git exchanges (upload-pack and receive-pack), allowed or refused."),
            labels: base, buckets: Self.gitBuckets)
    }

    /// Counts what `events` say: decisions, bytes, refused DNS names, reloads, session events
    /// and git exchange times. Called by the audit log for every event it is given, those
    /// over the denial budget too.
    package func observe(_ events: [AuditEvent]) {
        for event in events { observe(event) }
    }

    /// Counts one event; see `observe(_:)`.
    package func observe(_ event: AuditEvent) {
        switch event.kind {
        case .policyReload:
            (event.ok == false ? reloadsFailed : reloadsOK).increment()
            return
        case .sessionCreate, .sessionRevoke, .sessionExpire, .sessionRestore:
            sessionEvents[event.kind]?.increment()
            return
        case .secretSet:
            return
        case .dnsDeny:
            dnsRefused.increment()
        case .gitAllow, .gitDeny:
            if let ms = event.ms { gitSeconds.record(.milliseconds(ms)) }
        default:
            break
        }
        counter(for: DecisionKey(kind: event.kind, via: event.via, reasonClass: Self.reasonClass(of: event))).increment()
        if let up = event.bytesUp, up > 0 { bytesUp.increment(by: Int64(clamping: up)) }
        if let down = event.bytesDown, down > 0 { bytesDown.increment(by: Int64(clamping: down)) }
    }

    /// Counts `count` queries answered with anything but a refusal: a record, an empty
    /// answer, FORMERR or NOTIMP (refused ones come as `dns_deny` events).
    package func dnsAnswered(_ count: Int) {
        if count > 0 { dnsAnswered.increment(by: Int64(count)) }
    }

    /// Counts denial lines of `kind` the denial budget did not write.
    package func droppedAuditLines(_ kind: AuditEvent.Kind, count: Int) {
        if count > 0 { dropped[kind]?.increment(by: Int64(count)) }
    }

    /// Records the time an upstream dial took, from the decision to a connected socket.
    package func upstreamDialed(after duration: Duration) {
        dialSeconds.record(duration)
    }

    /// Where the open-connection and tunnel gauges are read from when the metrics are rendered.
    package func sampleConnections(_ read: @escaping @Sendable () -> (connections: Int, tunnels: Int)) {
        samplers.withLock { $0.connections = read }
    }

    /// Where the live-session gauge is read from when the metrics are rendered.
    package func sampleSessions(_ read: @escaping @Sendable () -> Int) {
        samplers.withLock { $0.sessions = read }
    }

    /// The metrics in Prometheus' text exposition format (version 0.0.4), gauges sampled now.
    package func exposition() -> String {
        let samplers = self.samplers.withLock { $0 }
        if let read = samplers.connections {
            let now = read()
            connectionsOpen.set(Double(now.connections))
            tunnelsOpen.set(Double(now.tunnels))
        }
        if let read = samplers.sessions { sessionsActive.set(Double(read())) }
        return registry.emitToString()
    }

    /// The reason class of a decision: from its kind, whether a policy rule allowed it
    /// (an `egress_deny` with a rule failed upstream), and the status the sandbox got.
    package static func reasonClass(of event: AuditEvent) -> ReasonClass {
        switch event.kind {
        case .egressAllow, .gitAllow, .apiAllow:
            return .allowed
        case .dnsDeny:
            return .policy
        case .sshDeny:
            return .notOffered
        case .egressDeny:
            return event.rule == nil ? .policy : .upstream
        case .gitDeny, .apiDeny:
            switch event.status {
            case 401?: return .unauthenticated
            case 403?: return .forbidden
            case let status? where status >= 500: return .upstream
            case let status? where status >= 400: return .request
            default: return .other
            }
        default:
            return .other
        }
    }

    private func counter(for key: DecisionKey) -> Counter {
        if let counter = decisions.withLock({ $0[key] }) { return counter }
        let counter = registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "airlock", metricName: "decisions", unitName: "total",
                helpText: "Decisions by event, listener (via) and reason class."),
            labels: [("sandbox", sandbox), ("event", key.kind.rawValue), ("via", key.via?.rawValue ?? "none"),
                     ("class", key.reasonClass.rawValue)])
        decisions.withLock { $0[key] = counter }
        return counter
    }
}
