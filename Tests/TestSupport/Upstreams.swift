import Foundation
import XCTest

/// A failure setting up a fixture, with what the tool printed.
public struct FixtureError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A CA made for one test run, and a server certificate it signed.
///
/// Files: `ca.pem`, `server.pem`, `server.key` in `directory`, readable by every user (so
/// an unprivileged sandbox can trust the CA of a local stand-in server).
public struct TestCA {
    public let directory: String
    public var caFile: String { directory + "/ca.pem" }
    public var certificate: String { directory + "/server.pem" }
    public var key: String { directory + "/server.key" }

    /// Makes the CA and a certificate for `names` (DNS names and IP addresses) with
    /// `scripts/testing/make-test-ca.sh`.
    public init(in directory: String, names: [String]) throws {
        self.directory = directory
        let r = try Run.process([TestPaths.fixture("make-test-ca.sh"), directory] + names, timeout: 60)
        guard r.status == 0, FileManager.default.fileExists(atPath: directory + "/ca.pem") else {
            throw FixtureError("make-test-ca.sh failed: \(r)")
        }
        for file in ["ca.pem", "server.pem", "server.key"] { chmod(directory + "/" + file, 0o644) }
    }
}

/// Bare repositories served by `scripts/testing/git-server.py` over HTTPS on 127.0.0.1,
/// standing in for a git host; it accepts only `realToken`.
public final class GitUpstream {
    public let root: String
    public let port: UInt16
    public let realToken: String
    public let capturePath: String
    public let knobsPath: String
    private var server: BackgroundProcess?

    /// Creates `owner/repo` bare repositories (each with one commit on `main`) under
    /// `directory/upstream` and starts the server with `ca`'s certificate.
    public init(in directory: String, ca: TestCA, repositories: [String], realToken: String) throws {
        root = directory + "/upstream"
        self.realToken = realToken
        capturePath = directory + "/git-capture.jsonl"
        knobsPath = directory + "/git-knobs.json"
        port = TCP.freePort()
        for repository in repositories {
            try Self.makeRepository(root: root, name: repository, scratch: directory)
        }
        let tokenFile = directory + "/real-token"
        try realToken.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        chmod(tokenFile, 0o600)
        server = try BackgroundProcess([
            "/usr/bin/python3", TestPaths.fixture("git-server.py"), "--root", root, "--cert", ca.certificate,
            "--key", ca.key, "--token-file", tokenFile, "--port", String(port),
            "--capture", capturePath, "--knobs", knobsPath,
        ])
        guard Wait.forTCP(port: port, timeout: 20) else {
            throw FixtureError("git-server.py did not start: \(server?.stop().stderr ?? "")")
        }
    }

    /// The `--git-upstream` value mapping `host` to this server.
    public func mapping(for host: String = "github.com") -> String { "\(host)=https://127.0.0.1:\(port)" }

    /// The commits on `branch` of `owner/repo`, newest first (subjects).
    public func log(_ repository: String, branch: String = "main") throws -> [String] {
        let r = try Run.process(["git", "-C", "\(root)/\(repository).git", "log", "--format=%s", branch], environment: Self.gitEnvironment)
        guard r.status == 0 else { throw FixtureError("git log failed: \(r)") }
        return r.stdout.split(separator: "\n").map(String.init)
    }

    public func stop() -> String { server?.stop().stderr ?? "" }

    deinit { _ = server?.stop() }

    /// The environment of the host-side git that builds and reads the fixture repositories
    /// (never the git a sandbox runs: that one keeps the machine's and the user's
    /// configuration, which airlock must cope with). A host rewrite such as this machine's
    /// `url.….insteadOf https://github.com/` must not redirect the fixture's own pushes.
    static let gitEnvironment = ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1"]

    /// Creates the bare repository `root/NAME.git` (NAME is `owner/repo`) with one commit
    /// on `main`, pushes allowed (`http.receivepack`) and partial clone on.
    public static func makeRepository(root: String, name: String, scratch: String) throws {
        let bare = "\(root)/\(name).git"
        let work = scratch + "/seed-" + name.replacingOccurrences(of: "/", with: "-")
        let steps: [[String]] = [
            ["git", "init", "-q", "--bare", "-b", "main", bare],
            ["git", "-C", bare, "config", "http.receivepack", "true"],
            ["git", "-C", bare, "config", "uploadpack.allowFilter", "true"],
            ["git", "init", "-q", "-b", "main", work],
        ]
        for step in steps { try git(step) }
        try "hello from \(name)\n".write(toFile: work + "/README", atomically: true, encoding: .utf8)
        try git(["git", "-C", work, "add", "README"])
        try git(["git", "-C", work, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "seed \(name)"])
        try git(["git", "-C", work, "push", "-q", bare, "main"])
    }

    private static func git(_ argv: [String]) throws {
        let r = try Run.process(argv, environment: gitEnvironment)
        guard r.status == 0 else { throw FixtureError("\(argv.joined(separator: " ")) failed: \(r)") }
    }
}

/// A local web server from `scripts/testing/web-server.py` on 127.0.0.1: plain HTTP, or
/// HTTPS with a test CA's certificate. Its pages name the `Host` they were asked for.
public final class WebUpstream {
    public let port: UInt16
    private var server: BackgroundProcess?

    public init(port: UInt16? = nil, tls ca: TestCA? = nil) throws {
        self.port = port ?? TCP.freePort()
        var argv = ["/usr/bin/python3", TestPaths.fixture("web-server.py"), "--port", String(self.port)]
        if let ca { argv += ["--cert", ca.certificate, "--key", ca.key] }
        server = try BackgroundProcess(argv)
        guard Wait.forTCP(port: self.port, timeout: 20) else {
            throw FixtureError("web-server.py did not start: \(server?.stop().stderr ?? "")")
        }
    }

    public func stop() { _ = server?.stop() }

    deinit { _ = server?.stop() }
}
