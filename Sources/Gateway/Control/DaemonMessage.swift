#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A request on the gateway daemon's socket (`airlock gateway serve --all`): one JSON
/// object on one line. The daemon serves many sandboxes in one process; each keeps its
/// own control socket (`/run/airlock/NAME/control`) for sessions and secrets.
///
/// ```
/// {"op":"serve","sandbox":"agent1","policy":"/etc/airlock/policies/agent1.policy"}
/// {"op":"stop","sandbox":"agent1"}
/// {"op":"reload","sandbox":"agent1"}
/// {"op":"list"}
/// ```
package enum DaemonRequest: Sendable, Equatable {
    /// Serve the sandbox `sandbox` (made by `airlock netns create` or the CNI plugin), with
    /// the policy file `policy`, or the default policy files when nil.
    case serve(sandbox: String, policy: String?)
    /// Stop serving `sandbox` (its open connections drain); done already is not an error.
    case stop(sandbox: String)
    /// Re-read the policy of `sandbox`; a policy that does not parse keeps the old one.
    case reload(sandbox: String)
    /// The sandboxes served.
    case list

    /// Where the daemon listens.
    package static let socketPath = "/run/airlock/gateway.sock"

    private struct Wire: Codable {
        var op: String
        var sandbox: String?
        var policy: String?
    }

    /// The request as one JSON line, without the newline.
    package func jsonLine() throws -> String {
        let wire: Wire
        switch self {
        case let .serve(sandbox, policy): wire = Wire(op: "serve", sandbox: sandbox, policy: policy)
        case let .stop(sandbox): wire = Wire(op: "stop", sandbox: sandbox)
        case let .reload(sandbox): wire = Wire(op: "reload", sandbox: sandbox)
        case .list: wire = Wire(op: "list")
        }
        return try JSONLine.encode(wire)
    }

    /// Parses one request line.
    /// - Throws: `ControlProtocolError` with a reason that never repeats the input.
    package init(jsonLine bytes: [UInt8]) throws {
        let wire = try JSONLine.decode(Wire.self, from: bytes, malformed: "malformed daemon request (expected one JSON object per line)")
        func sandbox() throws -> String {
            guard let name = wire.sandbox else { throw ControlProtocolError(description: "\(wire.op) needs `sandbox`") }
            return name
        }
        switch wire.op {
        case "serve": self = .serve(sandbox: try sandbox(), policy: wire.policy)
        case "stop": self = .stop(sandbox: try sandbox())
        case "reload": self = .reload(sandbox: try sandbox())
        case "list": self = .list
        default:
            throw ControlProtocolError(description: "unknown daemon operation; expected serve, stop, reload or list")
        }
    }
}

/// One sandbox the daemon serves, as `list` reports it.
package struct ServedSandbox: Codable, Sendable, Equatable {
    /// The sandbox's name.
    package var sandbox: String
    /// Its policy file, or nil for the default policy files.
    package var policy: String?
    /// Its gateway address inside G.
    package var address: String

    package init(sandbox: String, policy: String?, address: String) {
        self.sandbox = sandbox
        self.policy = policy
        self.address = address
    }
}

/// An answer on the gateway daemon's socket: one JSON object on one line.
///
/// ```
/// {"ok":true}
/// {"ok":true,"sandboxes":[{"address":"10.200.0.1","policy":null,"sandbox":"agent1"}]}
/// {"ok":false,"error":"…"}
/// ```
package enum DaemonResponse: Sendable, Equatable {
    /// Done (serve, stop, reload).
    case done
    /// The sandboxes served, by name.
    case sandboxes([ServedSandbox])
    /// Refused or failed, with the reason (one line).
    case failure(String)

    private struct Wire: Codable {
        var ok: Bool
        var error: String?
        var sandboxes: [ServedSandbox]?
    }

    /// The response as one JSON line, without the newline.
    package func jsonLine() throws -> String {
        let wire: Wire
        switch self {
        case .done: wire = Wire(ok: true)
        case let .sandboxes(list): wire = Wire(ok: true, sandboxes: list)
        case let .failure(message): wire = Wire(ok: false, error: message)
        }
        return try JSONLine.encode(wire)
    }

    /// Parses one response line.
    /// - Throws: `ControlProtocolError` when the line is not a response.
    package init(jsonLine bytes: [UInt8]) throws {
        let wire = try JSONLine.decode(Wire.self, from: bytes, malformed: "malformed answer from the gateway daemon")
        if !wire.ok {
            self = .failure(wire.error ?? "the gateway daemon refused the request")
        } else if let list = wire.sandboxes {
            self = .sandboxes(list)
        } else {
            self = .done
        }
    }
}
