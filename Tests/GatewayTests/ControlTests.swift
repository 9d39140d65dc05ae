@testable import Gateway
import Foundation
import NIOPosix
import TestSupport
import XCTest
@testable import GatewayCore

final class ControlTests: XCTestCase {
    let upstream = Secret("ghp_CONTROLupstream_TOKEN_987654321")
    var sink: MemoryAuditSink!
    var store: SessionStore!
    var responder: ControlResponder!

    override func setUp() {
        sink = MemoryAuditSink()
        store = SessionStore(audit: AuditLog(sink: sink, sandbox: "sbx"))
        responder = ControlResponder(sandbox: "sbx", sessions: store, gitHosts: ["github.com", "ghe.example.com"])
    }

    private func reveal(_ s: Secret) -> String { s.withRevealed { $0 } }

    func testRequestRoundTrip() throws {
        for request in [
            ControlRequest.create(repos: ["owner/repo:rw", "github.com/o/r"], ttlSeconds: 3600, upstreamToken: upstream),
            .create(repos: ["o/r"], ttlSeconds: nil, upstreamToken: upstream),
            .create(repos: ["o/r:rw"], ttlSeconds: nil, upstreamToken: upstream, protect: ["none"], maxPushSize: "64K", pushRate: "2/min"),
            .list,
            .revoke(id: "0123456789ab"),
        ] {
            let line = try request.jsonLine()
            XCTAssertFalse(line.contains("\n"))
            XCTAssertEqual(try ControlRequest(jsonLine: Array(line.utf8)), request)
        }
        XCTAssertEqual(try ControlRequest.list.jsonLine(), "{\"op\":\"list\"}")
    }

    func testResponseRoundTrip() throws {
        let summary = SessionSummary(id: "0123456789ab", sandbox: "sbx", scope: ["github.com/o/r:rw"], createdAt: 1, expiresAt: 2, lastUsedAt: 1, idleTimeout: 3)
        for response in [
            ControlResponse.created(token: Secret("airlock_s_x"), session: summary),
            .sessions([summary, summary]),
            .sessions([]),
            .revoked(summary),
            .failure("nope"),
        ] {
            let line = try response.jsonLine()
            XCTAssertEqual(try ControlResponse(jsonLine: Array(line.utf8)), response)
        }
        XCTAssertEqual(try ControlResponse.failure("nope").jsonLine(), "{\"error\":\"nope\",\"ok\":false}")
    }

    func testDaemonMessagesRoundTripAndRefuseWhatTheyCannotRead() throws {
        for request in [DaemonRequest.serve(sandbox: "agent1", policy: "/etc/airlock/policies/a.policy"),
                        .serve(sandbox: "agent2", policy: nil), .stop(sandbox: "agent1"), .reload(sandbox: "agent1"), .list] {
            XCTAssertEqual(try DaemonRequest(jsonLine: Array(try request.jsonLine().utf8)), request)
        }
        XCTAssertEqual(try DaemonRequest.stop(sandbox: "a").jsonLine(), "{\"op\":\"stop\",\"sandbox\":\"a\"}")
        let served = ServedSandbox(sandbox: "agent1", policy: nil, address: "10.200.0.1")
        for response in [DaemonResponse.done, .sandboxes([served]), .sandboxes([]), .failure("no sandbox named x")] {
            XCTAssertEqual(try DaemonResponse(jsonLine: Array(try response.jsonLine().utf8)), response)
        }
        let refusals = [("{\"op\":\"serve\"}", "serve needs `sandbox`"),
                        ("{\"op\":\"destroy\",\"sandbox\":\"a\"}", "unknown daemon operation; expected serve, stop, reload or list"),
                        ("serve a", "malformed daemon request (expected one JSON object per line)")]
        for (line, reason) in refusals {
            XCTAssertThrowsError(try DaemonRequest(jsonLine: Array(line.utf8))) {
                XCTAssertEqual(($0 as? ControlProtocolError)?.description, reason)
            }
        }
    }

