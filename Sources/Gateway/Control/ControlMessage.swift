#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import GatewayCore

/// A request on the control socket: one JSON object on one line.
///
/// ```
/// {"op":"create","repos":["github.com/owner/repo:rw"],"ttl":28800,"upstream_token":"…"}
/// {"op":"list"}
/// {"op":"revoke","id":"0123456789ab"}
/// {"op":"secret-set","name":"anthropic","secret":"…"}
/// {"op":"presets"}
/// ```
package enum ControlRequest: Sendable, Equatable {
    /// Create a session for `repos` (`[HOST/]OWNER/REPO[:read|:rw]`) standing for
    /// `upstreamToken`, with its push policy (`PushPolicy(protect:pushRefs:allowForcePush:maxPushSize:pushRate:)`).
    case create(repos: [String], ttlSeconds: Double?, upstreamToken: Secret, protect: [String] = [], pushRefs: [String] = [], allowForcePush: [String] = [],
                maxPushSize: String? = nil, pushRate: String? = nil)
    /// List live sessions, without secrets.
    case list
    /// Revoke the session with this id.
    case revoke(id: String)
    /// Set (or replace) the credential routes' secret `name`, held in memory only.
    case setSecret(name: String, value: Secret)
    /// The credential-route presets of the policy in force (`netns exec` sets their variables).
    case presets

    private struct Wire: Codable {
        var op: String
        var repos: [String]?
        var ttl: Double?
        var upstream_token: String?
        var id: String?
        var protect: [String]?
        var push_refs: [String]?
        var allow_force_push: [String]?
        var max_push_size: String?
        var push_rate: String?
        var name: String?
        var secret: String?
    }

    /// The request as one JSON line, without the newline. Contains the upstream token for
    /// `create`: the line is written to the socket only, never logged.
    package func jsonLine() throws -> String {
        let wire: Wire
        switch self {
        case let .create(repos, ttl, token, protect, pushRefs, allowForcePush, maxPushSize, pushRate):
            wire = token.withRevealed {
                Wire(op: "create", repos: repos, ttl: ttl, upstream_token: $0, id: nil,
                     protect: protect.isEmpty ? nil : protect, push_refs: pushRefs.isEmpty ? nil : pushRefs,
                     allow_force_push: allowForcePush.isEmpty ? nil : allowForcePush, max_push_size: maxPushSize, push_rate: pushRate)
            }
        case .list:
            wire = Wire(op: "list")
        case let .revoke(id):
            wire = Wire(op: "revoke", id: id)
        case let .setSecret(name, value):
            wire = value.withRevealed { Wire(op: "secret-set", name: name, secret: $0) }
        case .presets:
            wire = Wire(op: "presets")
        }
        return try JSONLine.encode(wire)
    }

    /// Parses one request line.
    /// - Throws: `ControlProtocolError` with a reason that never repeats the input (it may hold a token).
    package init(jsonLine bytes: [UInt8]) throws {
        let wire = try JSONLine.decode(Wire.self, from: bytes, malformed: "malformed control request (expected one JSON object per line)")
        switch wire.op {
        case "create":
            guard let repos = wire.repos, let token = wire.upstream_token else {
                throw ControlProtocolError(description: "create needs `repos` and `upstream_token`")
            }
            self = .create(repos: repos, ttlSeconds: wire.ttl, upstreamToken: Secret(token), protect: wire.protect ?? [], pushRefs: wire.push_refs ?? [],
                           allowForcePush: wire.allow_force_push ?? [], maxPushSize: wire.max_push_size, pushRate: wire.push_rate)
        case "list":
            self = .list
        case "revoke":
            guard let id = wire.id else { throw ControlProtocolError(description: "revoke needs `id`") }
            self = .revoke(id: id)
        case "secret-set":
            guard let name = wire.name, let secret = wire.secret else {
                throw ControlProtocolError(description: "secret-set needs `name` and `secret`")
            }
            self = .setSecret(name: name, value: Secret(secret))
        case "presets":
            self = .presets
        default:
            throw ControlProtocolError(description: "unknown control operation; expected create, list, revoke, secret-set or presets")
        }
    }
}

/// An answer on the control socket: one JSON object on one line.
///
/// ```
/// {"ok":true,"token":"airlock_s_…","session":{…}}
/// {"ok":true,"sessions":[{…},…]}
/// {"ok":true,"session":{…}}            (revoked)
/// {"ok":true,"secret_set":"anthropic"}
/// {"ok":true,"presets":["anthropic-api","openai-api"]}
/// {"ok":false,"error":"…"}
/// ```
package enum ControlResponse: Sendable, Equatable {
    case created(token: Secret, session: SessionSummary)
    case sessions([SessionSummary])
    case revoked(SessionSummary)
    /// The secret of this name was set; the value is never sent back.
    case secretSet(name: String)
    /// The names (without `@`) of the credential-route presets in force.
    case presets([String])
    case failure(String)

    private struct Wire: Codable {
        var ok: Bool
        var error: String?
        var token: String?
        var session: SessionSummary?
        var sessions: [SessionSummary]?
        var secret_set: String?
        var presets: [String]?
    }

    /// The response as one JSON line, without the newline. Holds the session token for
    /// `created`: written to the socket only, never logged.
    package func jsonLine() throws -> String {
        let wire: Wire
        switch self {
        case let .created(token, session):
            wire = token.withRevealed { Wire(ok: true, token: $0, session: session) }
        case let .sessions(list):
            wire = Wire(ok: true, sessions: list)
        case let .revoked(session):
            wire = Wire(ok: true, session: session)
        case let .secretSet(name):
            wire = Wire(ok: true, secret_set: name)
        case let .presets(names):
            wire = Wire(ok: true, presets: names)
        case let .failure(message):
            wire = Wire(ok: false, error: message)
        }
        return try JSONLine.encode(wire)
    }

    /// Parses one response line.
    /// - Throws: `ControlProtocolError` when the line is not a response.
    package init(jsonLine bytes: [UInt8]) throws {
        let wire = try JSONLine.decode(Wire.self, from: bytes, malformed: "malformed answer from the gateway's control socket")
        if !wire.ok {
            self = .failure(wire.error ?? "the gateway refused the request")
        } else if let token = wire.token, let session = wire.session {
            self = .created(token: Secret(token), session: session)
        } else if let sessions = wire.sessions {
            self = .sessions(sessions)
        } else if let name = wire.secret_set {
            self = .secretSet(name: name)
        } else if let names = wire.presets {
            self = .presets(names)
        } else if let session = wire.session {
            self = .revoked(session)
        } else {
            throw ControlProtocolError(description: "malformed answer from the gateway's control socket")
        }
    }
}

/// A control message that could not be read; one line, never containing the message.
package struct ControlProtocolError: Error, CustomStringConvertible, Equatable {
    package let description: String
}
