import Foundation
import TestSupport
import XCTest

/// Credential routes end to end: `airlock run --allow @anthropic-api --allow @openai-api
/// --secret …` with curl inside, as root (`--user nobody`) and rootless (uid 65534), against
/// `scripts/testing/api-server.py` standing in for api.anthropic.com and api.openai.com on
/// the throwaway namespace's 127.0.0.1:443 (pinned with `--resolve`, trusted with
/// `--upstream-ca`).
///
/// What a user relies on: the stand-in saw the real key and never the one the client sent;
/// the sandbox's environment, its files and everything it printed never hold the key; the
/// provider variables point at the gateway with a placeholder key; a server-sent-event
/// stream arrives piece by piece; a redirect is refused; audit lines carry no secret.
final class CredentialRouteTests: XCTestCase {
    final class Rig {
        /// New for every test run, so no earlier output can hold them.
        static let anthropicKey = "sk-ant-E2E" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        static let openaiKey = "sk-proj-E2E" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        static let githubToken = "ghp_E2E" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        static let geminiKey = "AIzaE2E" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        let dir: TemporaryDirectory
        let ca: TestCA
        let server: BackgroundProcess
        let binary: String
        var capturePath: String { dir.file("capture.jsonl") }
        var openaiKeyFile: String { dir.file("openai.key") }

        init() throws {
            dir = try TemporaryDirectory(prefix: "airlock-routes-e2e")
            chmod(dir.path, 0o755)
            ca = try TestCA(in: dir.path, names: ["api.anthropic.com", "api.openai.com", "api.github.com", "generativelanguage.googleapis.com", "127.0.0.1"])
            FileManager.default.createFile(atPath: dir.file("capture.jsonl"), contents: nil)
            server = try BackgroundProcess([
                "/usr/bin/python3", TestPaths.fixture("api-server.py"), "--port", "443", "--cert", ca.certificate,
                "--key", ca.key, "--capture", dir.file("capture.jsonl"),
            ])
            guard Wait.forTCP(port: 443, timeout: 20) else {
                throw FixtureError("api-server.py did not start: \(server.stop().stderr)")
            }
            // Rootless, airlock itself runs as uid 65534 and reads the file; inside, it is hidden.
            try (Self.openaiKey + "\n").write(toFile: dir.file("openai.key"), atomically: true, encoding: .utf8)
            chmod(dir.file("openai.key"), 0o644)
            binary = try dir.copyOfAirlock()
        }

        func stop() { _ = server.stop() }

        /// A fresh directory uid 65534 can write.
        func workDirectory() throws -> String {
            try dir.workDirectory()
        }

        /// The requests the stand-in received since `offset` lines.
        func captured(after offset: Int = 0) -> [(method: String, path: String, headers: [(String, String)])] {
            guard let text = try? String(contentsOfFile: capturePath, encoding: .utf8) else { return [] }
            return text.split(separator: "\n").dropFirst(offset).compactMap { line in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let method = object["method"] as? String, let path = object["path"] as? String,
                      let headers = object["headers"] as? [[String]] else { return nil }
                return (method, path, headers.map { ($0[0], $0[1]) })
            }
        }
    }

    static let shared = SharedRig<Rig>("credential route rig")

    override class func setUp() {
        super.setUp()
        shared.setUp { try Rig() }
    }

    override class func tearDown() {
        shared.tearDown()
        super.tearDown()
    }

    var rig: Rig {
        get throws { try Self.shared.get() }
    }

    func runArgv(_ mode: RunMode, _ rig: Rig) -> [String] {
        switch mode {
        case .root: [rig.binary, "run", "--user", "nobody"]
        case .rootless: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", rig.binary, "run"]
        }
    }

    /// The flags that send the presets' upstream names to the stand-in.
    func standInFlags(_ rig: Rig) -> [String] {
        [
            "--upstream-ca", rig.ca.caFile, "--allow-private", "127.0.0.0/8",
            "--resolve", "api.anthropic.com=127.0.0.1", "--resolve", "api.openai.com=127.0.0.1",
            "--resolve", "generativelanguage.googleapis.com=127.0.0.1",
        ]
    }

