#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A request on the user socket (`/run/airlock/users.sock`), served by the gateway daemon's
/// broker (`airlock gateway serve --all --users GROUP`): one JSON object per message of a
/// `SOCK_SEQPACKET` connection. Members of the group create sandboxes, use them and destroy
/// them without root; each sandbox belongs to the uid that created it, and only that uid
/// (and root) may use or destroy it.
///
/// ```
/// {"op":"create","sandbox":"agent1","policy":"pypi.org\n"}
/// {"op":"control","sandbox":"agent1","request":"{\"op\":\"create\",…}"}
/// {"op":"exec","sandbox":"agent1","argv":["./agent.sh"],"environment":{…},"options":["--cwd","/src"]}
///     with the caller's standard input, output and error attached (SCM_RIGHTS)
/// {"op":"signal","signal":15}         while an exec runs
/// {"op":"destroy","sandbox":"agent1"}
/// {"op":"list"}
/// ```
package enum UserRequest: Sendable, Equatable {
    /// Make the sandbox `sandbox` (as `netns create` does) and have the daemon serve it with
    /// `policy` (the text of a policy file), or the daemon's default policy for it when nil.
    case create(sandbox: String, policy: String?)
    /// One control-socket request (`ControlRequest`'s line) for the caller's own sandbox:
    /// sessions and secrets.
    case control(sandbox: String, request: String)
    /// Run `argv` inside the caller's sandbox as the caller, with the standard streams
    /// attached to the message. `environment` is the caller's (filtered as `netns exec`
    /// filters it); `options` are `netns exec`'s sandbox options (`--mask`, `--cwd`,
    /// `--share-tmp`, `--allow-nested-namespaces`); `session` a git session token of that
    /// sandbox. With `ephemeral`, the sandbox is destroyed when the command ends or the
    /// caller goes away (`airlock run` through the daemon).
    case exec(sandbox: String, argv: [String], environment: [String: String], options: [String], session: String?, ephemeral: Bool)
    /// Forward a signal to the command of the exec running on this connection.
    case signal(Int32)
    /// Stop serving the caller's sandbox and remove it.
    case destroy(sandbox: String)
    /// The caller's sandboxes (root: every one made through this socket).
    case list

    /// Where the broker listens.
    package static let socketPath = "/run/airlock/users.sock"

    /// Largest request accepted (a policy or an environment travels in one).
    package static let maxBytes = 192 * 1024

    private struct Wire: Codable {
        var op: String
        var sandbox: String?
        var policy: String?
        var request: String?
        var argv: [String]?
        var environment: [String: String]?
        var options: [String]?
        var session: String?
        var ephemeral: Bool?
        var signal: Int32?
    }

    /// The request as one JSON object.
    package func json() throws -> String {
        let wire: Wire
        switch self {
        case let .create(sandbox, policy): wire = Wire(op: "create", sandbox: sandbox, policy: policy)
        case let .control(sandbox, request): wire = Wire(op: "control", sandbox: sandbox, request: request)
        case let .exec(sandbox, argv, environment, options, session, ephemeral):
            wire = Wire(op: "exec", sandbox: sandbox, argv: argv, environment: environment, options: options, session: session,
                        ephemeral: ephemeral ? true : nil)
        case let .signal(number): wire = Wire(op: "signal", signal: number)
        case let .destroy(sandbox): wire = Wire(op: "destroy", sandbox: sandbox)
        case .list: wire = Wire(op: "list")
        }
        return try JSONLine.encode(wire)
    }

    /// Parses one request.
    /// - Throws: `ControlProtocolError` with a reason that never repeats the input (it may
    ///   hold a token or an environment).
    package init(json bytes: [UInt8]) throws {
        let wire = try JSONLine.decode(Wire.self, from: bytes, malformed: "malformed request (expected one JSON object per message)")
        func sandbox() throws -> String {
            guard let name = wire.sandbox else { throw ControlProtocolError(description: "\(wire.op) needs `sandbox`") }
            return name
        }
        switch wire.op {
        case "create": self = .create(sandbox: try sandbox(), policy: wire.policy)
        case "control":
            guard let request = wire.request else { throw ControlProtocolError(description: "control needs `request`") }
            self = .control(sandbox: try sandbox(), request: request)
        case "exec":
            guard let argv = wire.argv, !argv.isEmpty else { throw ControlProtocolError(description: "exec needs `argv` (the command)") }
            self = .exec(sandbox: try sandbox(), argv: argv, environment: wire.environment ?? [:], options: wire.options ?? [],
                         session: wire.session, ephemeral: wire.ephemeral ?? false)
        case "signal":
            guard let number = wire.signal, [SIGINT, SIGTERM, SIGHUP].contains(number) else {
                throw ControlProtocolError(description: "signal: expected 1 (HUP), 2 (INT) or 15 (TERM)")
            }
            self = .signal(number)
        case "destroy": self = .destroy(sandbox: try sandbox())
        case "list": self = .list
        default:
            throw ControlProtocolError(description: "unknown operation; expected create, control, exec, signal, destroy or list")
        }
    }

    /// The operation's name, for the audit line.
    package var op: String {
        switch self {
        case .create: "create"
        case .control: "control"
        case .exec: "exec"
        case .signal: "signal"
        case .destroy: "destroy"
        case .list: "list"
        }
    }

    /// The sandbox named, if any.
    package var sandbox: String? {
        switch self {
        case let .create(sandbox, _), let .control(sandbox, _), let .exec(sandbox, _, _, _, _, _), let .destroy(sandbox): sandbox
        case .signal, .list: nil
        }
    }
}