    /// The user socket's messages: every request and answer survives the wire; what cannot
    /// be read is refused with a reason that never repeats the input (an environment or a
    /// secret travels in them); only HUP, INT and TERM may be forwarded.
    func testUserMessagesRoundTripAndRefuseWhatTheyCannotRead() throws {
        let requests: [UserRequest] = [
            .create(sandbox: "agent1", policy: "pypi.org\n"), .create(sandbox: "agent2", policy: nil),
            .control(sandbox: "agent1", request: "{\"op\":\"list\"}"),
            .exec(sandbox: "agent1", argv: ["./agent.sh", "--fast"], environment: ["LANG": "C.UTF-8"], options: ["--cwd", "/src"],
                  session: "airlock_s_abc", ephemeral: true),
            .exec(sandbox: "agent1", argv: ["true"], environment: [:], options: [], session: nil, ephemeral: false),
            .signal(SIGTERM), .signal(SIGINT), .signal(SIGHUP), .destroy(sandbox: "agent1"), .list,
        ]
        for request in requests {
            XCTAssertEqual(try UserRequest(json: Array(try request.json().utf8)), request)
        }
        XCTAssertEqual(try UserRequest.destroy(sandbox: "a").json(), "{\"op\":\"destroy\",\"sandbox\":\"a\"}")
        let responses: [UserResponse] = [
            .done, .control("{\"ok\":true}"), .sandboxes([UserSandbox(sandbox: "a", owner: 1000, address: "169.254.200.1")]),
            .started(notices: ["airlock: masked /home/u/.ssh"]), .started(notices: []), .exited(0), .exited(130), .failure("no"),
        ]
        for response in responses {
            XCTAssertEqual(try UserResponse(json: Array(try response.json().utf8)), response)
        }
        let refusals = [
            ("{\"op\":\"exec\",\"sandbox\":\"a\",\"environment\":{\"K\":\"LEAKME\"}}", "exec needs `argv` (the command)"),
            ("{\"op\":\"exec\",\"sandbox\":\"a\",\"argv\":[]}", "exec needs `argv` (the command)"),
            ("{\"op\":\"signal\",\"signal\":9}", "signal: expected 1 (HUP), 2 (INT) or 15 (TERM)"),
            ("{\"op\":\"signal\"}", "signal: expected 1 (HUP), 2 (INT) or 15 (TERM)"),
            ("{\"op\":\"destroy\"}", "destroy needs `sandbox`"),
            ("{\"op\":\"control\",\"sandbox\":\"a\"}", "control needs `request`"),
            ("{\"op\":\"serve\",\"sandbox\":\"LEAKME\"}", "unknown operation; expected create, control, exec, signal, destroy or list"),
            ("{\"op\":\"create\",\"policy\":\"LEAKME", "malformed request (expected one JSON object per message)"),
        ]
        for (text, reason) in refusals {
            XCTAssertThrowsError(try UserRequest(json: Array(text.utf8))) {
                XCTAssertEqual(($0 as? ControlProtocolError)?.description, reason)
                XCTAssertFalse(String(describing: $0).contains("LEAKME"))
            }
        }
    }

    func testMalformedRequestsNeverEchoTheInput() {
        let secretish = "{\"op\":\"create\",\"repos\":[\"o/r\"],\"upstream_token\":\"ghp_LEAKME\"" // unterminated
        for line in [secretish, "not json", "{\"op\":\"explode\",\"upstream_token\":\"ghp_LEAKME\"}", "{\"op\":\"create\",\"upstream_token\":\"ghp_LEAKME\"}"] {
            XCTAssertThrowsError(try ControlRequest(jsonLine: Array(line.utf8))) {
                XCTAssertFalse(String(describing: $0).contains("LEAKME"))
            }
        }
    }

