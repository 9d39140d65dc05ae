import Foundation
import TestSupport
import XCTest

/// A real git upstream, a real sandbox and a real gateway, in the throwaway namespace.
///
/// Upstream: `scripts/testing/git-server.py` (git http-backend over HTTPS on 127.0.0.1, a CA
/// made here, accepting only the real token). Sandbox: `airlock netns create`. Gateway:
/// `airlock gateway serve … --git-upstream github.com=https://127.0.0.1:PORT --upstream-ca CA`.
/// git runs inside S through `airlock netns exec`.
final class GitRig {
    static let realToken = "ghp_E2Ereal_upstream_TOKEN_0123456789abcdef"
    let dir: TemporaryDirectory
    let name: String
    let port: UInt16
    var server: BackgroundProcess!
    var gateway: BackgroundProcess!
    var gatewayOutput: (stdout: String, stderr: String) = ("", "")
    var serverStderr = ""
    var auditPath: String { dir.file("audit.log") }
    var capturePath: String { dir.file("capture.jsonl") }
    var knobsPath: String { dir.file("knobs.json") }
    var root: String { dir.file("upstream") }
    var sessionTokens: [String] = []
    var transcript: [String] = []
    /// More names on the fixtures' certificate, arguments for git-server.py and for
    /// `gateway serve` (set before `start`).
    var certificateNames: [String] = []
    var serverArguments: [String] = []
    var gatewayArguments: [String] = []
    private var created = false

    init(name: String) throws {
        self.name = name
        dir = try TemporaryDirectory(prefix: "airlock-git-e2e")
        chmod(dir.path, 0o755)
        // The sandboxed git runs as nobody (never the host's root) and clones here.
        chown(dir.path, 65534, 65534)
        port = TCP.freePort()
    }

    /// Makes the CA and certificate, the upstream repositories, and starts everything.
    func start() throws {
        try makeCertificates()
        try makeRepositories()
        try Self.realToken.write(toFile: dir.file("real-token"), atomically: true, encoding: .utf8)
        server = try BackgroundProcess([
            "/usr/bin/python3", TestPaths.fixture("git-server.py"), "--root", root, "--cert", dir.file("server.pem"),
            "--key", dir.file("server.key"), "--token-file", dir.file("real-token"), "--port", String(port),
            "--capture", capturePath, "--knobs", knobsPath,
        ] + serverArguments)
        guard Wait.forTCP(port: port, timeout: 20) else { throw Precondition.unmet("git-server.py did not start: \(server.stop().stderr)") }

        let create = try Run.airlock(["netns", "create", name])
        guard create.status == 0 else { throw GitRigError("netns create failed: \(create)") }
        created = true
        gateway = try BackgroundProcess([
            TestPaths.airlock, "gateway", "serve", name, "--git-upstream", "github.com=https://127.0.0.1:\(port)",
            "--upstream-ca", dir.file("ca.pem"), "--audit-log", auditPath,
        ] + gatewayArguments)
        let ready = Wait.until(timeout: 30) {
            (try? Run.airlock(["session", "list", name], timeout: 10).status) == 0
        }
        guard ready else {
            let out = gateway.stop()
            throw GitRigError("gateway did not become ready: \(out.stdout) \(out.stderr)")
        }
    }

    func stop() {
        if let gateway {
            let out = gateway.stop()
            gatewayOutput = (out.stdout, out.stderr)
        }
        if let server { serverStderr = server.stop().stderr }
        if created { _ = try? Run.airlock(["netns", "destroy", name]) }
    }

    private func makeCertificates() throws {
        _ = try TestCA(in: dir.path, names: ["localhost", "127.0.0.1"] + certificateNames)
    }

    private func makeRepositories() throws {
        for repo in ["repo", "other"] {
            let bare = "\(root)/owner/\(repo).git"
            try git(["init", "-q", "--bare", "-b", "main", bare])
            try git(["-C", bare, "config", "http.receivepack", "true"])
            try git(["-C", bare, "config", "uploadpack.allowFilter", "true"])
            let work = dir.file("seed-\(repo)")
            try git(["init", "-q", "-b", "main", work])
            try "hello from \(repo)\n".write(toFile: work + "/README", atomically: true, encoding: .utf8)
            try git(["-C", work, "add", "README"])
            try git(["-C", work, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "seed \(repo)"])
            try git(["-C", work, "push", "-q", bare, "main"])
        }
    }

    @discardableResult
    func git(_ args: [String]) throws -> ProcessResult {
        // The host's git reads the clones the sandbox (nobody) made: they are not root's.
        // Host-side only, so the machine's /etc/gitconfig is left out here; every git the
        // tests run inside a sandbox keeps it (and the user's), as users have them.
        let r = try Run.process(["git", "-c", "safe.directory=*"] + args, environment: ["PATH": "/usr/bin:/bin", "HOME": dir.path, "GIT_CONFIG_NOSYSTEM": "1"])
        guard r.status == 0 else { throw GitRigError("git \(args.joined(separator: " ")) failed: \(r)") }
        return r
    }

    /// Creates a session through the CLI and returns its token.
    func createSession(_ repos: [String], ttl: String? = nil, push: [String] = []) throws -> String {
        var args = ["session", "create", name] + push
        for repo in repos { args += ["--repo", repo] }
        if let ttl { args += ["--ttl", ttl] }
        let r = try Run.airlock(args, stdin: Self.realToken + "\n")
        transcript.append(r.stdout + r.stderr)
        guard r.status == 0 else { throw GitRigError("session create failed: \(r)") }
        let token = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(token.hasPrefix("airlock_s_"), "session create printed \(r.stdout)")
        XCTAssertFalse(r.stderr.contains(Self.realToken))
        sessionTokens.append(token)
        return token
    }

    /// Runs `argv` inside the sandbox (as nobody, capabilities dropped). With a token, through
    /// `netns exec --session` (the token in AIRLOCK_SESSION_TOKEN, off the command line), so
    /// git is configured exactly as a sandbox runner's would be; without one, git has no
    /// configuration at all.
    @discardableResult
    func inSandbox(_ argv: [String], token: String?, cwd: String? = nil, environment extra: [String] = [], timeout: TimeInterval = 120) throws -> ProcessResult {
        var args = ["netns", "exec", name, "--user", "nobody", "--cwd", cwd ?? dir.path]
        // The machine's own git configuration (/etc/gitconfig) applies, as it does for users.
        for e in ["HOME=\(dir.path)", "GIT_TERMINAL_PROMPT=0", "GIT_AUTHOR_NAME=sandbox",
                  "GIT_AUTHOR_EMAIL=s@example.com", "GIT_COMMITTER_NAME=sandbox", "GIT_COMMITTER_EMAIL=s@example.com"] + extra {
            args += ["--env", e]
        }
        var environment = ProcessInfo.processInfo.environment
        environment["AIRLOCK_SESSION_TOKEN"] = token
        let r = try Run.airlock(args + ["--"] + argv, environment: environment, timeout: timeout)
        transcript.append(r.stdout + r.stderr)
        return r
    }