/// One sandbox of the user socket, as `list` reports it.
package struct UserSandbox: Codable, Sendable, Equatable {
    package var sandbox: String
    /// The uid that created it.
    package var owner: UInt32
    /// Its gateway address inside G.
    package var address: String

    package init(sandbox: String, owner: UInt32, address: String) {
        self.sandbox = sandbox
        self.owner = owner
        self.address = address
    }
}

/// An answer on the user socket: one JSON object per message.
///
/// ```
/// {"ok":true}
/// {"ok":true,"control":"{…}"}                 the control socket's answer line
/// {"ok":true,"sandboxes":[…]}
/// {"ok":true,"started":true,"notices":[…]}    an exec's command has started
/// {"ok":true,"exit":0}                        …and ended, with its shell-style status
/// {"ok":false,"error":"…"}
/// ```
package enum UserResponse: Sendable, Equatable {
    case done
    case control(String)
    case sandboxes([UserSandbox])
    /// The command started; `notices` are lines for the caller's standard error (names
    /// of variables not passed, the view's notes).
    case started(notices: [String])
    /// The command ended with this status (128+signal when a signal ended it).
    case exited(Int32)
    case failure(String)

    private struct Wire: Codable {
        var ok: Bool
        var error: String?
        var control: String?
        var sandboxes: [UserSandbox]?
        var started: Bool?
        var notices: [String]?
        var exit: Int32?
    }

    package func json() throws -> String {
        let wire: Wire
        switch self {
        case .done: wire = Wire(ok: true)
        case let .control(line): wire = Wire(ok: true, control: line)
        case let .sandboxes(list): wire = Wire(ok: true, sandboxes: list)
        case let .started(notices): wire = Wire(ok: true, started: true, notices: notices.isEmpty ? nil : notices)
        case let .exited(status): wire = Wire(ok: true, exit: status)
        case let .failure(message): wire = Wire(ok: false, error: message)
        }
        return try JSONLine.encode(wire)
    }

    package init(json bytes: [UInt8]) throws {
        let wire = try JSONLine.decode(Wire.self, from: bytes, malformed: "malformed answer from the gateway daemon's user socket")
        if !wire.ok {
            self = .failure(wire.error ?? "the gateway daemon refused the request")
        } else if let line = wire.control {
            self = .control(line)
        } else if let list = wire.sandboxes {
            self = .sandboxes(list)
        } else if wire.started == true {
            self = .started(notices: wire.notices ?? [])
        } else if let status = wire.exit {
            self = .exited(status)
        } else {
            self = .done
        }
    }
}