    func testResponderCreatesListsRevokes() throws {
        guard case let .created(token, summary) = responder.respond(to: .create(repos: ["Owner/Repo:rw", "ghe.example.com/a/b"], ttlSeconds: 600, upstreamToken: upstream)) else {
            return XCTFail("created")
        }
        XCTAssertTrue(reveal(token).hasPrefix("airlock_s_"))
        XCTAssertEqual(summary.scope, ["github.com/owner/repo:rw", "ghe.example.com/a/b:read"])
        XCTAssertEqual(summary.sandbox, "sbx")
        XCTAssertEqual(summary.expiresAt - summary.createdAt, 600)
        guard case .valid = store.check(token: reveal(token), sandbox: "sbx") else { return XCTFail("usable") }

        let listLine = try responder.respond(to: .list).jsonLine()
        XCTAssertTrue(listLine.contains(summary.id))
        XCTAssertFalse(listLine.contains(reveal(token)))
        XCTAssertFalse(listLine.contains(reveal(upstream)))

        guard case let .revoked(revoked) = responder.respond(to: .revoke(id: summary.id)) else { return XCTFail("revoked") }
        XCTAssertEqual(revoked.id, summary.id)
        XCTAssertEqual(responder.respond(to: .revoke(id: summary.id)), .failure("no live session with id \"\(summary.id)\""))
        XCTAssertEqual(responder.respond(to: .list), .sessions([]))
    }

    func testResponderRefusals() {
        XCTAssertEqual(responder.respond(to: .create(repos: [], ttlSeconds: nil, upstreamToken: upstream)),
                       .failure("name at least one repository (--repo OWNER/REPO[:rw])"))
        XCTAssertEqual(responder.respond(to: .create(repos: ["gitlab.com/o/r"], ttlSeconds: nil, upstreamToken: upstream)),
                       .failure("gitlab.com is not a git host of this gateway (configured: github.com, ghe.example.com; see --git-upstream)"))
        XCTAssertEqual(responder.respond(to: .create(repos: ["o/r"], ttlSeconds: nil, upstreamToken: Secret(""))),
                       .failure("the upstream token is empty"))
        XCTAssertEqual(responder.respond(to: .create(repos: ["o/../r"], ttlSeconds: nil, upstreamToken: upstream)),
                       .failure("scope entry \"o/../r\": owner name \"..\" contains `..`"))
        XCTAssertEqual(store.liveCount, 0)
    }

    // MARK: - over a real Unix socket

    private func withServer(_ body: (String) throws -> Void) async throws {
        let dir = try TemporaryDirectory(prefix: "airlock-control")
        chmod(dir.path, 0o755)
        let path = dir.file("control.sock")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = ControlServer(socket: try ControlSocket(path: path), responder: responder, allowedUIDs: [getuid()], audit: AuditLog(sink: sink, sandbox: "sbx"), group: group)
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        let task = Task { try await server.run() }
        defer { task.cancel() }
        try body(path)
        task.cancel()
        _ = try? await task.value
        try? await group.shutdownGracefully()
    }

    func testClientAndServerOverUnixSocket() async throws {
        try await withServer { path in
            let created = try ControlClient.send(.create(repos: ["owner/repo"], ttlSeconds: nil, upstreamToken: upstream), path: path, sandbox: "sbx")
            guard case let .created(token, summary) = created else { return XCTFail("created: \(created)") }
            XCTAssertTrue(SessionToken.isWellFormed(reveal(token)))
            XCTAssertEqual(try ControlClient.send(.list, path: path, sandbox: "sbx"), .sessions([store.list()[0]]))
            XCTAssertEqual(try ControlClient.send(.revoke(id: "ffffffffffff"), path: path, sandbox: "sbx"), .failure("no live session with id \"ffffffffffff\""))
            guard case .revoked = try ControlClient.send(.revoke(id: summary.id), path: path, sandbox: "sbx") else { return XCTFail("revoked") }
        }
    }