    /// Runs `airlock run FLAGS -- /bin/sh -c SCRIPT` from `directory` (shared with the
    /// command; the stand-in's capture file, which holds the real keys, is not in it).
    func airlockRun(
        _ mode: RunMode, _ flags: [String], script: String, stdin: String? = nil, directory: String? = nil, extraEnvironment: [String: String] = [:]
    ) throws -> ProcessResult {
        let rig = try rig
        let directory = try directory ?? rig.workDirectory()
        let environment = [
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/nonexistent", "LANG": "C",
            "ANTHROPIC_API_KEY": Rig.anthropicKey,
        ].merging(extraEnvironment) { _, extra in extra }
        return try Run.process(runArgv(mode, rig) + flags + ["--", "/bin/sh", "-c", script],
                               environment: environment, stdin: stdin, currentDirectory: directory, timeout: 120)
    }

    func auditLines(_ path: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    func testPresetsSwapInTheKeyAndTheSandboxNeverHoldsIt() throws {
        try RootTier.require()
        for mode in RunMode.allCases {
            let rig = try rig
            let before = rig.captured().count
            let work = try rig.workDirectory()
            let audit = mode == .root ? rig.dir.file("audit-\(UUID().uuidString.prefix(8)).jsonl") : work + "/audit.jsonl"
            // The key file sits in the working directory, which the command shares: it must be hidden.
            let keyFile = work + "/openai.key"
            try FileManager.default.copyItem(atPath: rig.openaiKeyFile, toPath: keyFile)
            chmod(keyFile, 0o644)
            let result = try airlockRun(mode, standInFlags(rig) + [
                "--allow", "@anthropic-api", "--allow", "@openai-api", "--audit-log", audit,
                "--secret", "anthropic=env:ANTHROPIC_API_KEY", "--secret", "openai=file:\(keyFile)",
            ], script: """
                echo "== env"; env
                echo "== messages"
                curl -sS -X POST -H 'x-api-key: key-the-sandbox-sent' -H 'Authorization: Bearer also-sent' \
                  -H 'content-type: application/json' --data '{"model":"m","max_tokens":1}' "$ANTHROPIC_BASE_URL/v1/messages"
                echo; echo "== chat"
                curl -sS -X POST -H "Authorization: Bearer $OPENAI_API_KEY" --data '{}' "$OPENAI_BASE_URL/chat/completions"
                echo; echo "== redirect"
                curl -sS -w ' %{http_code}\\n' "$ANTHROPIC_BASE_URL/v1/redirect"
                echo "== files"
                cat \(keyFile) 2>&1; cat /proc/self/environ 2>&1 | tr '\\0' '\\n'
                grep -rs 'sk-' \(work) /tmp 2>/dev/null | head -5
                echo "== stream"
                curl -sSN "$ANTHROPIC_BASE_URL/v1/stream?pieces=3&gap=1" | while IFS= read -r line; do
                  [ -n "$line" ] && echo "T $(date +%s.%N) $line"
                done
                exit 0
                """, directory: work)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            let out = result.stdout

            // The sandbox: provider variables point at the gateway, the key is a placeholder.
            XCTAssertTrue(out.contains("ANTHROPIC_BASE_URL=http://airlock.internal/api/anthropic\n"), "\(mode): \(out)")
            XCTAssertTrue(out.contains("OPENAI_BASE_URL=http://airlock.internal/api/openai/v1\n"), "\(mode): \(out)")
            XCTAssertTrue(out.contains("ANTHROPIC_API_KEY=airlock-placeholder-key-the-gateway-adds-the-real-one\n"), "\(mode): \(out)")
            XCTAssertTrue(out.contains("OPENAI_API_KEY=airlock-placeholder-key-the-gateway-adds-the-real-one\n"), "\(mode): \(out)")
            for key in [Rig.anthropicKey, Rig.openaiKey] {
                XCTAssertFalse(out.contains(key), "\(mode): a real key reached the sandbox: \(out)")
                XCTAssertFalse(result.stderr.contains(key), "\(mode): \(result.stderr)")
            }

            // The answers came through the routes.
            XCTAssertTrue(out.contains(#"{"path": "/v1/messages", "received_bytes": 28}"#), "\(mode): \(out)")
            XCTAssertTrue(out.contains(#"{"path": "/v1/chat/completions", "received_bytes": 2}"#), "\(mode): \(out)")
            XCTAssertTrue(out.contains("airlock: route anthropic: the upstream answered with a redirect (HTTP 302); airlock does not follow redirects\n 502"), "\(mode): \(out)")

            // The stand-in saw the real keys, and never what the sandbox sent.
            let seen = rig.captured(after: before)
            let messages = try XCTUnwrap(seen.first { $0.path == "/v1/messages" }, "\(mode): \(seen)")
            XCTAssertEqual(messages.method, "POST")
            XCTAssertEqual(messages.headers.filter { $0.0 == "x-api-key" }.map(\.1), [Rig.anthropicKey], "\(mode)")
            XCTAssertFalse(messages.headers.contains { $0.0 == "authorization" }, "\(mode): \(messages.headers)")
            XCTAssertEqual(messages.headers.first { $0.0 == "host" }?.1, "api.anthropic.com")
            let chat = try XCTUnwrap(seen.first { $0.path == "/v1/chat/completions" }, "\(mode): \(seen)")
            XCTAssertEqual(chat.headers.filter { $0.0 == "authorization" }.map(\.1), ["Bearer \(Rig.openaiKey)"], "\(mode)")
            XCTAssertFalse(seen.contains { $0.headers.contains { $0.1.contains("sent") || $0.1.contains("placeholder") } }, "\(mode): \(seen)")

            // Server-sent events arrive as they are sent, about a second apart.
            let times = out.split(separator: "\n").filter { $0.hasPrefix("T ") }.compactMap { Double($0.split(separator: " ")[1]) }
            XCTAssertEqual(times.count, 3, "\(mode): \(out)")
            if times.count == 3 {
                XCTAssertGreaterThan(times[1] - times[0], 0.6, "\(mode): the first piece was held back: \(times)")
                XCTAssertGreaterThan(times[2] - times[1], 0.6, "\(mode): \(times)")
            }

            // One audit line per request, with the route and path, and no secret anywhere.
            let auditText = (try? String(contentsOfFile: audit, encoding: .utf8)) ?? ""
            let lines = auditLines(audit).filter { $0["via"] as? String == "api" }
            XCTAssertEqual(lines.count, 4, "\(mode): \(auditText)")
            let allowed = lines.first { $0["event"] as? String == "api_allow" && $0["path"] as? String == "/v1/messages" }
            XCTAssertEqual(allowed?["route"] as? String, "anthropic", "\(mode): \(auditText)")
            XCTAssertEqual(allowed?["method"] as? String, "POST")
            XCTAssertEqual(allowed?["status"] as? Int, 200)
            XCTAssertEqual(allowed?["bytes_up"] as? Int, 28)
            XCTAssertNotNil(allowed?["ms"])
            XCTAssertTrue(lines.contains { $0["event"] as? String == "api_deny" && $0["path"] as? String == "/v1/redirect" }, "\(mode): \(auditText)")
            for key in [Rig.anthropicKey, Rig.openaiKey, "key-the-sandbox-sent", "also-sent"] {
                XCTAssertFalse(auditText.contains(key), "\(mode): \(auditText)")
            }
        }
    }

    /// `--allow @github-api` with `--repo`: the stand-in answers for api.github.com. The rw
    /// session opens a pull request in its repository and the stand-in sees the real token;
    /// a read-only repository, another repository and a token the sandbox made up are refused
    /// in GitHub's JSON shape without reaching the stand-in; the sandbox never holds the
    /// real token, only the session token, which is refused anywhere but its gateway.
    func testTheGitHubAPIRouteOpensAPullRequestOnlyInTheSessionsRepositories() throws {
        try RootTier.require()
        for mode in RunMode.allCases {
            let rig = try rig
            let before = rig.captured().count
            let work = try rig.workDirectory()
            let audit = mode == .root ? rig.dir.file("audit-\(UUID().uuidString.prefix(8)).jsonl") : work + "/audit.jsonl"
            let result = try airlockRun(mode, standInFlags(rig) + [
                "--resolve", "api.github.com=127.0.0.1", "--allow", "@github-api", "--repo", "owner/app:rw", "--repo", "owner/docs",
                "--token-env", "GH_UPSTREAM", "--audit-log", audit,
            ], script: """
                echo "== env"; env
                echo "== create"
                curl -sS -w ' %{http_code}\\n' -X POST -H "Authorization: token $GITHUB_TOKEN" -H 'content-type: application/json' \
                  --data '{"title":"t","head":"agent/x","base":"main"}' "$GITHUB_API_URL/repos/Owner/App/pulls"
                echo "== read-only"
                curl -sS -w ' %{http_code}\\n' -X POST -H "Authorization: token $GITHUB_TOKEN" --data '{}' "$GITHUB_API_URL/repos/owner/docs/pulls"
                echo "== other"
                curl -sS -w ' %{http_code}\\n' -H "Authorization: Bearer $GITHUB_TOKEN" "$GITHUB_API_URL/repos/owner/secret-repo"
                echo "== made up"
                curl -sS -w ' %{http_code}\\n' -H "Authorization: token ghp_madeUpByTheSandbox" "$GITHUB_API_URL/user"
                echo "== files"
                grep -rs 'ghp_E2E' \(work) /tmp /proc/self/environ 2>/dev/null | head -5
                exit 0
                """, directory: work, extraEnvironment: ["GH_UPSTREAM": Rig.githubToken])
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            let out = result.stdout
            XCTAssertFalse(out.contains(Rig.githubToken) || result.stderr.contains(Rig.githubToken), "\(mode): the real token reached the sandbox: \(result)")

            // Inside: the API URL points at the gateway; the token variables hold the session token.
            XCTAssertTrue(out.contains("GITHUB_API_URL=http://airlock.internal/api/github\n"), "\(mode): \(out)")
            let sessionToken = try XCTUnwrap(out.split(separator: "\n").first { $0.hasPrefix("GITHUB_TOKEN=") }?.dropFirst("GITHUB_TOKEN=".count), "\(mode): \(out)")
            XCTAssertTrue(sessionToken.hasPrefix("airlock_s_"), "\(mode): \(out)")
            XCTAssertTrue(out.contains("GH_ENTERPRISE_TOKEN=\(sessionToken)\n"), "\(mode): \(out)")
            XCTAssertFalse(out.contains("GH_UPSTREAM="), "\(mode): \(out)")

            // The pull request was opened; the refusals say why, as GitHub's clients expect.
            XCTAssertTrue(out.contains(#"{"number": 1, "state": "open", "url": "https://api.github.com/repos/Owner/App/pulls/1", "received_bytes": 44} 201"#), "\(mode): \(out)")
            XCTAssertTrue(out.contains(#"{"message":"airlock: route github: this session has read-only access to github.com/owner/docs; POST /repos/{owner}/{repo}/pulls needs --repo github.com/owner/docs:rw"}\#n 403"#), "\(mode): \(out)")
            XCTAssertTrue(out.contains(#"{"message":"airlock: route github: this session does not cover github.com/owner/secret-repo"}\#n 403"#), "\(mode): \(out)")
            XCTAssertTrue(out.contains(#"{"message":"airlock: route github: the session token is malformed"}\#n 401"#), "\(mode): \(out)")

            // Only the allowed request reached the stand-in, with the real token and nothing the sandbox sent.
            let seen = rig.captured(after: before)
            XCTAssertEqual(seen.map { "\($0.method) \($0.path)" }, ["POST /repos/Owner/App/pulls"], "\(mode): \(seen)")
            XCTAssertEqual(seen.first?.headers.filter { $0.0 == "authorization" }.map(\.1), ["Bearer \(Rig.githubToken)"], "\(mode)")
            XCTAssertEqual(seen.first?.headers.first { $0.0 == "host" }?.1, "api.github.com")
            XCTAssertFalse(seen.contains { $0.headers.contains { $0.1.contains("airlock_s_") } }, "\(mode): the session token went upstream: \(seen)")

            // Audited: one allow, three denials with their reasons, no token of any kind.
            let auditText = (try? String(contentsOfFile: audit, encoding: .utf8)) ?? ""
            let lines = auditLines(audit).filter { $0["via"] as? String == "api" }
            XCTAssertEqual(lines.map { $0["event"] as? String ?? "" }.sorted(), ["api_allow", "api_deny", "api_deny", "api_deny"], "\(mode): \(auditText)")
            XCTAssertTrue(lines.contains { $0["event"] as? String == "api_allow" && $0["path"] as? String == "/repos/Owner/App/pulls" && $0["status"] as? Int == 201 && $0["session"] != nil },
                          "\(mode): \(auditText)")
            for secret in [Rig.githubToken, String(sessionToken), "ghp_madeUpByTheSandbox"] {
                XCTAssertFalse(auditText.contains(secret), "\(mode): \(auditText)")
            }
        }
    }

    func testTheGitHubAPIPresetWithoutASessionIsRefusedBeforeAnythingRuns() throws {
        try RootTier.require()
        let rig = try rig
        let marker = try rig.workDirectory() + "/ran"
        let result = try airlockRun(.rootless, ["--allow", "@github-api"], script: "touch \(marker)")
        XCTAssertEqual(result.status, 125, "\(result)")
        XCTAssertEqual(result.stderr, "airlock: error: route github uses the git session's repositories and token: pass --repo OWNER/REPO[:rw] with --token-env VAR or --token-file FILE\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the command ran")
    }

    /// Where `scripts/setup` installs the official `anthropic` and `openai` Python SDKs from
    /// PyPI for these tests (a venv every account can read).
    static let sdkPython = "/var/cache/airlock-tests/sdk-venv/bin/python"

    /// The official SDKs, configured by nothing but what the presets set inside: a request and
    /// a stream each, printed with the time every streamed piece arrived.
    static let sdkScript = """
        import time
        import anthropic, openai
        prompt = [{"role": "user", "content": "hi"}]
        a = anthropic.Anthropic(max_retries=0)
        print("anthropic:", a.messages.create(model="claude-test", max_tokens=8, messages=prompt).content[0].text)
        with a.messages.stream(model="claude-test", max_tokens=8, messages=prompt) as stream:
            for text in stream.text_stream:
                print("A", time.time(), text.strip(), flush=True)
        o = openai.OpenAI(max_retries=0)
        print("openai:", o.chat.completions.create(model="gpt-test", messages=prompt).choices[0].message.content)
        for chunk in o.chat.completions.create(model="gpt-test", messages=prompt, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                print("O", time.time(), chunk.choices[0].delta.content.strip(), flush=True)
        """

    /// The official `anthropic` and `openai` SDKs inside `airlock run`, given only the presets
    /// and the secrets: requests succeed, streams arrive piece by piece, the stand-in saw the
    /// real keys, and the sandbox never held them.
    func testTheOfficialSDKsWorkWithOnlyThePresetsAndNeverSeeTheKeys() throws {
        try RootTier.require()
        try Precondition.require(FileManager.default.isExecutableFile(atPath: Self.sdkPython),
                                 "the anthropic and openai SDKs in \(Self.sdkPython) (scripts/setup installs them from PyPI)")
        for mode in RunMode.allCases {
            let rig = try rig
            let before = rig.captured().count
            let work = try rig.workDirectory()
            try Self.sdkScript.write(toFile: work + "/sdk.py", atomically: true, encoding: .utf8)
            let keyFile = rig.dir.file("openai-\(mode).key")
            try FileManager.default.copyItem(atPath: rig.openaiKeyFile, toPath: keyFile)
            chmod(keyFile, 0o644)
            let result = try airlockRun(mode, standInFlags(rig) + [
                "--allow", "@anthropic-api", "--allow", "@openai-api",
                "--secret", "anthropic=env:ANTHROPIC_API_KEY", "--secret", "openai=file:\(keyFile)",
            ], script: "\(Self.sdkPython) \(work)/sdk.py && env && grep -rs 'sk-' \(work) /tmp; exit 0", directory: work)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            let out = result.stdout
            XCTAssertTrue(out.contains("anthropic: hello from the stand-in ("), "\(mode): \(result)")
            XCTAssertTrue(out.contains("openai: hello from the stand-in ("), "\(mode): \(result)")
            for (prefix, name) in [("A ", "anthropic"), ("O ", "openai")] {
                let pieces = out.split(separator: "\n").filter { $0.hasPrefix(prefix) }
                XCTAssertEqual(pieces.map { $0.split(separator: " ").dropFirst(2).joined(separator: " ") }, ["one", "two", "three"],
                               "\(mode): \(name)'s stream: \(out)")
                let times = pieces.compactMap { Double($0.split(separator: " ")[1]) }
                if times.count == 3 {
                    XCTAssertGreaterThan(times[1] - times[0], 0.4, "\(mode): \(name)'s pieces were held back: \(times)")
                    XCTAssertGreaterThan(times[2] - times[1], 0.4, "\(mode): \(name): \(times)")
                }
            }
            for key in [Rig.anthropicKey, Rig.openaiKey] {
                XCTAssertFalse(out.contains(key) || result.stderr.contains(key), "\(mode): a real key reached the sandbox: \(result)")
            }
            let seen = rig.captured(after: before)
            let messages = seen.filter { $0.path == "/v1/messages" }
            let chats = seen.filter { $0.path == "/v1/chat/completions" }
            XCTAssertEqual(messages.count, 2, "\(mode): \(seen.map(\.path))")
            XCTAssertEqual(chats.count, 2, "\(mode): \(seen.map(\.path))")
            for request in messages {
                XCTAssertEqual(request.headers.filter { $0.0 == "x-api-key" }.map(\.1), [Rig.anthropicKey], "\(mode)")
                XCTAssertTrue(request.headers.contains { $0.0 == "x-stainless-lang" }, "\(mode): sent by the SDK: \(request.headers)")
            }
            for request in chats {
                XCTAssertEqual(request.headers.filter { $0.0 == "authorization" }.map(\.1), ["Bearer \(Rig.openaiKey)"], "\(mode)")
            }
            XCTAssertFalse(seen.contains { $0.headers.contains { $0.1.contains("placeholder") } }, "\(mode): \(seen)")
        }
    }

    /// The official `google-genai` SDK, configured by nothing but what `@gemini-api` sets.
    static let geminiScript = """
        import time
        from google import genai
        client = genai.Client()
        print("gemini:", client.models.generate_content(model="gemini-test", contents="hi").text)
        for chunk in client.models.generate_content_stream(model="gemini-test", contents="hi"):
            print("G", time.time(), chunk.text.strip(), flush=True)
        """

    /// `@gemini-api` against a stand-in in Gemini's shape: the official `google-genai` SDK
    /// (its base URL and key from the preset's variables alone) gets an answer and a stream
    /// piece by piece, and curl's own `x-goog-api-key` is replaced; the stand-in saw only the
    /// real key, in `x-goog-api-key`, and the sandbox never held it.
    func testTheGeminiPresetServesTheOfficialSDKWithoutTheKey() throws {
        try RootTier.require()
        let probe = try? Run.process([Self.sdkPython, "-c", "import google.genai"], environment: ["PATH": "/usr/bin:/bin"])
        try Precondition.require(probe?.status == 0, "the google-genai SDK in \(Self.sdkPython) (scripts/setup installs it from PyPI)")
        for mode in RunMode.allCases {
            let rig = try rig
            let before = rig.captured().count
            let work = try rig.workDirectory()
            try Self.geminiScript.write(toFile: work + "/gemini.py", atomically: true, encoding: .utf8)
            let result = try airlockRun(mode, standInFlags(rig) + ["--allow", "@gemini-api", "--secret", "gemini=env:GEMINI_API_KEY"], script: """
                \(Self.sdkPython) \(work)/gemini.py
                curl -sS -X POST -H 'x-goog-api-key: key-the-sandbox-sent' --data '{"contents":[]}' \\
                  "$GOOGLE_GEMINI_BASE_URL/v1beta/models/gemini-test:generateContent"; echo
                env; exit 0
                """, directory: work, extraEnvironment: ["GEMINI_API_KEY": Rig.geminiKey])
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            let out = result.stdout
            XCTAssertTrue(out.contains("GOOGLE_GEMINI_BASE_URL=http://airlock.internal/api/gemini\n"), "\(mode): \(out)")
            XCTAssertTrue(out.contains("GEMINI_API_KEY=airlock-placeholder-key-the-gateway-adds-the-real-one\n"), "\(mode): \(out)")
            XCTAssertTrue(out.contains("gemini: hello from the stand-in ("), "\(mode): \(result)")
            XCTAssertTrue(out.contains(#""text": "hello from the stand-in (15 bytes)""#), "curl's answer: \(mode): \(out)")
            let pieces = out.split(separator: "\n").filter { $0.hasPrefix("G ") }
            XCTAssertEqual(pieces.map { $0.split(separator: " ").dropFirst(2).joined(separator: " ") }, ["one", "two", "three"], "\(mode): \(out)")
            let times = pieces.compactMap { Double($0.split(separator: " ")[1]) }
            if times.count == 3 {
                XCTAssertGreaterThan(times[1] - times[0], 0.4, "\(mode): the pieces were held back: \(times)")
                XCTAssertGreaterThan(times[2] - times[1], 0.4, "\(mode): \(times)")
            }
            XCTAssertFalse(out.contains(Rig.geminiKey) || result.stderr.contains(Rig.geminiKey), "\(mode): the key reached the sandbox: \(result)")

            let seen = rig.captured(after: before)
            // The SDK picks the API version (v1 with a base URL of one's own); curl asked for v1beta.
            let requests = seen.filter { $0.path.contains("/models/gemini-test:") }
            XCTAssertEqual(requests.compactMap { $0.path.split(separator: "/").last }.sorted(), [
                "gemini-test:generateContent", "gemini-test:generateContent", "gemini-test:streamGenerateContent?alt=sse",
            ], "\(mode): \(seen.map(\.path))")
            for request in requests {
                XCTAssertEqual(request.headers.filter { $0.0 == "x-goog-api-key" }.map(\.1), [Rig.geminiKey], "\(mode): \(request.headers)")
                XCTAssertEqual(request.headers.first { $0.0 == "host" }?.1, "generativelanguage.googleapis.com")
            }
            XCTAssertTrue(requests.contains { $0.headers.contains { $0.0 == "x-goog-api-client" && $0.1.contains("google-genai-sdk") } },
                          "\(mode): sent by the SDK: \(requests.map(\.headers))")
            XCTAssertFalse(seen.contains { $0.headers.contains { $0.1.contains("placeholder") || $0.1.contains("sandbox-sent") } }, "\(mode): \(seen)")
        }
    }

    func testARouteWithoutItsSecretIsRefusedBeforeAnythingRuns() throws {
        try RootTier.require()
        let rig = try rig
        let marker = try rig.workDirectory() + "/ran"
        let missing = try airlockRun(.rootless, standInFlags(rig) + ["--allow", "@anthropic-api"], script: "touch \(marker)")
        XCTAssertEqual(missing.status, 125, "\(missing)")
        XCTAssertEqual(missing.stderr, "airlock: error: route anthropic (@anthropic-api) needs the secret anthropic: ANTHROPIC_API_KEY is set here; pass --secret anthropic=env:ANTHROPIC_API_KEY to use it\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the command ran")

        let custom = try airlockRun(.rootless, ["--route", "corp https://127.0.0.1 header x-token=secret:corp"], script: "touch \(marker)")
        XCTAssertEqual(custom.stderr, "airlock: error: route corp needs the secret corp, which was not given: pass --secret corp=env:VAR, --secret corp=file:PATH or --secret corp=- (standard input)\n", "\(custom)")

        let inline = try airlockRun(.rootless, ["--allow", "@anthropic-api", "--secret", "anthropic=sk-inline"], script: "true")
        XCTAssertEqual(inline.status, 125)
        XCTAssertEqual(inline.stderr, "airlock: error: --secret anthropic: give env:VAR, file:PATH or - (standard input); a value on the command line would show in ps\n", "\(inline)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
    }

    func testASecretFromStandardInputReachesOnlyTheUpstream() throws {
        try RootTier.require()
        let rig = try rig
        let before = rig.captured().count
        let key = "sk-stdin-" + UUID().uuidString
        let result = try airlockRun(.rootless, standInFlags(rig) + [
            "--route", "corp https://api.openai.com/v1 header x-corp-key=secret:corp", "--secret", "corp=-",
        ], script: "curl -sS -H 'x-corp-key: mine' http://airlock.internal/api/corp/models; echo; env", stdin: key + "\n")
        XCTAssertEqual(result.status, 0, "\(result)")
        XCTAssertTrue(result.stdout.contains(#"{"path": "/v1/models"}"#), "\(result)")
        XCTAssertFalse(result.stdout.contains(key), "\(result)")
        let seen = rig.captured(after: before)
        XCTAssertEqual(seen.last?.headers.filter { $0.0 == "x-corp-key" }.map(\.1), [key], "\(seen)")
    }

    /// The persistent form: `gateway serve --route`, the secret handed over later with
    /// `airlock secret set`, curl inside through `netns exec`.
    func testSecretSetOverTheControlSocketEnablesTheRoute() throws {
        try RootTier.require()
        let rig = try rig
        let name = "rt\(UUID().uuidString.prefix(6).lowercased())"
        let audit = rig.dir.file("serve-audit-\(name).jsonl")
        let key = "sk-serve-" + UUID().uuidString
        let create = try Run.airlock(["netns", "create", name])
        XCTAssertEqual(create.status, 0, "\(create)")
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        let gateway = try BackgroundProcess([
            TestPaths.airlock, "gateway", "serve", name, "--route", "corp https://127.0.0.1/v1 header x-api-key=secret:corp",
            "--upstream-ca", rig.ca.caFile, "--audit-log", audit,
        ])
        var stopped = false
        defer { if !stopped { _ = gateway.stop() } }
        XCTAssertTrue(Wait.until(timeout: 30) { (try? Run.airlock(["session", "list", name], timeout: 10).status) == 0 }, "gateway did not start")
        let curl = ["netns", "exec", name, "--user", "nobody", "--cwd", "/", "--", "curl", "-sS", "-w", " %{http_code}", "-H", "x-api-key: sandbox-key",
                    "http://airlock.internal/api/corp/models"]

        let before = try Run.airlock(curl, timeout: 60)
        XCTAssertEqual(before.stdout, "airlock: route corp: the secret corp is not set; set it with `airlock secret set \(name) corp`\n 503", "\(before)")

        let set = try Run.airlock(["secret", "set", name, "corp"], stdin: key + "\n")
        XCTAssertEqual(set.status, 0, "\(set)")
        XCTAssertEqual(set.stderr, "airlock: secret corp set for \(name)\n")
        XCTAssertFalse(set.stdout.contains(key) || set.stderr.contains(key))

        let offset = rig.captured().count
        let after = try Run.airlock(curl, timeout: 60)
        XCTAssertEqual(after.stdout, #"{"path": "/v1/models"} 200"#, "\(after)")
        XCTAssertEqual(rig.captured(after: offset).last?.headers.filter { $0.0 == "x-api-key" }.map(\.1), [key])

        let bad = try Run.airlock(["secret", "set", name, "Corp"], stdin: key + "\n")
        XCTAssertEqual(bad.status, 64, "\(bad)")
        XCTAssertEqual(bad.stderr, "airlock: error: \"Corp\" is not a secret name (1–64 of a-z, 0-9, '-', '_', '.')\n")

        let out = gateway.stop()
        stopped = true
        let auditText = (try? String(contentsOfFile: audit, encoding: .utf8)) ?? ""
        XCTAssertTrue(auditText.contains(#""event":"secret_set""#), auditText)
        XCTAssertTrue(auditText.contains(#""event":"api_allow""#), auditText)
        for text in [auditText, out.stdout, out.stderr] {
            XCTAssertFalse(text.contains(key), text)
            XCTAssertFalse(text.contains("sandbox-key"), text)
        }
    }
}
