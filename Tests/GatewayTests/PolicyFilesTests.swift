import XCTest
import TestSupport
@testable import Gateway
@testable import GatewayCore

/// The policy's locations: `--policy FILE` alone, or a main file plus `policy.d/*.conf`
/// drop-ins read in bytewise order as one policy, the same set for `run`, `gateway serve`
/// and `policy check`/`explain`; and the store that reloads the whole set.
final class PolicyFilesTests: XCTestCase {
    private func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// A directory with `policy` (unless nil) and `policy.d` holding `dropIns`.
    private func makeSet(main: String?, dropIns: [String: String]) throws -> (TemporaryDirectory, PolicyFiles) {
        let dir = try TemporaryDirectory()
        if let main { try write(main, to: dir.file("policy")) }
        try FileManager.default.createDirectory(atPath: dir.file("policy.d"), withIntermediateDirectories: false)
        for (name, text) in dropIns { try write(text, to: dir.file("policy.d/" + name)) }
        return (dir, PolicyFiles(directory: dir.path))
    }

    func testDefaultLocationsAsRootAndRootless() {
        XCTAssertEqual(PolicyFiles.defaults(root: true, environment: ["XDG_CONFIG_HOME": "/x", "HOME": "/home/u"]),
                       PolicyFiles(directory: "/etc/airlock"))
        XCTAssertEqual(PolicyFiles.system.mainFile, "/etc/airlock/policy")
        XCTAssertEqual(PolicyFiles.system.dropInDirectory, "/etc/airlock/policy.d")
        let xdg = PolicyFiles.defaults(root: false, environment: ["XDG_CONFIG_HOME": "/cfg", "HOME": "/home/u"])
        XCTAssertEqual(xdg?.mainFile, "/cfg/airlock/policy")
        XCTAssertEqual(xdg?.dropInDirectory, "/cfg/airlock/policy.d")
        // A relative or empty XDG_CONFIG_HOME is ignored, as the XDG specification says.
        for ignored in ["", "relative/cfg"] {
            XCTAssertEqual(PolicyFiles.defaults(root: false, environment: ["XDG_CONFIG_HOME": ignored, "HOME": "/home/u"])?.mainFile,
                           "/home/u/.config/airlock/policy", "XDG_CONFIG_HOME=\(ignored)")
        }
        XCTAssertNil(PolicyFiles.defaults(root: false, environment: [:]), "no home: no default set")
        XCTAssertEqual(PolicyFiles(file: "/srv/p").description, "/srv/p")
        XCTAssertEqual(PolicyFiles(directory: "/etc/airlock").description, "/etc/airlock/policy + /etc/airlock/policy.d/*.conf")
    }

    /// The main file first, then `*.conf` in bytewise order; other names, hidden names and
    /// editors' backups are not read.
    func testListingOrderAndIgnoredNames() throws {
        let (dir, files) = try makeSet(main: "", dropIns: [
            "9-b.conf": "", "10-a.conf": "", "B.conf": "", "a.conf": "",
            "README": "x", "old.conf~": "x", "x.conf.dpkg-old": "x", ".#lock.conf": "x",
        ])
        let listing = try files.listing()
        XCTAssertEqual(listing.files, [dir.file("policy")] + ["10-a.conf", "9-b.conf", "B.conf", "a.conf"].map { dir.file("policy.d/" + $0) })
        XCTAssertEqual(listing.ignored, [".#lock.conf", "README", "old.conf~", "x.conf.dpkg-old"])

        // Missing files and directories are fine: an empty set, no rule.
        let empty = PolicyFiles(directory: dir.file("nowhere"))
        XCTAssertEqual(try empty.listing().files, [])
        let (policy, read) = try empty.load()
        XCTAssertEqual(read, [])
        XCTAssertEqual(policy.ruleCount, 0)
        XCTAssertFalse(policy.decide(host: "pypi.org", port: 443).isAllowed)

        // --policy FILE reads that file alone, whatever lies beside it.
        let only = PolicyFiles(file: dir.file("policy"))
        XCTAssertEqual(try only.listing().files, [dir.file("policy")])
    }

