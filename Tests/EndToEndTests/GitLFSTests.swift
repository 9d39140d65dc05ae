import Foundation
import TestSupport
import XCTest

/// Git LFS through the gateway with the real `git-lfs` client, in the throwaway namespace.
///
/// The git upstream (`git-server.py`) serves the LFS API of `scripts/testing/lfs_server.py`,
/// whose actions point at a separate storage host, `lfs-storage.test` (the same script on
/// its own port, HTTPS with the test CA), and carry a per-object `Authorization` header
/// the storage host demands. The gateway resolves `lfs-storage.test` to 127.0.0.1 and the
/// policy allows that address for that name only; the name is on no allowlist.
final class GitLFSTests: XCTestCase {
    var rig: GitRig!
    var storage: BackgroundProcess?
    var storagePort: UInt16 = 0
    var lfsRoot: String { rig.dir.file("lfs") }
    var storageCapture: String { rig.dir.file("storage-capture.jsonl") }
    /// The object committed upstream as `big.bin`.
    let seedContent = String(repeating: "large file stored in LFS storage\n", count: 8000)

    override func setUpWithError() throws {
        try RootTier.require()
        guard FileManager.default.isExecutableFile(atPath: TestPaths.airlock) else { throw Precondition.unmet("airlock binary not built") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/git-lfs") else {
            throw Precondition.unmet("git-lfs is not installed (scripts/setup installs it)")
        }
        rig = try GitRig(name: "l\(getpid() % 10000)\(Int.random(in: 10...99))")
        storagePort = TCP.freePort()
        try FileManager.default.createDirectory(atPath: lfsRoot + "/objects", withIntermediateDirectories: true)
        try "lfs-storage-secret-\(UInt64.random(in: 0...UInt64.max))".write(toFile: rig.dir.file("lfs-secret"), atomically: true, encoding: .utf8)
        rig.certificateNames = ["lfs-storage.test"]
        rig.serverArguments = ["--lfs-root", lfsRoot, "--lfs-storage", "https://lfs-storage.test:\(storagePort)",
                               "--lfs-secret-file", rig.dir.file("lfs-secret")]
        rig.gatewayArguments = ["--resolve", "lfs-storage.test=127.0.0.1"]
            + (name.contains("PrivateStorage") ? [] : ["--allow-private", "127.0.0.1/32=lfs-storage.test"])
        try rig.start()
        storage = try BackgroundProcess([
            "/usr/bin/python3", TestPaths.fixture("lfs_server.py"), "--root", lfsRoot, "--cert", rig.dir.file("server.pem"),
            "--key", rig.dir.file("server.key"), "--secret-file", rig.dir.file("lfs-secret"), "--port", String(storagePort),
            "--capture", storageCapture,
        ])
        guard Wait.forTCP(port: storagePort, timeout: 20) else { throw Precondition.unmet("lfs_server.py did not start") }
        try makeLFSRepository()
        // git-lfs's filters, for the sandbox's user (HOME is the rig's directory).
        let install = try rig.inSandbox(["git", "lfs", "install", "--skip-repo"], token: nil)
        XCTAssertEqual(install.status, 0, install.stderr)
    }

    override func tearDown() {
        _ = storage?.stop()
        rig?.stop()
        if let rig {
            let haystacks = [rig.auditLines.joined(separator: "\n"), rig.gatewayOutput.stdout, rig.gatewayOutput.stderr, storageRequests]
            for secret in [GitRig.realToken] + rig.sessionTokens {
                for text in haystacks { XCTAssertFalse(text.contains(secret), "a token leaked into the gateway's output or the storage host") }
            }
        }
    }