    func testSocketReplacesStaleSocketButNoOtherFile() throws {
        let dir = try TemporaryDirectory(prefix: "airlock-control")
        let path = dir.file("control.sock")
        let first = try ControlSocket(path: path)
        close(first.descriptor)
        // A stale socket file (no listener) answers "connection refused" and is replaced.
        XCTAssertThrowsError(try ControlClient.send(.list, path: path, sandbox: "sbx")) {
            XCTAssertTrue(String(describing: $0).hasPrefix("no gateway is listening on \(path) (stale socket)"))
        }
        let second = try ControlSocket(path: path)
        close(second.descriptor)
        let plain = dir.file("plain")
        FileManager.default.createFile(atPath: plain, contents: Data("x".utf8))
        XCTAssertThrowsError(try ControlSocket(path: plain)) {
            XCTAssertEqual(String(describing: $0), "cannot open control socket \(plain): a file that is not a socket is in the way")
        }
        XCTAssertEqual(try String(contentsOfFile: plain, encoding: .utf8), "x")
    }

    func testClientErrorsWithoutGateway() {
        XCTAssertThrowsError(try ControlClient.send(.list, path: "/nonexistent/dir/control.sock", sandbox: "ghost")) {
            XCTAssertEqual(String(describing: $0), "no gateway is serving ghost (no control socket at /nonexistent/dir/control.sock); start it with `airlock gateway serve ghost`")
            XCTAssertTrue(($0 as? ControlClientError)?.notFound ?? false)
        }
    }

