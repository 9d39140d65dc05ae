import Digests
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import GatewayCore

/// The storage actions of Git LFS batch responses, kept in the gateway while the sandbox
/// holds only an opaque id for each (`http://airlock.internal/lfs/ID`).
///
/// An entry keeps the real href and the `header` values the upstream gave with it (often
/// short-lived storage credentials), and is bound to the session whose batch request made
/// it: a transfer is served only to that session, only with the action's method, and only
/// until the entry expires (the upstream's `expires_in`/`expires_at`, at most
/// `maximumLifetime`). Ids are 256 bits from the system's cryptographic random source.
/// The table holds at most `capacity` entries: when full, expired entries are dropped,
/// then the oldest.
package final class LFSActionTable: Sendable {
    /// What an action does.
    package enum Kind: String, Sendable, Equatable {
        case download, upload, verify

        /// The HTTP method of the basic transfer adapter for this action.
        package var method: HTTPMethod {
            switch self {
            case .download: .GET
            case .upload: .PUT
            case .verify: .POST
            }
        }

        /// The access a session needs to use it.
        package var requiredAccess: RepoAccess {
            self == .download ? .read : .rw
        }
    }

    /// One action as the gateway keeps it.
    package struct Action: Sendable {
        /// The session whose batch request produced it.
        package var sessionID: String
        package var repository: GitRepository
        package var kind: Kind
        /// The storage host, port and TLS; never a pinned address (the dialer checks it).
        package var target: UpstreamTarget
        /// The href's path and query, origin form.
        package var uri: String
        /// The `Host` header for the storage host.
        package var hostHeader: String
        /// The upstream's `header` values for this action.
        package var headers: HTTPHeaders
        /// When the entry stops being served.
        package var expires: NIODeadline

        /// Creates an action.
        package init(sessionID: String, repository: GitRepository, kind: Kind, target: UpstreamTarget, uri: String,
                     hostHeader: String, headers: HTTPHeaders, expires: NIODeadline) {
            self.sessionID = sessionID
            self.repository = repository
            self.kind = kind
            self.target = target
            self.uri = uri
            self.hostHeader = hostHeader
            self.headers = headers
            self.expires = expires
        }
    }

    /// The most entries kept.
    package let capacity: Int
    /// The longest an entry lives, whatever the upstream says.
    package let maximumLifetime: TimeAmount

    private struct State {
        var entries: [String: Action] = [:]
        /// Ids in the order they were added (may hold ids already dropped).
        var order = CircularBuffer<String>()
    }

    private let state = NIOLockedValueBox(State())

    /// Characters of an id: base64url of 32 bytes without padding.
    package static let idLength = 43

    /// - Parameters:
    ///   - capacity: the most entries kept (at least 1).
    ///   - maximumLifetime: the longest an entry lives.
    package init(capacity: Int = 16384, maximumLifetime: TimeAmount = .hours(1)) {
        self.capacity = max(1, capacity)
        self.maximumLifetime = maximumLifetime
    }

    /// Whether `text` has the shape of an id (length, alphabet).
    package static func isWellFormedID(_ text: String) -> Bool {
        text.utf8.count == idLength && text.utf8.allSatisfy(Base64URL.isAlphabet)
    }

    /// Keeps `action` and returns its new id.
    package func add(_ action: Action, now: NIODeadline = .now()) -> String {
        let id = Base64URL.encode(SecureRandom.bytes(count: 32))
        state.withLockedValue { state in
            if state.entries.count >= capacity {
                state.entries = state.entries.filter { $0.value.expires > now }
                state.order = CircularBuffer(state.order.filter { state.entries[$0] != nil })
            }
            while state.entries.count >= capacity, let oldest = state.order.popFirst() {
                state.entries[oldest] = nil
            }
            state.entries[id] = action
            state.order.append(id)
        }
        return id
    }

    /// The action for `id`, unless it is unknown or expired.
    package func action(for id: String, now: NIODeadline = .now()) -> Action? {
        state.withLockedValue { state in
            guard let action = state.entries[id] else { return nil }
            guard action.expires > now else {
                state.entries[id] = nil
                return nil
            }
            return action
        }
    }

    /// Entries kept now (expired ones included until they are swept).
    package var count: Int { state.withLockedValue { $0.entries.count } }
}
