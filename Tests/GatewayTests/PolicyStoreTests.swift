import XCTest
import TestSupport
@testable import Gateway
@testable import GatewayCore

/// Reloading keeps the old policy when the new file is bad, and audits every attempt.
final class PolicyStoreTests: XCTestCase {
    private func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    func testReloadTakesGoodFilesAndKeepsOldPolicyOnBadOnes() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("policy.txt")
        try write("pypi.org\n", to: path)
        let sink = MemoryAuditSink()
        let extra = try Policy.rules(allow: ["crates.io"], allowPrivate: [], resolve: [], source: "--allow")
        let initial = try Policy.load(path: path).adding(rulesFrom: extra)
        let store = PolicyStore(initial: initial, path: path, extra: extra, audit: AuditLog(sink: sink, sandbox: "sbx"))
        XCTAssertTrue(store.current.decide(host: "pypi.org", port: 443).isAllowed)

        try write("npmjs.org\nregistry.npmjs.org\n", to: path)
        XCTAssertTrue(store.reload())
        XCTAssertFalse(store.current.decide(host: "pypi.org", port: 443).isAllowed)
        XCTAssertTrue(store.current.decide(host: "registry.npmjs.org", port: 443).isAllowed)
        XCTAssertTrue(store.current.decide(host: "crates.io", port: 443).isAllowed, "flags are merged on reload")

        try write("registry.npmjs.org\n@pipy\n", to: path)
        XCTAssertFalse(store.reload())
        XCTAssertTrue(store.current.decide(host: "registry.npmjs.org", port: 443).isAllowed, "old policy kept")
        XCTAssertTrue(store.current.decide(host: "crates.io", port: 443).isAllowed)

        try FileManager.default.removeItem(atPath: path)
        XCTAssertFalse(store.reload())
        XCTAssertTrue(store.current.decide(host: "registry.npmjs.org", port: 443).isAllowed, "old policy kept")

        let lines = sink.lines
        XCTAssertEqual(lines.count, 3)
        XCTAssertTrue(lines[0].contains(#""event":"policy_reload","sandbox":"sbx","ok":true,"file":"\#(path)"}"#), lines[0])
        XCTAssertTrue(lines[1].contains(#""event":"policy_reload","sandbox":"sbx","reason":"\#(path):2: unknown preset @pipy (known: @anthropic-api, @cargo, @debian, @gemini-api, @github, @github-api, @go, @maven, @npm, @openai-api, @pypi, @rubygems); keeping the previous policy","ok":false,"file":"\#(path)"}"#), lines[1])
        XCTAssertTrue(lines[2].contains(#""reason":"\#(path): cannot read: No such file or directory; keeping the previous policy","ok":false"#), lines[2])
    }

    func testWatchingReloadsOnFileChangeAndOnSIGHUP() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("policy.txt")
        try write("pypi.org\n", to: path)
        let sink = MemoryAuditSink()
        let store = PolicyStore(initial: try Policy.load(path: path), path: path, extra: nil,
                                audit: AuditLog(sink: sink), pollInterval: 0.05)
        store.startWatching()
        defer { store.stopWatching() }

        try write("crates.io\n", to: path)  // a new inode, as editors do
        XCTAssertTrue(Wait.until(timeout: 10) { store.current.decide(host: "crates.io", port: 443).isAllowed })
        XCTAssertFalse(store.current.decide(host: "pypi.org", port: 443).isAllowed)

        try write("crates.io\n!!bad\n", to: path)
        XCTAssertTrue(Wait.until(timeout: 10) { sink.lines.contains { $0.contains(#""ok":false"#) } })
        XCTAssertTrue(store.current.decide(host: "crates.io", port: 443).isAllowed)

        // SIGHUP re-reads even when the file looks unchanged.
        let before = sink.lines.count
        kill(getpid(), SIGHUP)
        XCTAssertTrue(Wait.until(timeout: 10) { sink.lines.count > before })
        XCTAssertTrue(sink.lines.last?.contains(#""ok":false"#) == true)
    }

    func testStoreWithoutFileKeepsItsPolicy() throws {
        let flags = try Policy.rules(allow: ["pypi.org"], allowPrivate: [], resolve: [], source: "--allow")
        let store = PolicyStore(initial: flags, path: nil, extra: nil, audit: AuditLog(sink: MemoryAuditSink()))
        XCTAssertTrue(store.reload())
        XCTAssertTrue(store.current.decide(host: "pypi.org", port: 443).isAllowed)
    }
}