    /// A peer that is neither root nor the gateway's uid is refused even if the socket's
    /// mode were wrong, and the refusal is audited.
    func testNonRootPeerIsRefused() async throws {
        guard getuid() == 0 else { throw Precondition.unmet("needs root to run a client as another uid (nobody)") }
        let client = """
            import socket,sys
            s=socket.socket(socket.AF_UNIX); s.settimeout(10)
            try:
                s.connect(sys.argv[1])
            except PermissionError:
                print("EACCES"); sys.exit(0)
            try:
                s.sendall(b'{"op":"list"}\\n')
            except OSError:
                pass  # the gateway may refuse and close before the request is written
            print(s.makefile().readline().strip())
            """
        try await withServer { path in
            // Mode 0600: the kernel refuses the connect itself.
            let denied = try Run.process(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-c", client, path], timeout: 20)
            XCTAssertEqual(denied.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "EACCES", denied.description)
            // Even with the mode opened up, SO_PEERCRED refuses the peer.
            chmod(path, 0o666)
            let refused = try Run.process(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-c", client, path], timeout: 20)
            XCTAssertEqual(refused.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                           "{\"error\":\"permission denied: control socket: peer uid 65534 refused (only uid 0 may use it)\",\"ok\":false}", refused.description)
            XCTAssertTrue(sink.lines.contains { $0.contains("\"via\":\"control\"") && $0.contains("peer uid 65534 refused") })
        }
    }
}

/// `secret-set` on the control socket: the value travels in the request only, is held by the
/// gateway, and is never sent back, audited or repeated in an error.
final class SecretControlTests: XCTestCase {
    let value = "sk-CONTROL-" + UUID().uuidString

    func testSecretSetRoundTripsAndIsHeld() throws {
        let request = ControlRequest.setSecret(name: "anthropic", value: Secret(value))
        let line = try request.jsonLine()
        XCTAssertEqual(try ControlRequest(jsonLine: Array(line.utf8)), request)
        let response = ControlResponse.secretSet(name: "anthropic")
        let answer = try response.jsonLine()
        XCTAssertEqual(answer, #"{"ok":true,"secret_set":"anthropic"}"#)
        XCTAssertEqual(try ControlResponse(jsonLine: Array(answer.utf8)), response)

        let sink = MemoryAuditSink()
        let secrets = SecretStore()
        let responder = ControlResponder(sandbox: "sbx", sessions: SessionStore(audit: AuditLog(sink: sink)), gitHosts: ["github.com"],
                                         secrets: secrets, audit: AuditLog(sink: sink, sandbox: "sbx"))
        XCTAssertEqual(responder.respond(to: request), .secretSet(name: "anthropic"))
        XCTAssertEqual(secrets.secret(named: "anthropic")?.withRevealed { $0 }, value)
        XCTAssertEqual(sink.lines.count, 1)
        XCTAssertTrue(sink.lines[0].contains(#""event":"secret_set","sandbox":"sbx","via":"control","secret":"anthropic""#), sink.lines[0])
        XCTAssertFalse(sink.lines[0].contains(value))
    }

    func testBadSecretsAreRefusedWithoutTheValue() {
        let secrets = SecretStore()
        let responder = ControlResponder(sandbox: "sbx", sessions: SessionStore(audit: AuditLog(sink: MemoryAuditSink())), gitHosts: ["github.com"], secrets: secrets)
        let cases: [(String, String, String)] = [
            ("Bad Name", value, "\"Bad Name\" is not a secret name (1–64 of a-z, 0-9, '-', '_', '.')"),
            ("a", "", "secret a: the secret is empty"),
            ("a", value + "\n" + value, "secret a: the secret must be one line without control characters"),
            ("a", String(repeating: "k", count: 16 * 1024 + 1), "secret a: the secret is larger than 16384 bytes"),
        ]
        for (name, text, expected) in cases {
            XCTAssertEqual(responder.respond(to: .setSecret(name: name, value: Secret(text))), .failure(expected), name)
        }
        XCTAssertTrue(secrets.names.isEmpty)
        let none = ControlResponder(sandbox: "sbx", sessions: SessionStore(audit: AuditLog(sink: MemoryAuditSink())), gitHosts: ["github.com"])
        XCTAssertEqual(none.respond(to: .setSecret(name: "a", value: Secret(value))), .failure("this gateway holds no route secrets"))
        XCTAssertThrowsError(try ControlRequest(jsonLine: Array(#"{"op":"secret-set","name":"a"}"#.utf8))) { error in
            XCTAssertEqual(String(describing: error), "secret-set needs `name` and `secret`")
        }
    }

    /// `presets` names the credential-route presets of the policy in force, after reloads
    /// too: `netns exec` sets their variables. A route redefined in the policy is no longer
    /// its preset's; a responder without a policy names none.
    func testPresetsNameThePolicysPresetRoutes() throws {
        XCTAssertEqual(try ControlRequest.presets.jsonLine(), #"{"op":"presets"}"#)
        XCTAssertEqual(try ControlRequest(jsonLine: Array(#"{"op":"presets"}"#.utf8)), .presets)
        let answer = try ControlResponse.presets(["anthropic-api", "gemini-api"]).jsonLine()
        XCTAssertEqual(answer, #"{"ok":true,"presets":["anthropic-api","gemini-api"]}"#)
        XCTAssertEqual(try ControlResponse(jsonLine: Array(answer.utf8)), .presets(["anthropic-api", "gemini-api"]))
        XCTAssertEqual(try ControlResponse(jsonLine: Array(#"{"ok":true,"presets":[]}"#.utf8)), .presets([]))

        let audit = AuditLog(sink: MemoryAuditSink())
        let policy = try Policy.parse("""
            @anthropic-api
            @gemini-api
            route openai https://llm.example.com header authorization=bearer:openai
            """, source: "p")
        let store = PolicyStore(initial: policy, files: nil, extra: nil, audit: audit)
        let responder = ControlResponder(sandbox: "sbx", sessions: SessionStore(audit: audit), gitHosts: ["github.com"], policy: store)
        XCTAssertEqual(responder.respond(to: .presets), .presets(["anthropic-api", "gemini-api"]))
        let none = ControlResponder(sandbox: "sbx", sessions: SessionStore(audit: audit), gitHosts: ["github.com"])
        XCTAssertEqual(none.respond(to: .presets), .presets([]))
    }
}
