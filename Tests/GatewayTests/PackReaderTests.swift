import Foundation
import NIOCore
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// The pack reader and the history check on packs made by the real `git pack-objects`
/// and `git repack`: whole, thin, with ofs- and ref-deltas, fed in chunks of any size; and
/// the refusals for packs that are damaged or over a limit.
final class PackReaderTests: XCTestCase {
    var dir: TemporaryDirectory!
    var repo: String { dir.file("repo") }

    override func setUpWithError() throws {
        dir = try TemporaryDirectory(prefix: "airlock-pack")
        try git("init", "-q", "-b", "main", repo)
    }

    @discardableResult
    func git(_ args: String...) throws -> String {
        let result = try Run.process(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"] + args)
        guard result.status == 0 else { throw GitFailed(description: "git \(args.joined(separator: " ")) failed: \(result)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct GitFailed: Error, CustomStringConvertible { var description: String }

    /// The commits stored as deltas in the pack at `path` (indexed next to it).
    func deltaCommits(_ path: String) throws -> Int {
        let index = String(path.dropLast(".pack".count)) + ".idx"
        try git("index-pack", "-o", index, path)
        let verify = try git("verify-pack", "-v", index)
        return verify.split(separator: "\n").filter { $0.contains(" commit ") && $0.split(separator: " ").count > 5 }.count
    }

    /// Commits `files` (name → content) with `message`; returns the commit id.
    @discardableResult
    func commit(_ message: String, _ files: [String: String] = [:]) throws -> String {
        for (name, content) in files {
            try content.write(toFile: repo + "/" + name, atomically: true, encoding: .utf8)
            try git("-C", repo, "add", name)
        }
        try git("-C", repo, "commit", "-q", "--allow-empty", "-m", message)
        return try git("-C", repo, "rev-parse", "HEAD")
    }

    /// `git pack-objects --stdout` for `revisions` (rev-list arguments, one a line).
    func pack(_ revisions: String, options: [String] = []) throws -> [UInt8] {
        let out = dir.file("out.pack")
        let script = "git -C \"$1\" pack-objects --stdout --revs -q \(options.joined(separator: " ")) > \"$2\""
        let result = try Run.process(["sh", "-c", script, "sh", repo, out], stdin: revisions)
        XCTAssertEqual(result.status, 0, result.description)
        return Array(try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    /// The commits `rev-list` names for `revisions`, with their parents.
    func expectedCommits(_ revisions: [String]) throws -> [String: PackReader.Commit] {
        let text = try Run.process(["git", "-C", repo, "rev-list", "--parents"] + revisions).stdout
        var commits: [String: PackReader.Commit] = [:]
        for line in text.split(separator: "\n") {
            let ids = line.split(separator: " ").map(String.init)
            commits[ids[0]] = PackReader.Commit(parents: Array(ids.dropFirst()))
        }
        return commits
    }

    func read(_ pack: [UInt8], chunk: Int = 1 << 20, limits: PackReader.Limits = PackReader.Limits()) throws -> PackReader {
        let reader = PackReader(format: .sha1, limits: limits)
        var offset = 0
        while offset < pack.count {
            let end = min(pack.count, offset + chunk)
            try reader.consume(Array(pack[offset..<end]))
            offset = end
        }
        try reader.finish()
        return reader
    }

    func failure(_ pack: [UInt8], limits: PackReader.Limits = PackReader.Limits()) -> String? {
        do {
            _ = try read(pack, chunk: 4096, limits: limits)
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// A history with a side branch merged back: c1 - c2 - m, side branched off c1.
    func makeMergeHistory() throws -> (c1: String, c2: String, side: String, merge: String) {
        let c1 = try commit("one", ["a.txt": "a\n"])
        let c2 = try commit("two", ["a.txt": "a\nb\n"])
        try git("-C", repo, "checkout", "-q", "-b", "side", c1)
        let side = try commit("side", ["b.txt": "side\n"])
        try git("-C", repo, "checkout", "-q", "main")
        try git("-C", repo, "merge", "-q", "--no-edit", "side")
        return (c1, c2, side, try git("-C", repo, "rev-parse", "HEAD"))
    }

    func testCommitsAndParentsOfAWholePackInChunksOfAnySize() throws {
        let history = try makeMergeHistory()
        let pack = try pack("main\n")
        let expected = try expectedCommits(["main"])
        XCTAssertEqual(expected.count, 4)
        XCTAssertEqual(expected[history.merge]?.parents, [history.c2, history.side])
        for chunk in [1, 7, 64, 4096, pack.count] {
            let reader = try read(pack, chunk: chunk)
            XCTAssertEqual(reader.commits, expected, "chunks of \(chunk) bytes")
            XCTAssertEqual(reader.declaredObjects, Int(try git("-C", repo, "rev-list", "--objects", "main").split(separator: "\n").count))
        }
    }

    /// Commits with long, similar messages are stored as deltas of each other.
    func makeDeltifiedCommits() throws -> [String] {
        let body = (0..<60).map { "line \($0) of a long commit message that repeats in every commit\n" }.joined()
        return try (0..<12).map { try commit("change \($0)\n\n\(body)", ["f.txt": "\($0)\n" + body]) }
    }

    func testOfsDeltasOfCommitsAreResolved() throws {
        try makeDeltifiedCommits()
        try git("-C", repo, "repack", "-adfq", "--window=50", "--depth=50")
        let packDir = repo + "/.git/objects/pack"
        let name = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: packDir).first { $0.hasSuffix(".pack") })
        let pack = Array(try Data(contentsOf: URL(fileURLWithPath: packDir + "/" + name)))
        try Data(pack).write(to: URL(fileURLWithPath: dir.file("repacked.pack")))
        XCTAssertGreaterThan(try deltaCommits(dir.file("repacked.pack")), 0, "the test needs commits stored as deltas")
        for chunk in [3, 1000, pack.count] {
            XCTAssertEqual(try read(pack, chunk: chunk).commits, try expectedCommits(["main"]))
        }
    }

    func testRefDeltasOfCommitsAreResolved() throws {
        try makeDeltifiedCommits()
        // Without --delta-base-offset, pack-objects writes ref-deltas.
        let pack = try pack("main\n", options: ["--window=50", "--depth=50", "--no-reuse-delta"])
        XCTAssertGreaterThan(try deltaCommits(dir.file("out.pack")), 0, "the test needs commits stored as deltas")
        XCTAssertEqual(try read(pack, chunk: 513).commits, try expectedCommits(["main"]))
    }

    func testThinPackAsPushedHasTheNewCommitsOnly() throws {
        let body = (0..<200).map { "row \($0)\n" }.joined()
        let base = try commit("base", ["big.txt": body])
        let next = try commit("edit", ["big.txt": body + "one more row\n"])
        let top = try commit("again", ["big.txt": body + "one more row\nand another\n"])
        let thin = try pack("main\n^\(base)\n", options: ["--thin", "--delta-base-offset"])
        let index = try Run.process(["git", "index-pack", "-o", dir.file("thin.idx"), dir.file("out.pack")])
        XCTAssertTrue(index.stderr.contains("unresolved delta"), "the pack is thin: \(index)")
        let reader = try read(thin, chunk: 100)
        XCTAssertEqual(reader.commits, [next: .init(parents: [base]), top: .init(parents: [next])])
        XCTAssertEqual(PushHistory.refusals([RefUpdate(old: base, new: top, ref: "refs/heads/main")], commits: reader.commits), [])
    }

    func testDamagedPacksAndPacksOverALimitAreRefused() throws {
        try commit("one", ["a.txt": "a\n"])
        try commit("two", ["a.txt": "b\n"])
        let pack = try pack("main\n")
        var trailer = pack
        trailer[trailer.count - 1] ^= 1
        XCTAssertEqual(failure(trailer), "the pack's checksum does not match its content")
        XCTAssertEqual(failure(Array(pack.dropLast(20))), "the pack ends early (after 6 of 6 objects)")
        XCTAssertEqual(failure(Array(pack.prefix(40))), "the pack ends early (after 0 of 6 objects)")
        XCTAssertEqual(failure(pack + [0]), "the pack has data after its checksum")
        XCTAssertEqual(failure([]), "there is no pack")
        XCTAssertEqual(failure(Array("PACX".utf8) + pack.dropFirst(4)), "the data is not a pack (no PACK signature)")
        var version = pack
        version[7] = 4
        XCTAssertEqual(failure(version), "pack version 4 is not supported (2 and 3 are)")
        var middle = pack
        middle[40] ^= 0xFF
        XCTAssertNotNil(failure(middle), "a damaged object never passes")
        XCTAssertEqual(failure(pack, limits: .init(objects: 5)), "the pack holds 6 objects; airlock checks at most 5")
        XCTAssertEqual(failure(pack, limits: .init(commitBytes: 100)), "a commit in the pack is larger than 100 bytes")
        XCTAssertEqual(failure(pack, limits: .init(keptBytes: 300)), "the pack's commits exceed the 300 bytes airlock keeps to check a push")
        XCTAssertNil(failure(pack))
    }

    func testHistoryCheck() throws {
        let history = try makeMergeHistory()
        // The push of main after c1: c2, side and the merge are new.
        let pushed = try read(try pack("main\n^\(history.c1)\n")).commits
        let zero = String(repeating: "0", count: 40)
        func refused(_ old: String, _ new: String) -> Bool {
            !PushHistory.refusals([RefUpdate(old: old, new: new, ref: "refs/heads/main")], commits: pushed).isEmpty
        }
        XCTAssertFalse(refused(history.c1, history.merge), "commits on top, with a merge")
        XCTAssertFalse(refused(history.c1, history.side), "one commit on top")
        XCTAssertFalse(refused(history.side, history.merge), "a merge reaches the other parent too")
        XCTAssertFalse(refused(zero, history.merge), "a new branch is not checked")
        XCTAssertTrue(refused(history.c2, history.side), "side does not contain c2")
        XCTAssertTrue(refused(history.merge, history.c2), "going back")
        XCTAssertEqual(PushHistory.refusals([RefUpdate(old: history.c2, new: history.c1, ref: "refs/heads/back")], commits: pushed), [PushPolicy.Refusal(
            ref: "refs/heads/back",
            reason: "not proven fast-forward: the push holds no commit \(history.c1.prefix(12)) (the upstream has it already), so airlock cannot see its history; push a new commit on top")])
        let refusal = PushHistory.refusals([RefUpdate(old: history.c2, new: history.side, ref: "refs/heads/topic")], commits: pushed)
        XCTAssertEqual(refusal, [PushPolicy.Refusal(
            ref: "refs/heads/topic",
            reason: "non-fast-forward (history rewrite): the pushed commits do not lead back to \(history.c2.prefix(12)), the ref's current commit; airlock accepts only updates it can prove fast-forward")])
    }

    /// The inspector on a push body as git sends it: commands, then the pack.
    func testInspectorRefusesAnAmendedCommitAndPassesCommitsOnTop() throws {
        let c1 = try commit("one", ["a.txt": "a\n"])
        let c2 = try commit("two", ["a.txt": "b\n"])
        try git("-C", repo, "commit", "-q", "--amend", "-m", "two, amended")
        let amended = try git("-C", repo, "rev-parse", "HEAD")
        let zero = String(repeating: "0", count: 40)

        func body(_ update: String, pack revisions: String) throws -> ByteBuffer {
            let commands = PktLine.encode(Array("\(update)\u{0}report-status side-band-64k\n".utf8)) + PktLine.flushBytes
            return ByteBuffer(bytes: commands + (try pack(revisions)))
        }
        final class Refusals: @unchecked Sendable { var seen: [[PushPolicy.Refusal]] = [] }
        let refusals = Refusals()
        func inspect(_ body: ByteBuffer) -> LocalResponse? {
            let inspector = ReceivePackInspector { _, found, _ in
                refusals.seen.append(found)
                return LocalResponse.text(.ok, "refused")
            }
            var body = body
            while let chunk = body.readSlice(length: min(body.readableBytes, 333)) {
                if let answer = inspector.inspect(chunk) { return answer }
                if body.readableBytes == 0 { break }
            }
            return inspector.finish().refusal
        }
        XCTAssertNil(inspect(try body("\(c1) \(c2) refs/heads/topic", pack: "\(c2)\n^\(c1)\n")))
        XCTAssertNil(inspect(try body("\(zero) \(amended) refs/heads/new", pack: "\(amended)\n^\(c1)\n")))
        XCTAssertNotNil(inspect(try body("\(c2) \(amended) refs/heads/topic", pack: "\(amended)\n^\(c1)\n")))
        XCTAssertEqual(refusals.seen.last?.first?.ref, "refs/heads/topic")
        XCTAssertTrue(refusals.seen.last?.first?.reason.hasPrefix("non-fast-forward (history rewrite)") ?? false)
        // A damaged pack refuses the update it was to prove.
        var damaged = try body("\(c1) \(c2) refs/heads/topic", pack: "\(c2)\n^\(c1)\n")
        damaged.moveWriterIndex(to: damaged.writerIndex - 1)
        XCTAssertNotNil(inspect(damaged))
        XCTAssertEqual(refusals.seen.last, [PushPolicy.Refusal(ref: "refs/heads/topic", reason: "cannot check this push's history: the pack ends early (after 3 of 3 objects)")])

        // A ref the policy lets be rewritten is not checked; another still is.
        let policy = try PushPolicy(protect: [], pushRefs: [], allowForcePush: ["topic"])
        let rewrite = try body("\(c2) \(amended) refs/heads/topic", pack: "\(amended)\n^\(c1)\n")
        let lenient = ReceivePackInspector(checks: { policy.checksHistory(of: $0) }) { _, _, _ in LocalResponse.text(.ok, "refused") }
        XCTAssertNil(lenient.inspect(rewrite))
        XCTAssertNil(lenient.finish().refusal, "--allow-force-push topic: the amended topic goes through")
        let strict = ReceivePackInspector(checks: { policy.checksHistory(of: $0) }) { _, _, _ in LocalResponse.text(.ok, "refused") }
        XCTAssertNil(strict.inspect(try body("\(c2) \(amended) refs/heads/other", pack: "\(amended)\n^\(c1)\n")))
        XCTAssertNotNil(strict.finish().refusal, "other branches are still checked")
    }
}

extension InspectorDecision {
    /// The refusal of a decision made at once; a pending decision is no refusal yet.
    var refusal: LocalResponse? {
        if case .refuse(let response) = self { return response }
        return nil
    }

    /// Whether the decision waits for work (a question to the upstream).
    var isPending: Bool {
        if case .pending = self { return true }
        return false
    }
}