    /// `owner/lfsrepo`: `.gitattributes` sending `*.bin` to LFS and `big.bin`, a pointer to
    /// an object only the storage host holds.
    private func makeLFSRepository() throws {
        let bare = "\(rig.root)/owner/lfsrepo.git"
        try rig.git(["init", "-q", "--bare", "-b", "main", bare])
        try rig.git(["-C", bare, "config", "http.receivepack", "true"])
        let work = rig.dir.file("seed-lfsrepo")
        try rig.git(["init", "-q", "-b", "main", work])
        let oid = Self.sha256(seedContent)
        try seedContent.write(toFile: "\(lfsRoot)/objects/\(oid)", atomically: true, encoding: .utf8)
        try "*.bin filter=lfs diff=lfs merge=lfs -text\n".write(toFile: work + "/.gitattributes", atomically: true, encoding: .utf8)
        try Self.pointer(seedContent).write(toFile: work + "/big.bin", atomically: true, encoding: .utf8)
        try rig.git(["-C", work, "add", ".gitattributes", "big.bin"])
        try rig.git(["-C", work, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "seed lfs"])
        try rig.git(["-C", work, "push", "-q", bare, "main"])
    }

    static func sha256(_ text: String) -> String {
        let r = try? Run.process(["sha256sum"], stdin: text)
        return String((r?.stdout ?? "").prefix(64))
    }

    static func pointer(_ content: String) -> String {
        "version https://git-lfs.github.com/spec/v1\noid sha256:\(sha256(content))\nsize \(content.utf8.count)\n"
    }

    var storageRequests: String { (try? String(contentsOfFile: storageCapture, encoding: .utf8)) ?? "" }