    func testAnExplicitMissingFileIsAnError() throws {
        let dir = try TemporaryDirectory()
        XCTAssertThrowsError(try PolicyFiles(file: dir.file("missing")).load()) { error in
            XCTAssertEqual(String(describing: error), "\(dir.file("missing")): cannot read: No such file or directory")
        }
    }

    /// The files parse as one policy: a host named only in a drop-in is allowed, a deny in
    /// a drop-in wins over the main file's allow, a later `resolve` replaces an earlier one,
    /// and rules name their file once there are several.
    func testDropInsAddToTheMainFile() throws {
        let (dir, files) = try makeSet(main: "pypi.org\nresolve pypi.org=127.0.0.1\n", dropIns: [
            "10-web.conf": "dropin.test\n!pypi.org\n",
            "20-pin.conf": "resolve pypi.org=127.0.0.2\n",
        ])
        let (policy, read) = try files.load()
        XCTAssertEqual(read.count, 3)
        XCTAssertEqual(policy.source, dir.file("policy"), "refusals point at the main file")
        XCTAssertTrue(policy.decide(host: "dropin.test", port: 443).isAllowed)
        guard case .deny(let reason) = policy.decide(host: "pypi.org", port: 443) else { return XCTFail("a drop-in's deny wins") }
        XCTAssertEqual(reason.description, "pypi.org is denied by rule !pypi.org (\(dir.file("policy.d/10-web.conf")) line 2)")
        XCTAssertEqual(policy.resolveOverrides["pypi.org"]?.map(\.description), ["127.0.0.2"])

        // The main file alone keeps its plain `line N` origins.
        let (singleDir, single) = try makeSet(main: "!pypi.org\n", dropIns: [:])
        guard case .deny(let plain) = try single.load().policy.decide(host: "pypi.org", port: 443) else { return XCTFail() }
        XCTAssertEqual(plain.description, "pypi.org is denied by rule !pypi.org (line 1)")
        _ = singleDir
    }

    /// One bad drop-in fails the whole set, naming that file and line.
    func testABadDropInFailsTheWholeSet() throws {
        let (dir, files) = try makeSet(main: "pypi.org\n", dropIns: [
            "10-ok.conf": "crates.io\n", "20-bad.conf": "# fine\nthis is not a rule\n",
        ])
        XCTAssertThrowsError(try files.load()) { error in
            XCTAssertEqual(error as? PolicyError, PolicyError(file: dir.file("policy.d/20-bad.conf"), line: 2, message: Self.problem("this is not a rule")))
            XCTAssertTrue(String(describing: error).hasPrefix(dir.file("policy.d/20-bad.conf") + ":2: "), "\(error)")
        }
        // A route defined twice across files is the drop-in's error, naming the first.
        let route = "route corp https://llm.corp.test header x-api-key=secret:corp\n"
        let (dup, dupFiles) = try makeSet(main: route, dropIns: ["10-again.conf": route])
        XCTAssertThrowsError(try dupFiles.load()) { error in
            XCTAssertEqual(String(describing: error), "\(dup.file("policy.d/10-again.conf")):1: route corp is already defined (\(dup.file("policy")) line 1)")
        }
        // A drop-in that is a directory, or a dangling link, is an error, not skipped.
        let (odd, oddFiles) = try makeSet(main: nil, dropIns: [:])
        try FileManager.default.createDirectory(atPath: odd.file("policy.d/dir.conf"), withIntermediateDirectories: false)
        XCTAssertThrowsError(try oddFiles.load()) { error in
            XCTAssertEqual(String(describing: error), "\(odd.file("policy.d/dir.conf")): not a regular file")
        }
    }

