import Synchronization

/// Counts the refusals (`dns_deny`, `egress_deny`, `git_deny`) an `AuditLog` records, by
/// what was refused, for the report `airlock run` prints when its command ends.
///
/// It sees every refusal, including those the `DenialBudget` keeps out of the log, so its
/// counts are exact. Bounded: past `limit` distinct entries, further refusals of new
/// entries are only counted in `Summary.untallied`.
package final class RefusalTally: Sendable {
    /// One thing that was refused, and how often.
    package struct Entry: Codable, Sendable, Equatable {
        /// `dns_deny`, `egress_deny` or `git_deny`.
        package var event: String
        /// The name or literal refused (DNS, egress), or the git host.
        package var host: String?
        /// Egress: the port asked for.
        package var port: Int?
        /// Git: `host/owner/repo`.
        package var repo: String?
        /// Git: `git-upload-pack` or `git-receive-pack`.
        package var service: String?
        /// Egress: the policy rule that allowed the name when the refusal came later (an
        /// address check, an upstream that could not be reached).
        package var rule: String?
        /// The first refusal's reason.
        package var reason: String?
        /// DNS: the query types asked, in the order first seen.
        package var qtypes: [String]
        /// How many times.
        package var count: Int

        package init(event: String, host: String? = nil, port: Int? = nil, repo: String? = nil, service: String? = nil,
                     rule: String? = nil, reason: String? = nil, qtypes: [String] = [], count: Int = 1) {
            self.event = event
            self.host = host
            self.port = port
            self.repo = repo
            self.service = service
            self.rule = rule
            self.reason = reason
            self.qtypes = qtypes
            self.count = count
        }
    }

    /// Everything counted, entries in the order first seen.
    package struct Summary: Codable, Sendable, Equatable {
        package var entries: [Entry]
        /// Refusals not tallied by entry because `limit` entries were already kept.
        package var untallied: Int

        package init(entries: [Entry] = [], untallied: Int = 0) {
            self.entries = entries
            self.untallied = untallied
        }

        /// Whether nothing was refused.
        package var isEmpty: Bool { entries.isEmpty && untallied == 0 }

        /// All refusals counted.
        package var total: Int { entries.reduce(untallied) { $0 + $1.count } }
    }

    private struct Key: Hashable {
        var event: String
        var host: String?
        var port: Int?
        var repo: String?
        var service: String?
        var rule: String?
    }

    private struct State {
        var index: [Key: Int] = [:]
        var summary = Summary()
    }

    private let state = Mutex(State())
    /// The most distinct entries kept.
    package let limit: Int

    package init(limit: Int = 1000) {
        self.limit = max(1, limit)
    }

    /// Counts the refusals among `events`; other kinds are ignored.
    package func observe<Events: Collection>(_ events: Events) where Events.Element == AuditEvent {
        // Most lines are allowances: those never take the lock.
        guard events.contains(where: { $0.kind.isDenial }) else { return }
        state.withLock { state in
            for event in events where event.kind.isDenial {
                let key = Key(event: event.kind.rawValue, host: event.host, port: event.port, repo: event.repo,
                              service: event.service, rule: event.rule)
                if let at = state.index[key] {
                    state.summary.entries[at].count += 1
                    if let qtype = event.qtype, !state.summary.entries[at].qtypes.contains(qtype) {
                        state.summary.entries[at].qtypes.append(qtype)
                    }
                } else if state.summary.entries.count < limit {
                    state.index[key] = state.summary.entries.count
                    state.summary.entries.append(Entry(
                        event: key.event, host: key.host, port: key.port, repo: key.repo, service: key.service, rule: key.rule,
                        reason: event.reason, qtypes: event.qtype.map { [$0] } ?? []))
                } else {
                    state.summary.untallied += 1
                }
            }
        }
    }

    /// What was counted so far.
    package var summary: Summary {
        state.withLock { $0.summary }
    }
}