    /// The storage host's requests: method, path and the `Authorization` it got.
    var storageLog: [(method: String, path: String, authorization: String?)] {
        storageRequests.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let method = object["method"] as? String, let path = object["path"] as? String,
                  let headers = object["headers"] as? [[String]] else { return nil }
            return (method, path, headers.first { $0[0].lowercased() == "authorization" }?[1])
        }
    }

    /// The last audit line of `event` containing `text`, waited for (at most 5 s): a line is
    /// written when its exchange ends, and a client may move on before that. git-lfs reads
    /// only the status of a verify answer and goes on to the push while the storage host's
    /// body is still on its way, so the push can finish before the verify line is written.
    private func lastAudit(_ event: String, containing text: String) -> String? {
        var found: String?
        _ = Wait.until(timeout: 5) {
            found = rig.auditLines.last { $0.contains("\"event\":\"\(event)\"") && $0.contains(text) }
            return found != nil
        }
        return found
    }

    /// Clone with LFS objects, then push new ones and use locks, with an rw session; the
    /// sandbox never sees the storage host's action headers.
    func testCloneAndPushLFSObjectsWithAnRWSession() throws {
        let token = try rig.createSession(["owner/lfsrepo:rw"])
        let clone = try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/lfsrepo", "lfsclone"], token: token)
        XCTAssertEqual(clone.status, 0, clone.stderr)
        XCTAssertEqual(try String(contentsOfFile: rig.dir.file("lfsclone/big.bin"), encoding: .utf8), seedContent,
                       "the clone has the object's content, not its pointer")
        let oid = Self.sha256(seedContent)
        let download = storageLog.filter { $0.method == "GET" && $0.path == "/objects/\(oid)" }
        XCTAssertEqual(download.count, 1, storageRequests)
        XCTAssertEqual(download.first?.authorization?.hasPrefix("RemoteAuth "), true, "the gateway sent the action's header")
        XCTAssertNotNil(lastAudit("git_allow", containing: "\"service\":\"lfs-download\""))

        // What the sandbox sees of a batch: gateway URLs, no storage host, no action header.
        let batch = try rig.inSandbox([
            "curl", "-sS", "-i", "-X", "POST", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/vnd.git-lfs+json",
            "--data", "{\"operation\":\"download\",\"objects\":[{\"oid\":\"\(oid)\",\"size\":\(seedContent.utf8.count)}]}",
            "http://airlock.internal/git/github.com/owner/lfsrepo.git/info/lfs/objects/batch",
        ], token: nil)
        XCTAssertTrue(batch.stdout.hasPrefix("HTTP/1.1 200"), batch.stdout)
        XCTAssertTrue(batch.stdout.contains("\"href\":\"http:\\/\\/airlock.internal\\/lfs\\/"), batch.stdout)
        for hidden in ["RemoteAuth", "lfs-storage.test", "\"header\"", String(storagePort)] {
            XCTAssertFalse(batch.stdout.contains(hidden), "the sandbox saw \(hidden): \(batch.stdout)")
        }
        // The storage host refuses a request without the action's header: the clone above
        // worked only because the gateway added it.
        let bare = try Run.process(["curl", "-sS", "--cacert", rig.dir.file("ca.pem"), "--resolve", "lfs-storage.test:\(storagePort):127.0.0.1",
                                    "https://lfs-storage.test:\(storagePort)/objects/\(oid)"])
        XCTAssertEqual(bare.stdout, "storage: missing or wrong action header\n")
        // A transfer id is bound to the session that asked for it.
        let href = try XCTUnwrap(batch.stdout.range(of: "airlock.internal\\/lfs\\/").map {
            String(batch.stdout[$0.upperBound...].prefix(LFSIDLength))
        })
        let other = try rig.createSession(["owner/lfsrepo:rw"])
        let stolen = try rig.inSandbox(["curl", "-sS", "-i", "-H", "Authorization: Bearer \(other)", "http://airlock.internal/lfs/\(href)"], token: nil)
        XCTAssertTrue(stolen.stdout.hasPrefix("HTTP/1.1 404"), stolen.stdout)
        XCTAssertTrue(stolen.stdout.contains("{\"message\":\"airlock: no such LFS transfer (unknown, expired, or made for another session); run the git lfs command again\"}"),
                      stolen.stdout)
        let own = try rig.inSandbox(["curl", "-sS", "-H", "Authorization: Bearer \(token)", "http://airlock.internal/lfs/\(href)"], token: nil)
        XCTAssertEqual(own.stdout, seedContent)

        // Push a new LFS object.
        let newContent = String(repeating: "a new object pushed from the sandbox\n", count: 5000)
        try newContent.write(toFile: rig.dir.file("lfsclone/new.bin"), atomically: true, encoding: .utf8)
        chown(rig.dir.file("lfsclone/new.bin"), 65534, 65534)
        let work = rig.dir.file("lfsclone")
        for step in [["git", "lfs", "install", "--local"], ["git", "add", "new.bin"], ["git", "commit", "-q", "-m", "add new.bin"],
                     ["git", "push", "-q", "origin", "HEAD:refs/heads/agent/lfs"]] {
            let r = try rig.inSandbox(step, token: token, cwd: work)
            XCTAssertEqual(r.status, 0, "\(step): \(r.stderr)")
        }
        let newOID = Self.sha256(newContent)
        XCTAssertEqual(try String(contentsOfFile: "\(lfsRoot)/objects/\(newOID)", encoding: .utf8), newContent)
        XCTAssertEqual(storageLog.filter { $0.method == "PUT" && $0.path == "/objects/\(newOID)" }.first?.authorization?.hasPrefix("RemoteAuth "), true,
                       storageRequests)
        XCTAssertEqual(storageLog.filter { $0.method == "POST" && $0.path == "/verify?oid=\(newOID)" }.count, 1, storageRequests)
        XCTAssertNotNil(lastAudit("git_allow", containing: "\"service\":\"lfs-upload\""))
        XCTAssertNotNil(lastAudit("git_allow", containing: "\"service\":\"lfs-verify\""), rig.auditLines.suffix(6).joined(separator: "\n"))
        XCTAssertEqual(try rig.git(["--git-dir", "\(rig.root)/owner/lfsrepo.git", "show", "agent/lfs:new.bin"]).stdout, Self.pointer(newContent))

        // Locks pass through.
        let lock = try rig.inSandbox(["git", "lfs", "lock", "big.bin"], token: token, cwd: work)
        XCTAssertEqual(lock.status, 0, lock.stderr)
        let locks = try rig.inSandbox(["git", "lfs", "locks"], token: token, cwd: work)
        XCTAssertTrue(locks.stdout.contains("big.bin"), locks.stdout + locks.stderr)
        let unlock = try rig.inSandbox(["git", "lfs", "unlock", "big.bin"], token: token, cwd: work)
        XCTAssertEqual(unlock.status, 0, unlock.stderr)
    }

    /// A read session clones LFS objects but cannot upload them or take locks: git-lfs
    /// prints the gateway's refusal and nothing reaches the storage host.
    func testReadSessionCannotUploadOrLock() throws {
        let token = try rig.createSession(["owner/lfsrepo"])
        let clone = try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/lfsrepo", "lfsclone"], token: token)
        XCTAssertEqual(clone.status, 0, clone.stderr)
        XCTAssertEqual(try String(contentsOfFile: rig.dir.file("lfsclone/big.bin"), encoding: .utf8), seedContent)

        let work = rig.dir.file("lfsclone")
        try "refused\n".write(toFile: work + "/new.bin", atomically: true, encoding: .utf8)
        chown(work + "/new.bin", 65534, 65534)
        for step in [["git", "lfs", "install", "--local"], ["git", "add", "new.bin"], ["git", "commit", "-q", "-m", "add new.bin"]] {
            let r = try rig.inSandbox(step, token: token, cwd: work)
            XCTAssertEqual(r.status, 0, "\(step): \(r.stderr)")
        }
        // git's own push stops at receive-pack; git-lfs's upload is refused at the batch.
        let push = try rig.inSandbox(["git", "push", "origin", "HEAD:refs/heads/agent/lfs"], token: token, cwd: work)
        XCTAssertNotEqual(push.status, 0)
        XCTAssertTrue(push.stderr.contains("remote: airlock: this session has read-only access to github.com/owner/lfsrepo; pushing needs --repo github.com/owner/lfsrepo:rw"),
                      push.stderr)
        let upload = try rig.inSandbox(["git", "lfs", "push", "origin", "HEAD"], token: token, cwd: work)
        XCTAssertNotEqual(upload.status, 0)
        XCTAssertTrue(upload.stderr.contains("airlock: this session has read-only access to github.com/owner/lfsrepo; LFS upload refused; uploading needs --repo github.com/owner/lfsrepo:rw"),
                      upload.stderr + upload.stdout)
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"LFS upload with a read-only session\""))
        XCTAssertFalse(storageLog.contains { $0.method != "GET" }, storageRequests)
        XCTAssertFalse(rig.captured.contains { $0.path.hasSuffix("/info/lfs/objects/batch") && $0.method == "POST" && $0.path.contains("upload") })

        let lock = try rig.inSandbox(["git", "lfs", "lock", "big.bin"], token: token, cwd: work)
        XCTAssertNotEqual(lock.status, 0)
        XCTAssertTrue(lock.stderr.contains("airlock: this session has read-only access to github.com/owner/lfsrepo; creating or releasing LFS locks needs --repo github.com/owner/lfsrepo:rw"),
                      lock.stderr + lock.stdout)
        XCTAssertNotNil(lastAudit("git_deny", containing: "\"reason\":\"LFS lock change with a read-only session\""))
    }

    /// The storage host the upstream names is dialled like any other name: without an
    /// `allow-private` rule its loopback address is refused, and nothing reaches it.
    func testPrivateStorageAddressNeedsAllowPrivate() throws {
        let token = try rig.createSession(["owner/lfsrepo"])
        // git-lfs retries a failed transfer 8 times with back-off by default.
        let clone = try rig.inSandbox(["git", "-c", "lfs.transfer.maxretries=1", "-c", "lfs.transfer.maxretrydelay=0",
                                       "clone", "-q", "https://github.com/owner/lfsrepo", "lfsclone"], token: token)
        XCTAssertNotEqual(clone.status, 0, "the clone got its LFS object from a refused address")
        XCTAssertNotEqual(try? String(contentsOfFile: rig.dir.file("lfsclone/big.bin"), encoding: .utf8), seedContent)
        let denied = lastAudit("git_deny", containing: "\"service\":\"lfs-download\"")
        XCTAssertNotNil(denied, rig.auditLines.joined(separator: "\n"))
        XCTAssertTrue(denied?.contains("lfs-storage.test refused: resolves to 127.0.0.1 is loopback") == true, denied ?? "")
        XCTAssertEqual(storageLog.count, 0, storageRequests)
    }

    private let LFSIDLength = 43
}