    /// The problem a single line gets, as `policy.txt:1: PROBLEM` without the prefix.
    static func problem(_ line: String) -> String {
        do {
            _ = try Policy.parse(line, source: "x")
            return "parsed"
        } catch let error as PolicyError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    /// Root's check covers the main file and `policy.d` even when they are missing (no
    /// account may add one), and every file read; a refusal fails the load.
    func testGuardedPathsAndTheCheck() throws {
        let (dir, files) = try makeSet(main: nil, dropIns: ["10-a.conf": "a.test\n"])
        let listing = try files.listing()
        XCTAssertEqual(files.guardedPaths(listing: listing), [dir.file("policy"), dir.file("policy.d"), dir.file("policy.d/10-a.conf")])
        var asked: [String] = []
        XCTAssertThrowsError(try files.load(check: { path in
            asked.append(path)
            return path.hasSuffix("10-a.conf") ? "too open" : nil
        })) { error in
            XCTAssertEqual(String(describing: error), "\(dir.file("policy.d/10-a.conf")): too open")
        }
        XCTAssertEqual(asked, files.guardedPaths(listing: listing))
    }

    /// The store reloads the set when a drop-in appears, changes or disappears, without
    /// SIGHUP; a refused or bad file keeps the old policy; flags stay merged. Polled by
    /// hand (the watch timer's poll; `PolicyStoreTests` covers the timer and SIGHUP).
    func testStoreWatchesTheWholeSet() throws {
        let (dir, files) = try makeSet(main: "pypi.org\n", dropIns: [:])
        let sink = MemoryAuditSink()
        let extra = try Policy.rules(allow: ["crates.io"], allowPrivate: [], resolve: [], source: "--allow")
        let refused = dir.file("policy.d/90-refused.conf")
        let store = PolicyStore(
            initial: try files.load().policy.adding(rulesFrom: extra), files: files,
            check: { $0 == refused ? "refused by the check" : nil }, extra: extra,
            audit: AuditLog(sink: sink, sandbox: "sbx"), pollInterval: 0.05)
        let allows = { (host: String) -> Bool in
            store.reloadIfChanged()
            return store.current.decide(host: host, port: 443).isAllowed
        }

        try write("dropin.test\n", to: dir.file("policy.d/10-new.conf"))
        XCTAssertTrue(Wait.until(timeout: 10) { allows("dropin.test") }, "a new drop-in is taken")
        XCTAssertTrue(allows("pypi.org") && allows("crates.io"))

        // Edited in place (same inode): seen through the file's own stamp.
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: dir.file("policy.d/10-new.conf")))
        handle.seekToEndOfFile()
        handle.write(Data("second.test\n".utf8))
        try handle.close()
        XCTAssertTrue(Wait.until(timeout: 10) { allows("second.test") }, "an edited drop-in is taken")

        try write("refused.test\n", to: refused)
        XCTAssertTrue(Wait.until(timeout: 10) { store.reloadIfChanged(); return sink.lines.contains { $0.contains("refused by the check") } })
        XCTAssertFalse(allows("refused.test"))
        XCTAssertTrue(allows("second.test"), "the old policy stays")
        XCTAssertTrue(sink.lines.last?.contains(#""reason":"\#(refused): refused by the check; keeping the previous policy","ok":false,"file":"\#(files.description)""#) == true, "\(sink.lines)")
        try FileManager.default.removeItem(atPath: refused)

        try FileManager.default.removeItem(atPath: dir.file("policy.d/10-new.conf"))
        XCTAssertTrue(Wait.until(timeout: 10) { !allows("dropin.test") }, "a removed drop-in's hosts are gone")
        XCTAssertTrue(allows("pypi.org") && allows("crates.io"))

        // The whole directory removed, then back: both are changes.
        try FileManager.default.removeItem(atPath: dir.file("policy.d"))
        try FileManager.default.createDirectory(atPath: dir.file("policy.d"), withIntermediateDirectories: false)
        try write("back.test\n", to: dir.file("policy.d/10-back.conf"))
        XCTAssertTrue(Wait.until(timeout: 10) { allows("back.test") })
    }
}