    /// Upstream's commit for `ref` in `owner/repo`.
    func upstreamCommit(_ repo: String, _ ref: String = "refs/heads/main") throws -> String {
        try git(["--git-dir", "\(root)/owner/\(repo).git", "rev-parse", ref]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var auditLines: [String] {
        ((try? String(contentsOfFile: auditPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Captured upstream requests: method, path, headers.
    var captured: [(method: String, path: String, headers: [(String, String)])] {
        let text = (try? String(contentsOfFile: capturePath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let method = object["method"] as? String, let path = object["path"] as? String,
                  let headers = object["headers"] as? [[String]] else { return nil }
            return (method, path, headers.map { ($0[0], $0[1]) })
        }
    }

    func setKnobs(_ json: String) throws {
        try json.write(toFile: knobsPath, atomically: true, encoding: .utf8)
    }
}

struct GitRigError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

final class GitGatewayTests: XCTestCase {
    var rig: GitRig!
    /// Processes already stopped by hand. Kept alive because `BackgroundProcess.deinit` calls
    /// `stop()` again, which waits a second time for output that was already collected.
    var stopped: [BackgroundProcess] = []

    override func setUpWithError() throws {
        try RootTier.require()
        guard FileManager.default.isExecutableFile(atPath: TestPaths.airlock) else { throw Precondition.unmet("airlock binary not built") }
        rig = try GitRig(name: "g\(getpid() % 10000)\(Int.random(in: 10...99))")
        try rig.start()
    }

    override func tearDown() {
        rig?.stop()
        if let rig { assertNoSecretsLeaked(rig) }
    }

    /// Log scrubbing: neither token appears in the audit log, the gateway's output or the
    /// upstream's log. (The session token is in git's own environment by design.)
    private func assertNoSecretsLeaked(_ rig: GitRig, file: StaticString = #filePath, line: UInt = #line) {
        let haystacks = [
            ("audit log", rig.auditLines.joined(separator: "\n")),
            ("gateway stdout", rig.gatewayOutput.stdout), ("gateway stderr", rig.gatewayOutput.stderr),
            ("git-server log", rig.serverStderr),
        ]
        for secret in [GitRig.realToken] + rig.sessionTokens {
            for (what, text) in haystacks {
                XCTAssertFalse(text.contains(secret), "a token leaked into the \(what)", file: file, line: line)
            }
        }
        let upstreamSaw = (try? String(contentsOfFile: rig.capturePath, encoding: .utf8)) ?? ""
        for secret in rig.sessionTokens {
            XCTAssertFalse(upstreamSaw.contains(secret), "a session token reached the upstream", file: file, line: line)
        }
    }

    private func lastAudit(_ event: String, containing text: String) -> String? {
        rig.auditLines.last { $0.contains("\"event\":\"\(event)\"") && $0.contains(text) }
    }

    /// A user rule rewriting github.com to SSH and a system rule sending one owner to a
    /// mirror, both read before airlock's: the session's per-repository rewrites are longer
    /// and win, for the HTTPS and the SSH spellings alike.
    func testRewritesBeatHostileUserAndSystemRules() throws {
        let token = try rig.createSession(["owner/repo:rw"])
        let system = rig.dir.file("hostile-system.gitconfig")
        try "[url \"https://mirror.invalid/\"]\n\tinsteadOf = https://github.com/owner/\n\tinsteadOf = git@github.com:owner/\n"
            .write(toFile: system, atomically: true, encoding: .utf8)
        let xdg = rig.dir.file("hostile-xdg")
        try FileManager.default.createDirectory(atPath: xdg + "/git", withIntermediateDirectories: true)
        try "[url \"git@github.com:\"]\n\tinsteadOf = https://github.com/\n[url \"ssh://git@github.com/\"]\n\tinsteadOf = ssh://git@github.com:22/\n"
            .write(toFile: xdg + "/git/config", atomically: true, encoding: .utf8)
        let environment = ["GIT_CONFIG_SYSTEM=\(system)", "XDG_CONFIG_HOME=\(xdg)"]
        for (index, url) in ["https://github.com/owner/repo", "git@github.com:owner/repo.git", "ssh://git@github.com:22/owner/repo"].enumerated() {
            let clone = try rig.inSandbox(["git", "clone", "-q", url, "hostile-\(index)"], token: token, environment: environment)
            XCTAssertEqual(clone.status, 0, "\(url): \(clone)")
            XCTAssertEqual(try String(contentsOfFile: rig.dir.file("hostile-\(index)/README"), encoding: .utf8), "hello from repo\n", url)
            let remote = try rig.inSandbox(["git", "remote", "get-url", "origin"], token: token, cwd: rig.dir.file("hostile-\(index)"), environment: environment)
            XCTAssertTrue(remote.stdout.hasPrefix("http://airlock.internal/git/github.com/owner/repo"), "git resolves \(url) to the gateway: \(remote)")
        }
    }

    func testCloneFetchPushInScopeWithProtocolV0AndV2() throws {
        let token = try rig.createSession(["owner/repo:rw"])
        for version in ["2", "0"] {
            let clone = try rig.inSandbox(["git", "-c", "protocol.version=\(version)", "clone", "https://github.com/owner/repo", "clone-v\(version)"], token: token)
            XCTAssertEqual(clone.status, 0, clone.description)
            XCTAssertEqual(try String(contentsOfFile: rig.dir.file("clone-v\(version)/README"), encoding: .utf8), "hello from repo\n")
        }
        // Protocol v2 reached the upstream on the v2 clone; the credential was swapped.
        let requests = rig.captured
        XCTAssertTrue(requests.contains { $0.headers.contains { $0.0.lowercased() == "git-protocol" && $0.1 == "version=2" } })
        for request in requests {
            let auth = request.headers.filter { $0.0.lowercased() == "authorization" }
            XCTAssertEqual(auth.map(\.1), ["Basic " + Data("x-access-token:\(GitRig.realToken)".utf8).base64EncodedString()], request.path)
            XCTAssertTrue(request.headers.contains { $0.0.lowercased() == "user-agent" && $0.1.hasPrefix("git/") })
            XCTAssertFalse(request.headers.contains { $0.0.lowercased() == "cookie" })
        }

        // Push a commit, then fetch it from the other clone.
        let work = rig.dir.file("clone-v2")
        try "change\n".write(toFile: work + "/CHANGE", atomically: true, encoding: .utf8)
        XCTAssertEqual(try rig.inSandbox(["git", "add", "CHANGE"], token: token, cwd: work).status, 0)
        XCTAssertEqual(try rig.inSandbox(["git", "commit", "-q", "-m", "from the sandbox"], token: token, cwd: work).status, 0)
        let push = try rig.inSandbox(["git", "push", "origin", "HEAD:feature"], token: token, cwd: work)
        XCTAssertEqual(push.status, 0, push.description)
        let local = try rig.git(["-C", work, "rev-parse", "HEAD"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/feature"), local)

        let fetch = try rig.inSandbox(["git", "fetch", "origin"], token: token, cwd: rig.dir.file("clone-v0"))
        XCTAssertEqual(fetch.status, 0, fetch.description)
        XCTAssertEqual(try rig.git(["-C", rig.dir.file("clone-v0"), "rev-parse", "origin/feature"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines), local)

        let allow = try XCTUnwrap(lastAudit("git_allow", containing: "\"service\":\"git-receive-pack\""))
        XCTAssertTrue(allow.contains("\"repo\":\"github.com/owner/repo\""))
        XCTAssertTrue(allow.contains("\"status\":200"))
        XCTAssertTrue(allow.contains("\"bytes_up\":"))
        XCTAssertTrue(allow.contains("\"sandbox\":\"\(rig.name)\""))
        XCTAssertNotNil(lastAudit("session_create", containing: "github.com/owner/repo:rw"))
    }

    /// The requests of one clone (`info/refs`, then git-upload-pack's `ls-refs` and
    /// `fetch`) reach the upstream over one kept-alive TLS connection, not one each.
    func testOneClonesRequestsShareOneUpstreamConnection() throws {
        let token = try rig.createSession(["owner/repo"])
        let clone = try rig.inSandbox(["git", "-c", "protocol.version=2", "clone", "-q", "https://github.com/owner/repo", "kept"], token: token)
        XCTAssertEqual(clone.status, 0, clone.description)
        let text = (try? String(contentsOfFile: rig.capturePath, encoding: .utf8)) ?? ""
        let requests = text.split(separator: "\n").compactMap { line -> (path: String, connection: Int)? in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let path = object["path"] as? String, let connection = object["connection"] as? Int else { return nil }
            return (path, connection)
        }
        XCTAssertEqual(requests.count, 3, "\(requests)")
        XCTAssertEqual(Set(requests.map(\.connection)).count, 1, "one upstream connection for the clone's requests: \(requests)")
    }

    /// Pushes through the gateway's push policy, as git shows them: the default branch and
    /// ref deletions are refused with a `remote:` line and git's own `[remote rejected]`,
    /// nothing reaches the upstream; other branches go through; `--push-refs` narrows
    /// pushes to a pattern and `--protect none` lifts the protection.
    func testPushPolicyRefusesProtectedBranchesAndDeletions() throws {
        let token = try rig.createSession(["owner/repo:rw"])
        XCTAssertEqual(try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "policy"], token: token).status, 0)
        let work = rig.dir.file("policy")
        XCTAssertEqual(try rig.inSandbox(["git", "commit", "-q", "--allow-empty", "-m", "policy"], token: token, cwd: work).status, 0)
        let before = try rig.upstreamCommit("repo")

        let main = try rig.inSandbox(["git", "push", "origin", "HEAD:main"], token: token, cwd: work)
        XCTAssertNotEqual(main.status, 0, main.description)
        XCTAssertTrue(main.stderr.contains("remote: airlock: refs/heads/main: main is protected by airlock; push another branch and open a pull request"), main.stderr)
        XCTAssertTrue(main.stderr.contains("! [remote rejected] HEAD -> main (main is protected by airlock; push another branch and open a pull request)"), main.stderr)
        XCTAssertEqual(try rig.upstreamCommit("repo"), before, "nothing reached the upstream")
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"push refused: refs/heads/main: main is protected by airlock"))

        let feature = try rig.inSandbox(["git", "push", "origin", "HEAD:topic"], token: token, cwd: work)
        XCTAssertEqual(feature.status, 0, feature.description)
        let deletion = try rig.inSandbox(["git", "push", "origin", ":topic"], token: token, cwd: work)
        XCTAssertNotEqual(deletion.status, 0, deletion.description)
        XCTAssertTrue(deletion.stderr.contains("! [remote rejected] topic (deleting refs is not allowed through airlock)"), deletion.stderr)
        XCTAssertFalse(try rig.upstreamCommit("repo", "refs/heads/topic").isEmpty, "the branch is still there")

        let agent = try rig.createSession(["owner/repo:rw"], push: ["--push-refs", "agent/*"])
        let outside = try rig.inSandbox(["git", "push", "origin", "HEAD:other"], token: agent, cwd: work)
        XCTAssertTrue(outside.stderr.contains("(this session pushes only to agent/*)"), outside.stderr)
        XCTAssertEqual(try rig.inSandbox(["git", "push", "origin", "HEAD:agent/one"], token: agent, cwd: work).status, 0)

        let open = try rig.createSession(["owner/repo:rw"], push: ["--protect", "none"])
        // main moves to the commit already upstream on topic: the upstream proves it.
        let unprotected = try rig.inSandbox(["git", "push", "origin", "HEAD:main"], token: open, cwd: work)
        XCTAssertEqual(unprotected.status, 0, unprotected.description)
        XCTAssertEqual(try rig.upstreamCommit("repo"), try rig.upstreamCommit("repo", "refs/heads/topic"))
    }

    /// The upstream's default branch is protected even when no pattern names it: HEAD is
    /// `trunk` here. A fast-forward of trunk is refused with git's own `[remote rejected]`
    /// line (the first time at the body's end, after asking the upstream; then, the branch
    /// known, before anything is sent), another branch goes through, an upstream that does
    /// not name its default branch refuses the push, and `--protect none` lifts it all.
    func testTheUpstreamsDefaultBranchIsProtected() throws {
        let bare = "\(rig.root)/owner/repo.git"
        try rig.git(["--git-dir", bare, "update-ref", "refs/heads/trunk", try rig.upstreamCommit("repo")])
        try rig.git(["--git-dir", bare, "symbolic-ref", "HEAD", "refs/heads/trunk"])
        let token = try rig.createSession(["owner/repo:rw", "owner/other:rw"])
        XCTAssertEqual(try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "trunk"], token: token).status, 0)
        let work = rig.dir.file("trunk")
        func inWork(_ argv: String...) throws -> ProcessResult { try rig.inSandbox(argv, token: token, cwd: work) }
        XCTAssertEqual(try inWork("git", "commit", "-q", "--allow-empty", "-m", "on trunk").status, 0)
        let before = try rig.upstreamCommit("repo", "refs/heads/trunk")
        func pushes() -> Int { rig.captured.filter { $0.method == "POST" && $0.path.hasSuffix("/git-receive-pack") }.count }

        let reason = "trunk is the upstream's default branch and protected by airlock; push another branch and open a pull request"
        for round in ["asked", "known"] {
            let sent = pushes()
            let refused = try inWork("git", "push", "origin", "HEAD:trunk")
            XCTAssertNotEqual(refused.status, 0, refused.description)
            XCTAssertTrue(refused.stderr.contains("remote: airlock: refs/heads/trunk: \(reason)"), "\(round): \(refused.stderr)")
            XCTAssertTrue(refused.stderr.contains("! [remote rejected] HEAD -> trunk (\(reason))"), "\(round): \(refused.stderr)")
            XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/trunk"), before, "\(round): the fast-forward was not applied")
            XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"push refused: refs/heads/trunk: \(reason)\""), round)
            XCTAssertEqual(pushes() - sent, round == "asked" ? 1 : 0, "\(round): the pack went upstream only while the branch was unknown")
        }
        let upload = rig.captured.filter { $0.method == "GET" && $0.path.hasSuffix("/info/refs?service=git-upload-pack") && !$0.headers.contains { $0.0.lowercased() == "git-protocol" } }
        XCTAssertFalse(upload.isEmpty, "the default branch was asked of the upstream in protocol v0")
        let topic = try inWork("git", "push", "origin", "HEAD:topic")
        XCTAssertEqual(topic.status, 0, topic.description)
        XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/topic"), try rig.git(["-C", work, "rev-parse", "HEAD"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines))

        // An upstream whose HEAD names no branch cannot say which is protected: refused.
        let otherBare = "\(rig.root)/owner/other.git"
        try rig.git(["--git-dir", otherBare, "update-ref", "--no-deref", "HEAD", try rig.upstreamCommit("other")])
        let unknown = try inWork("git", "push", "https://github.com/owner/other", "HEAD:topic")
        XCTAssertNotEqual(unknown.status, 0, unknown.description)
        let why = "airlock cannot tell which branch is the upstream's default (it is protected): the upstream does not say which branch its HEAD names"
        XCTAssertTrue(unknown.stderr.contains("! [remote rejected] HEAD -> topic (\(why))"), unknown.stderr)
        XCTAssertThrowsError(try rig.upstreamCommit("other", "refs/heads/topic"), "nothing was created")

        let open = try rig.createSession(["owner/repo:rw"], push: ["--protect", "none"])
        let unprotected = try rig.inSandbox(["git", "push", "origin", "HEAD:trunk"], token: open, cwd: work)
        XCTAssertEqual(unprotected.status, 0, unprotected.description)
        XCTAssertNotEqual(try rig.upstreamCommit("repo", "refs/heads/trunk"), before)
    }

    /// Per-session push limits, as git shows them: a push larger than `--max-push-size`
    /// is refused with 413 whether git sends its length (refused before anything is read)
    /// or streams it chunked (cut off, the upstream never gets the pack's end), and
    /// nothing of it is applied; pushes past `--push-rate` get 429 with the wait.
    func testPushSizeAndRateLimits() throws {
        let small = try rig.createSession(["owner/repo:rw"], push: ["--max-push-size", "64K"])
        XCTAssertEqual(try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "limits"], token: small).status, 0)
        let work = rig.dir.file("limits")
        var random = SystemRandomNumberGenerator()
        try Data((0..<(256 * 1024)).map { _ in UInt8.random(in: 0...255, using: &random) }).write(to: URL(fileURLWithPath: work + "/blob.bin"))
        XCTAssertEqual(try rig.inSandbox(["git", "add", "blob.bin"], token: small, cwd: work).status, 0)
        XCTAssertEqual(try rig.inSandbox(["git", "commit", "-q", "-m", "256 KiB"], token: small, cwd: work).status, 0)
        for (mode, config) in [("sized", "http.postBuffer=1048576"), ("chunked", "http.postBuffer=65520")] {
            let refused = try rig.inSandbox(["git", "-c", config, "push", "origin", "HEAD:big-\(mode)"], token: small, cwd: work)
            XCTAssertNotEqual(refused.status, 0, refused.description)
            XCTAssertTrue(refused.stderr.contains("error: RPC failed; HTTP 413"), "\(mode): \(refused.stderr)")
            XCTAssertThrowsError(try rig.upstreamCommit("repo", "refs/heads/big-\(mode)"), "\(mode): nothing was applied")
        }
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"push larger than the session's limit ("))
        XCTAssertTrue(rig.auditLines.contains { $0.contains("\"status\":413") && $0.contains("(over 65536 bytes)") }, "the chunked push was cut off while streaming")
        XCTAssertEqual(try rig.inSandbox(["git", "reset", "-q", "--hard", "HEAD~1"], token: small, cwd: work).status, 0)
        XCTAssertEqual(try rig.inSandbox(["git", "commit", "-q", "--allow-empty", "-m", "small"], token: small, cwd: work).status, 0)
        XCTAssertEqual(try rig.inSandbox(["git", "push", "-q", "origin", "HEAD:small"], token: small, cwd: work).status, 0, "a push within the limit")

        let slow = try rig.createSession(["owner/repo:rw"], push: ["--push-rate", "2/min"])
        for branch in ["rate-1", "rate-2"] {
            let pushed = try rig.inSandbox(["git", "push", "-q", "origin", "HEAD:\(branch)"], token: slow, cwd: work)
            XCTAssertEqual(pushed.status, 0, pushed.description)
        }
        let limited = try rig.inSandbox(["git", "push", "origin", "HEAD:rate-3"], token: slow, cwd: work)
        XCTAssertNotEqual(limited.status, 0, limited.description)
        XCTAssertTrue(limited.stderr.contains("remote: airlock: this session has pushed 2 times in the last minute, its limit; try again in "), limited.stderr)
        XCTAssertTrue(limited.stderr.contains("The requested URL returned error: 429"), limited.stderr)
        XCTAssertThrowsError(try rig.upstreamCommit("repo", "refs/heads/rate-3"))
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"push rate limit reached (2 per minute)\""))
        let fetch = try rig.inSandbox(["git", "fetch", "-q", "origin"], token: slow, cwd: work)
        XCTAssertEqual(fetch.status, 0, "fetching is not limited: \(fetch)")
    }

    /// History rewrites, judged from the pushed pack: a new branch, commits on top and a
    /// merge of the upstream's main go through; a force-push after `commit --amend` is
    /// refused with git's own `[remote rejected]` line, in a small push and in a chunked
    /// one, and the upstream branch stays where it was.
    func testForcePushOfARewrittenHistoryIsRefused() throws {
        let token = try rig.createSession(["owner/repo:rw"])
        XCTAssertEqual(try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "history"], token: token).status, 0)
        let work = rig.dir.file("history")
        func inWork(_ argv: String...) throws -> ProcessResult { try rig.inSandbox(argv, token: token, cwd: work) }
        func local() throws -> String { try rig.git(["-C", work, "rev-parse", "HEAD"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) }

        XCTAssertEqual(try inWork("git", "commit", "-q", "--allow-empty", "-m", "first").status, 0)
        let created = try inWork("git", "push", "origin", "HEAD:topic")
        XCTAssertEqual(created.status, 0, "a new branch: \(created)")
        XCTAssertEqual(try inWork("git", "push", "origin", "HEAD:mirror").status, 0)
        XCTAssertEqual(try inWork("git", "commit", "-q", "--allow-empty", "-m", "second").status, 0)
        let onTop = try inWork("git", "push", "origin", "HEAD:topic")
        XCTAssertEqual(onTop.status, 0, "a commit on top: \(onTop)")
        XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/topic"), try local())

        // Someone else moves main upstream; the sandbox merges it into its branch.
        let seed = rig.dir.file("seed-repo")
        try rig.git(["-C", seed, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "upstream work"])
        try rig.git(["-C", seed, "push", "-q", "\(rig.root)/owner/repo.git", "main"])
        XCTAssertEqual(try inWork("git", "fetch", "-q", "origin").status, 0)
        XCTAssertEqual(try inWork("git", "merge", "-q", "--no-ff", "--no-edit", "origin/main").status, 0)
        let merged = try inWork("git", "push", "origin", "HEAD:topic")
        XCTAssertEqual(merged.status, 0, "a merge of main: \(merged)")
        let before = try rig.upstreamCommit("repo", "refs/heads/topic")
        XCTAssertEqual(before, try local())

        XCTAssertEqual(try inWork("git", "commit", "-q", "--amend", "--allow-empty", "-m", "rewritten").status, 0)
        let forced = try inWork("git", "push", "--force", "origin", "HEAD:topic")
        XCTAssertNotEqual(forced.status, 0, forced.description)
        let reason = "non-fast-forward (history rewrite): the pushed commits do not lead back to \(before.prefix(12)), the ref's current commit; airlock accepts only updates it can prove fast-forward"
        XCTAssertTrue(forced.stderr.contains("! [remote rejected] HEAD -> topic (\(reason))"), forced.stderr)
        XCTAssertTrue(forced.stderr.contains("remote: airlock: refs/heads/topic: \(reason)"), forced.stderr)
        XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/topic"), before, "the upstream branch did not move")
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"push refused: refs/heads/topic: non-fast-forward (history rewrite)"))

        // The same in a chunked push, with a pack larger than git's post buffer.
        var random = SystemRandomNumberGenerator()
        try Data((0..<(256 * 1024)).map { _ in UInt8.random(in: 0...255, using: &random) }).write(to: URL(fileURLWithPath: work + "/blob.bin"))
        XCTAssertEqual(try inWork("git", "add", "blob.bin").status, 0)
        XCTAssertEqual(try inWork("git", "commit", "-q", "--amend", "-m", "rewritten with a blob").status, 0)
        let chunked = try inWork("git", "-c", "http.postBuffer=65520", "push", "--force", "origin", "HEAD:topic")
        XCTAssertNotEqual(chunked.status, 0, chunked.description)
        XCTAssertTrue(chunked.stderr.contains("! [remote rejected] HEAD -> topic (\(reason))"), chunked.stderr + "\nAUDIT:\n" + rig.auditLines.suffix(4).joined(separator: "\n"))
        XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/topic"), before)
        // And a large push on top of the branch goes through.
        XCTAssertEqual(try inWork("git", "reset", "-q", "--soft", before).status, 0)
        XCTAssertEqual(try inWork("git", "commit", "-q", "-m", "a blob on top").status, 0)
        let large = try inWork("git", "-c", "http.postBuffer=65520", "push", "origin", "HEAD:topic")
        XCTAssertEqual(large.status, 0, large.description)
        XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/topic"), try local())
    }

    /// Fast-forwards the pushed pack cannot prove, because the walk leaves it at commits
    /// the upstream has: moving a branch to a commit already upstream, and new commits on
    /// top of commits pushed earlier to another branch. airlock asks the upstream (an
    /// upload-pack fetch, `want` where the walk stopped, `have` the old commit) and they
    /// pass, over protocol v2 with a filter and over v0 without one; moving a branch back
    /// to a commit the upstream has is still refused.
    func testTheUpstreamProvesWhatThePackCannot() throws {
        let token = try rig.createSession(["owner/repo:rw"])
        XCTAssertEqual(try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "ancestry"], token: token).status, 0)
        let work = rig.dir.file("ancestry")
        func inWork(_ argv: String...) throws -> ProcessResult { try rig.inSandbox(argv, token: token, cwd: work) }
        func local(_ revision: String = "HEAD") throws -> String {
            try rig.git(["-C", work, "rev-parse", revision]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func commitAndPush(_ message: String, to branch: String) throws {
            XCTAssertEqual(try inWork("git", "commit", "-q", "--allow-empty", "-m", message).status, 0)
            let pushed = try inWork("git", "push", "-q", "origin", "HEAD:\(branch)")
            XCTAssertEqual(pushed.status, 0, pushed.description)
        }
        try commitAndPush("first", to: "topic")
        XCTAssertEqual(try inWork("git", "push", "-q", "origin", "HEAD:mirror").status, 0)

        for (round, knobs) in ["", "{\"protocol_v0\": true, \"git_config\": {\"uploadpack.allowFilter\": \"false\", \"uploadpack.allowReachableSHA1InWant\": \"true\"}}"].enumerated() {
            try rig.setKnobs(knobs)
            let queriesBefore = rig.captured.filter { $0.method == "POST" && $0.path.hasSuffix("/git-upload-pack") }.count
            // mirror moves to the commit topic has: the push holds no commit at all.
            try commitAndPush("second \(round)", to: "topic")
            let moved = try inWork("git", "push", "origin", "HEAD:mirror")
            XCTAssertEqual(moved.status, 0, "a branch moved to a commit the upstream has: \(moved)")
            XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/mirror"), try local())
            XCTAssertNotNil(lastAudit("git_allow", containing: "\"rule\":\"fast-forward proven by the upstream\""))

            // A commit on top of one pushed to topic only: the walk stops at topic's tip.
            try commitAndPush("third \(round)", to: "topic")
            XCTAssertEqual(try inWork("git", "commit", "-q", "--allow-empty", "-m", "fourth \(round)").status, 0)
            let stacked = try inWork("git", "push", "origin", "HEAD:mirror")
            XCTAssertEqual(stacked.status, 0, "new commits on top of ones pushed to another branch: \(stacked)")
            XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/mirror"), try local())

            // The questions went to the push's repository with the real credential, asked
            // as the server speaks (v2 and a filter; then v0 without one).
            let queries = rig.captured.filter { $0.method == "POST" && $0.path.hasSuffix("/git-upload-pack") }
            XCTAssertGreaterThanOrEqual(queries.count - queriesBefore, 2, "round \(round): \(rig.captured.map { "\($0.method) \($0.path)" })")
            for query in queries.dropFirst(queriesBefore) {
                XCTAssertEqual(query.path, "/owner/repo.git/git-upload-pack")
                XCTAssertEqual(query.headers.filter { $0.0.lowercased() == "authorization" }.map(\.1),
                               ["Basic " + Data("x-access-token:\(GitRig.realToken)".utf8).base64EncodedString()])
                XCTAssertTrue(query.headers.contains { $0.0.lowercased() == "user-agent" && $0.1 == "git/airlock" })
            }
            // A real non-fast-forward: mirror back to a commit the upstream has.
            let back = try local("HEAD~2")
            let before = try rig.upstreamCommit("repo", "refs/heads/mirror")
            let rewound = try inWork("git", "push", "--force", "origin", "\(back):refs/heads/mirror")
            XCTAssertNotEqual(rewound.status, 0, rewound.description)
            let reason = "non-fast-forward (history rewrite): the pushed commits do not lead back to \(before.prefix(12)), the ref's current commit; airlock accepts only updates it can prove fast-forward"
            XCTAssertTrue(rewound.stderr.contains("! [remote rejected] \(back) -> mirror (\(reason))"), rewound.stderr)
            XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/mirror"), before)
        }
    }

    /// When the upstream does not answer the question (an error status, a cut answer),
    /// the push is refused with the cause, and the branch stays where it was.
    func testAnUnansweredAncestryQuestionRefusesThePush() throws {
        let token = try rig.createSession(["owner/repo:rw"])
        XCTAssertEqual(try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "unanswered"], token: token).status, 0)
        let work = rig.dir.file("unanswered")
        func inWork(_ argv: String...) throws -> ProcessResult { try rig.inSandbox(argv, token: token, cwd: work) }
        XCTAssertEqual(try inWork("git", "commit", "-q", "--allow-empty", "-m", "first").status, 0)
        XCTAssertEqual(try inWork("git", "push", "-q", "origin", "HEAD:mirror").status, 0)
        XCTAssertEqual(try inWork("git", "commit", "-q", "--allow-empty", "-m", "second").status, 0)
        XCTAssertEqual(try inWork("git", "push", "-q", "origin", "HEAD:topic").status, 0)
        let before = try rig.upstreamCommit("repo", "refs/heads/mirror")
        let prefix = "not proven fast-forward: cannot ask the upstream whether \(before.prefix(12)) is an ancestor of the pushed commits: "
        for (knobs, cause) in [("{\"only\": \"/git-upload-pack\", \"status\": 500}", "the upstream answered HTTP 500"),
                               ("{\"only\": \"/git-upload-pack\", \"truncate\": 40}", "the upstream closed the connection before its answer ended")] {
            try rig.setKnobs(knobs)
            let refused = try inWork("git", "push", "origin", "HEAD:mirror")
            XCTAssertNotEqual(refused.status, 0, refused.description)
            XCTAssertTrue(refused.stderr.contains("! [remote rejected] HEAD -> mirror (\(prefix)\(cause))"), refused.stderr)
            XCTAssertTrue(refused.stderr.contains("remote: airlock: refs/heads/mirror: \(prefix)\(cause)"), refused.stderr)
            XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/mirror"), before)
            XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"push refused: refs/heads/mirror: \(prefix)\(cause)"))
        }
        try rig.setKnobs("")
        XCTAssertEqual(try inWork("git", "push", "-q", "origin", "HEAD:mirror").status, 0, "answered, the same push goes through")
    }

    /// `--allow-force-push PATTERN`: the session may rewrite the history of matching
    /// branches (an agent rebasing its own branch), and only theirs.
    func testAllowForcePushLetsMatchingBranchesBeRewritten() throws {
        let token = try rig.createSession(["owner/repo:rw"], push: ["--allow-force-push", "agent/*"])
        XCTAssertEqual(try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "rewrite"], token: token).status, 0)
        let work = rig.dir.file("rewrite")
        func inWork(_ argv: String...) throws -> ProcessResult { try rig.inSandbox(argv, token: token, cwd: work) }
        XCTAssertEqual(try inWork("git", "commit", "-q", "--allow-empty", "-m", "first").status, 0)
        XCTAssertEqual(try inWork("git", "push", "-q", "origin", "HEAD:agent/one").status, 0)
        XCTAssertEqual(try inWork("git", "push", "-q", "origin", "HEAD:other").status, 0)
        XCTAssertEqual(try inWork("git", "commit", "-q", "--amend", "--allow-empty", "-m", "first, amended").status, 0)
        let amended = try rig.git(["-C", work, "rev-parse", "HEAD"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        let other = try inWork("git", "push", "--force", "origin", "HEAD:other")
        XCTAssertNotEqual(other.status, 0, other.description)
        XCTAssertTrue(other.stderr.contains("! [remote rejected] HEAD -> other (non-fast-forward (history rewrite)"), other.stderr)

        let rewritten = try inWork("git", "push", "--force", "origin", "HEAD:agent/one")
        XCTAssertEqual(rewritten.status, 0, "a matching branch may be rewritten: \(rewritten)")
        XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/agent/one"), amended)
    }

    func testLargeChunkedPushAndGzipFetch() throws {
        let token = try rig.createSession(["owner/repo:rw"])
        XCTAssertEqual(try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "big"], token: token).status, 0)
        let work = rig.dir.file("big")
        var random = SystemRandomNumberGenerator()
        let bytes = (0..<(3 * 1024 * 1024)).map { _ in UInt8.random(in: 0...255, using: &random) }
        try Data(bytes).write(to: URL(fileURLWithPath: work + "/blob.bin"))
        XCTAssertEqual(try rig.inSandbox(["git", "add", "blob.bin"], token: token, cwd: work).status, 0)
        XCTAssertEqual(try rig.inSandbox(["git", "commit", "-q", "-m", "3 MiB"], token: token, cwd: work).status, 0)
        let push = try rig.inSandbox(["git", "-c", "http.postBuffer=65520", "push", "origin", "HEAD:big"], token: token, cwd: work)
        XCTAssertEqual(push.status, 0, push.description)
        let local = try rig.git(["-C", work, "rev-parse", "HEAD"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(try rig.upstreamCommit("repo", "refs/heads/big"), local)
        // The pack went up in a chunked request (no Content-Length), after git's small probe.
        let pushes = rig.captured.filter { $0.method == "POST" && $0.path.hasSuffix("/git-receive-pack") }
        XCTAssertTrue(pushes.contains { $0.headers.contains { $0.0.lowercased() == "transfer-encoding" && $0.1.lowercased().contains("chunked") } },
                      "captured: \(pushes.map { $0.headers })")
        let allow = try XCTUnwrap(lastAudit("git_allow", containing: "\"service\":\"git-receive-pack\""))
        let up = allow.components(separatedBy: "\"bytes_up\":").last.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
        XCTAssertGreaterThan(up, 3 * 1024 * 1024, allow)

        // A fetch with many refs makes git gzip its upload-pack request.
        for i in 0..<300 { try rig.git(["--git-dir", "\(rig.root)/owner/repo.git", "update-ref", "refs/heads/b\(i)", local]) }
        let fetch = try rig.inSandbox(["git", "fetch", "-q", "origin"], token: token, cwd: rig.dir.file("big"))
        XCTAssertEqual(fetch.status, 0, fetch.description)
    }

    func testRefusalsHaveStatusTextAndAuditLine() throws {
        let read = try rig.createSession(["owner/repo"])

        // Out of scope.
        let other = try rig.inSandbox(["git", "clone", "https://github.com/owner/other"], token: read)
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("403"), other.stderr)
        XCTAssertTrue(other.stderr.contains("airlock: this session does not cover github.com/owner/other"), other.stderr)
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"repository not in session scope\""))

        // Read-only session pushing.
        XCTAssertEqual(try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/repo", "ro"], token: read).status, 0)
        let work = rig.dir.file("ro")
        XCTAssertEqual(try rig.inSandbox(["git", "commit", "-q", "--allow-empty", "-m", "x"], token: read, cwd: work).status, 0)
        let push = try rig.inSandbox(["git", "push", "origin", "HEAD:main"], token: read, cwd: work)
        XCTAssertNotEqual(push.status, 0)
        XCTAssertTrue(push.stderr.contains("airlock: this session has read-only access to github.com/owner/repo; pushing needs --repo github.com/owner/repo:rw"), push.stderr)
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"push with a read-only session\""))

        // Missing and malformed tokens: 401 with the challenge; git fails cleanly without prompting.
        let missing = try rig.inSandbox(["git", "ls-remote", "http://airlock.internal/git/github.com/owner/repo"], token: nil)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("terminal prompts disabled") || missing.stderr.contains("Authentication failed"), missing.stderr)
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"missing session token\""))
        let malformed = try rig.inSandbox(["curl", "-sS", "-i", "-H", "Authorization: Bearer not-a-token",
                                           "http://airlock.internal/git/github.com/owner/repo/info/refs?service=git-upload-pack"], token: nil)
        XCTAssertTrue(malformed.stdout.hasPrefix("HTTP/1.1 401"), malformed.stdout)
        XCTAssertTrue(malformed.stdout.contains("WWW-Authenticate: Basic realm=\"airlock\""), malformed.stdout)
        XCTAssertTrue(malformed.stdout.contains("airlock: the session token is malformed"), malformed.stdout)

        // Traversal and encoded-slash tricks: 400, before any token check.
        for path in ["owner/%2e%2e/other/info/refs?service=git-upload-pack", "owner%2fother/repo/info/refs?service=git-upload-pack"] {
            let r = try rig.inSandbox(["curl", "-sS", "-i", "--path-as-is", "-H", "Authorization: Bearer \(read)",
                                       "http://airlock.internal/git/github.com/\(path)"], token: nil)
            XCTAssertTrue(r.stdout.hasPrefix("HTTP/1.1 400"), r.stdout)
            XCTAssertTrue(r.stdout.contains("airlock: percent-encoded characters are not allowed in git paths"), r.stdout)
        }
        let dotdot = try rig.inSandbox(["curl", "-sS", "-i", "--path-as-is", "-H", "Authorization: Bearer \(read)",
                                        "http://airlock.internal/git/github.com/owner/repo.git/../other.git/info/refs?service=git-upload-pack"], token: nil)
        XCTAssertTrue(dotdot.stdout.hasPrefix("HTTP/1.1 400"), dotdot.stdout)

        // An LFS upload with a read-only session: refused before anything goes upstream.
        let lfs = try rig.inSandbox(["curl", "-sS", "-i", "-X", "POST", "-H", "Authorization: Bearer \(read)",
                                     "-H", "Content-Type: application/vnd.git-lfs+json", "--data", "{\"operation\":\"upload\",\"objects\":[]}",
                                     "http://airlock.internal/git/github.com/owner/repo.git/info/lfs/objects/batch"], token: nil)
        XCTAssertTrue(lfs.stdout.hasPrefix("HTTP/1.1 403"), lfs.stdout)
        XCTAssertTrue(lfs.stdout.contains("{\"message\":\"airlock: this session has read-only access to github.com/owner/repo; LFS upload refused; uploading needs --repo github.com/owner/repo:rw\"}"), lfs.stdout)
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"LFS upload with a read-only session\""))
        XCTAssertFalse(rig.captured.contains { $0.path.contains("/info/lfs/") }, "the refused batch went upstream")
    }

    func testExpiredAndRevokedSessions() throws {
        let short = try rig.createSession(["owner/repo"], ttl: "1s")
        let revoked = try rig.createSession(["owner/repo"])
        let list = try Run.airlock(["session", "list", rig.name, "--json"])
        XCTAssertEqual(list.status, 0)
        XCTAssertFalse(list.stdout.contains(revoked))
        let ids = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]).compactMap { $0["id"] as? String }
        guard ids.count == 2 else { return XCTFail("two live sessions: \(list.stdout)") }
        // Wait until the 1-second session has expired: the other one is then the only live session.
        XCTAssertTrue(Wait.until(timeout: 30) {
            let live = (try? Run.airlock(["session", "list", rig.name, "--json"], timeout: 10))?.stdout ?? ""
            return live.contains(ids[0]) != live.contains(ids[1])
        }, "one session expires")
        let expired = try rig.inSandbox(["curl", "-sS", "-i", "-H", "Authorization: Bearer \(short)",
                                         "http://airlock.internal/git/github.com/owner/repo/info/refs?service=git-upload-pack"], token: nil)
        XCTAssertTrue(expired.stdout.hasPrefix("HTTP/1.1 401"), expired.stdout)
        XCTAssertTrue(expired.stdout.contains("airlock: the session has expired"), expired.stdout)
        XCTAssertNotNil(lastAudit("session_expire", containing: "absolute lifetime reached"))

        let remaining = try Run.airlock(["session", "list", rig.name, "--json"])
        let live = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(remaining.stdout.utf8)) as? [[String: Any]]).compactMap { $0["id"] as? String }
        XCTAssertEqual(live.count, 1)
        let revoke = try Run.airlock(["session", "revoke", rig.name, live[0]])
        XCTAssertEqual(revoke.status, 0, revoke.description)
        let again = try Run.airlock(["session", "revoke", rig.name, live[0]])
        XCTAssertEqual(again.status, 3, again.description)
        // A revoked session is no longer listed, so netns exec cannot learn its repositories
        // (it says so) and the machine's own rules may win for github.com: ask the gateway by its URL.
        let refused = try rig.inSandbox(["git", "ls-remote", "http://airlock.internal/git/github.com/owner/repo"], token: revoked)
        XCTAssertTrue(refused.stderr.contains("airlock: git rewrites cover whole hosts only (the gateway of \(rig.name) has no live session "), refused.stderr)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("terminal prompts disabled") || refused.stderr.contains("Authentication failed"), refused.stderr)
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"the session was revoked\""))
        XCTAssertNotNil(lastAudit("session_revoke", containing: live[0]))
    }

    func testTokenReplayedThroughAnotherSandboxIsRefused() throws {
        let token = try rig.createSession(["owner/repo"])
        // A second sandbox with its own gateway (and its own session store), in front of the
        // same upstream: the token is unknown there. The binding of a session to its sandbox
        // within one store is GatewayTests.SessionBindingTests.
        let other = "h\(getpid() % 10000)\(Int.random(in: 10...99))"
        let create = try Run.airlock(["netns", "create", other])
        XCTAssertEqual(create.status, 0, create.description)
        defer { _ = try? Run.airlock(["netns", "destroy", other]) }
        let otherAudit = rig.dir.file("other-audit.log")
        let gateway = try BackgroundProcess([
            TestPaths.airlock, "gateway", "serve", other, "--git-upstream", "github.com=https://127.0.0.1:\(rig.port)",
            "--upstream-ca", rig.dir.file("ca.pem"), "--audit-log", otherAudit,
        ])
        stopped.append(gateway)
        defer { gateway.stop(signal: SIGTERM, timeout: 10) }
        XCTAssertTrue(Wait.until(timeout: 30) { (try? Run.airlock(["session", "list", other], timeout: 10).status) == 0 })
        let replay = try Run.airlock([
            "netns", "exec", other, "--user", "nobody", "--cwd", rig.dir.path, "--", "curl", "-sS", "-i", "-H", "Authorization: Bearer \(token)",
            "http://airlock.internal/git/github.com/owner/repo/info/refs?service=git-upload-pack",
        ])
        XCTAssertTrue(replay.stdout.hasPrefix("HTTP/1.1 401"), replay.description)
        XCTAssertTrue(replay.stdout.contains("airlock: the session token is not known to this gateway"), replay.description)
        let lines = ((try? String(contentsOfFile: otherAudit, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        XCTAssertNotNil(lines.last { $0.contains("\"event\":\"git_deny\"") && $0.contains("\"status\":401") && $0.contains("\"sandbox\":\"\(other)\"") },
                        lines.joined(separator: "\n"))
        XCTAssertFalse(lines.joined().contains(token))
        // The same token still works on its own sandbox.
        XCTAssertEqual(try rig.inSandbox(["git", "ls-remote", "https://github.com/owner/repo"], token: token).status, 0)
    }

    func testUpstreamFailuresAreNeverPassedThrough() throws {
        let token = try rig.createSession(["owner/repo"])
        try rig.setKnobs("{\"status\": 401}")
        let rejected = try rig.inSandbox(["curl", "-sS", "-i", "-H", "Authorization: Bearer \(token)",
                                          "http://airlock.internal/git/github.com/owner/repo/info/refs?service=git-upload-pack"], token: nil)
        XCTAssertTrue(rejected.stdout.hasPrefix("HTTP/1.1 502"), rejected.stdout)
        XCTAssertTrue(rejected.stdout.contains("airlock: upstream rejected the gateway's credential for github.com"), rejected.stdout)
        XCTAssertFalse(rejected.stdout.lowercased().contains("www-authenticate"))
        try rig.setKnobs("{\"redirect\": \"https://example.invalid/elsewhere\"}")
        let moved = try rig.inSandbox(["git", "ls-remote", "https://github.com/owner/repo"], token: token)
        XCTAssertNotEqual(moved.status, 0)
        XCTAssertTrue(moved.stderr.contains("502") || moved.stderr.contains("airlock does not follow redirects"), moved.stderr)
        try rig.setKnobs("")
        XCTAssertEqual(try rig.inSandbox(["git", "ls-remote", "https://github.com/owner/repo"], token: token).status, 0)
    }

    func testTruncatedUpstreamMakesGitFail() throws {
        let token = try rig.createSession(["owner/repo:rw"])
        // Make the pack big enough to be cut in the middle.
        let seed = rig.dir.file("seed-repo")
        var random = SystemRandomNumberGenerator()
        try Data((0..<(512 * 1024)).map { _ in UInt8.random(in: 0...255, using: &random) }).write(to: URL(fileURLWithPath: seed + "/noise.bin"))
        try rig.git(["-C", seed, "add", "noise.bin"])
        try rig.git(["-C", seed, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "noise"])
        try rig.git(["-C", seed, "push", "-q", "\(rig.root)/owner/repo.git", "main"])
        try rig.setKnobs("{\"truncate\": 100000}")
        let clone = try rig.inSandbox(["git", "clone", "https://github.com/owner/repo", "cut"], token: token)
        XCTAssertNotEqual(clone.status, 0, clone.description)
        // What the user sees: the transfer was cut (the gateway ends the response where the
        // upstream did, never pads or completes it), and git refuses the partial pack.
        XCTAssertTrue(clone.stderr.contains("transfer closed with"), clone.stderr)
        XCTAssertTrue(clone.stderr.contains("fatal: early EOF"), clone.stderr)
        XCTAssertNotNil(lastAudit("git_allow", containing: "closed the connection mid-response"))
    }

    func testControlSocketRefusesNonRootPeer() throws {
        let socket = "/run/airlock/\(rig.name)/control.sock"
        var info = stat()
        XCTAssertEqual(stat(socket, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        let client = """
            import socket,sys
            s=socket.socket(socket.AF_UNIX); s.settimeout(10)
            try:
                s.connect(sys.argv[1])
            except PermissionError:
                print("EACCES"); sys.exit(0)
            print("connected")
            """
        let r = try Run.process(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-c", client, socket])
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "EACCES", r.description)
    }
}
