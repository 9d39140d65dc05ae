import Foundation
import NIOCore
import NIOEmbedded
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// The question airlock asks the upstream when a pushed pack does not prove a
/// fast-forward: the advertisement it reads, the request it builds, and the answer it
/// walks, against the real `git upload-pack` (protocol v2 and v0, with and without
/// filters); the answers it cannot read; and the push check that waits for it.
final class AncestryQueryTests: XCTestCase {
    var dir: TemporaryDirectory!
    var repo: String { dir.file("repo") }
    var bare: String { dir.file("up.git") }

    override func setUpWithError() throws {
        dir = try TemporaryDirectory(prefix: "airlock-ancestry")
        try git("init", "-q", "-b", "main", repo)
    }

    @discardableResult
    func git(_ args: String...) throws -> String {
        let result = try Run.process(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"] + args)
        guard result.status == 0 else { throw Failed(description: "git \(args.joined(separator: " ")) failed: \(result)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct Failed: Error, CustomStringConvertible { var description: String }

    @discardableResult
    func commit(_ message: String, _ files: [String: String] = [:]) throws -> String {
        for (name, content) in files {
            try content.write(toFile: repo + "/" + name, atomically: true, encoding: .utf8)
            try git("-C", repo, "add", name)
        }
        try git("-C", repo, "commit", "-q", "--allow-empty", "-m", message)
        return try git("-C", repo, "rev-parse", "HEAD")
    }

    /// What `git upload-pack` says for `argv` with `input` on stdin, as bytes.
    func uploadPack(_ arguments: [String], input: [UInt8], version2: Bool, config: [String] = []) throws -> [UInt8] {
        let request = dir.file("request"), answer = dir.file("answer")
        try Data(input).write(to: URL(fileURLWithPath: request))
        let configuration = config.map { "-c \($0)" }.joined(separator: " ")
        let script = "git \(configuration) upload-pack \(arguments.joined(separator: " ")) \"$1\" < \"$2\" > \"$3\""
        var environment = ProcessInfo.processInfo.environment
        environment["GIT_PROTOCOL"] = version2 ? "version=2" : nil
        let result = try Run.process(["sh", "-c", script, "sh", bare, request, answer], environment: environment)
        XCTAssertEqual(result.status, 0, result.description)
        return Array(try Data(contentsOf: URL(fileURLWithPath: answer)))
    }

    /// The advertisement the upstream's `info/refs` serves (smart HTTP: the service line
    /// first for v0; v2 has none).
    func advertisement(version2: Bool, config: [String] = []) throws -> UploadPackAdvertisement {
        var bytes = try uploadPack(["--advertise-refs", "--stateless-rpc"], input: [], version2: version2, config: config)
        if !version2 { bytes = PktLine.encode(Array("# service=git-upload-pack\n".utf8)) + PktLine.flushBytes + bytes }
        return try XCTUnwrap(try UploadPackAdvertisement.parse(bytes, ended: true))
    }

    /// Asks the real upload-pack `question` as the gateway would, reading the answer in
    /// small chunks.
    func ask(_ question: AncestryQuestion, version2: Bool, filter: Bool, limits: AncestryAnswer.Limits = AncestryAnswer.Limits()) throws -> AncestryAnswer {
        var config = ["uploadpack.allowReachableSHA1InWant=true"]
        if filter { config.append("uploadpack.allowFilter=true") }
        let advertised = try advertisement(version2: version2, config: config)
        XCTAssertEqual(advertised.version2, version2)
        XCTAssertEqual(advertised.filter, filter)
        let bytes = try uploadPack(["--stateless-rpc"], input: try advertised.request(for: question), version2: version2, config: config)
        let answer = AncestryAnswer(version2: version2, format: .sha1, limits: limits)
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + 97)
            try answer.consume(Array(bytes[offset..<end]))
            offset = end
        }
        try answer.finish()
        return answer
    }

    /// main: c1 – c2 – c3 on the upstream; `side` branches from c1; `later` adds c4 on c3.
    func history() throws -> (c1: String, c2: String, c3: String, c4: String, side: String) {
        let c1 = try commit("one", ["a.txt": "a\n"])
        let c2 = try commit("two", ["b.txt": String(repeating: "b", count: 5000)])
        let c3 = try commit("three", ["a.txt": "c\n"])
        try git("-C", repo, "checkout", "-q", "-b", "later")
        let c4 = try commit("four", ["d.txt": "d\n"])
        try git("-C", repo, "checkout", "-q", "-b", "side", c1)
        let side = try commit("side", ["s.txt": "s\n"])
        try git("clone", "-q", "--bare", repo, bare)
        return (c1, c2, c3, c4, side)
    }

    func testTheUpstreamProvesAncestryAndRefusesTheRest() throws {
        let h = try history()
        for version2 in [true, false] {
            for filter in [true, false] {
                let mode = "v\(version2 ? 2 : 0)\(filter ? " filtered" : "")"
                // old is an ancestor of the boundary: the walk reaches it.
                let ahead = AncestryQuestion(old: h.c2, boundaries: [h.c4])
                XCTAssertTrue(try ask(ahead, version2: version2, filter: filter).proves(ahead), mode)
                // The boundary is old's ancestor (a branch moved back): nothing proves it.
                let back = AncestryQuestion(old: h.c3, boundaries: [h.c2])
                XCTAssertFalse(try ask(back, version2: version2, filter: filter).proves(back), mode)
                // Another line of history from old's parent (a rebase): the walk ends at c1.
                let sideways = AncestryQuestion(old: h.c2, boundaries: [h.side])
                let answer = try ask(sideways, version2: version2, filter: filter)
                XCTAssertFalse(answer.proves(sideways), mode)
                XCTAssertEqual(Set(answer.commits.keys), [h.side], "everything reachable from old is left out: \(mode)")
                // One of several boundaries is enough.
                let several = AncestryQuestion(old: h.c3, boundaries: [h.side, h.c4])
                XCTAssertTrue(try ask(several, version2: version2, filter: filter).proves(several), mode)
            }
        }
    }

    func testAdvertisementsAreReadAsTheServerSpeaks() throws {
        _ = try history()
        XCTAssertEqual(try advertisement(version2: true), UploadPackAdvertisement(version2: true, filter: false))
        XCTAssertEqual(try advertisement(version2: true, config: ["uploadpack.allowFilter=true"]), UploadPackAdvertisement(version2: true, filter: true))
        XCTAssertEqual(try advertisement(version2: false), UploadPackAdvertisement(version2: false, filter: false))
        XCTAssertEqual(try advertisement(version2: false, config: ["uploadpack.allowFilter=true"]), UploadPackAdvertisement(version2: false, filter: true))

        func failure(_ text: String, ended: Bool = true) -> String? {
            do {
                _ = try UploadPackAdvertisement.parse(Array(text.utf8), ended: ended)
                return nil
            } catch {
                return "\(error)"
            }
        }
        XCTAssertNil(try UploadPackAdvertisement.parse(Array("000eversion 2\n0015agent".utf8), ended: false), "more is needed")
        XCTAssertEqual(failure("000eversion 2\n0015agent"), "the upstream's advertisement ends early")
        XCTAssertEqual(failure("<html>"), "the upstream's advertisement is malformed (a pkt-line length is not hexadecimal)")
        XCTAssertEqual(failure("001e# service=git-upload-pack\n00000000"), "the upstream's repository is empty")
    }

    func testRequestsNameOnlyObjectIDsAndTheServersFormat() throws {
        let old = String(repeating: "a", count: 40), boundary = String(repeating: "b", count: 40)
        let question = AncestryQuestion(old: old, boundaries: [boundary])
        XCTAssertEqual(String(decoding: try UploadPackAdvertisement(version2: true, filter: true).request(for: question), as: UTF8.self),
                       "0012command=fetch\n00010010no-progress\n000eofs-delta\n0012filter tree:0\n0032want \(boundary)\n0032have \(old)\n0009done\n0000")
        XCTAssertEqual(String(decoding: try UploadPackAdvertisement(version2: false, filter: false).request(for: question), as: UTF8.self),
                       "0056want \(boundary) side-band-64k ofs-delta no-progress\n00000032have \(old)\n0009done\n")

        func failure(_ question: AncestryQuestion, _ advertisement: UploadPackAdvertisement = UploadPackAdvertisement(version2: true, filter: true)) -> String? {
            do {
                _ = try advertisement.request(for: question)
                return nil
            } catch {
                return "\(error)"
            }
        }
        let injected = String(repeating: "b", count: 39) + "\n"
        XCTAssertEqual(failure(AncestryQuestion(old: old, boundaries: [injected])), "the question names invalid object ids")
        XCTAssertEqual(failure(AncestryQuestion(old: old, boundaries: [String(repeating: "B", count: 40)])), "the question names invalid object ids")
        XCTAssertEqual(failure(AncestryQuestion(old: old, boundaries: [])), "the question names invalid object ids")
        XCTAssertEqual(failure(question, UploadPackAdvertisement(version2: true, filter: true, objectFormat: "sha256")),
                       "the upstream's object format is sha256, the push's is sha1")
        XCTAssertEqual(failure(question, UploadPackAdvertisement(version2: false, filter: false, sideBand: false)), "the upstream offers no side-band")
    }

    /// Answers airlock cannot read, or that are over a bound, are failures naming the cause.
    func testAnswersThatCannotBeReadFail() throws {
        let h = try history()
        let question = AncestryQuestion(old: h.c1, boundaries: [h.c4])
        let config = ["uploadpack.allowFilter=true"]
        let bytes = try uploadPack(["--stateless-rpc"], input: try advertisement(version2: true, config: config).request(for: question), version2: true, config: config)

        func failure(_ bytes: [UInt8], limits: AncestryAnswer.Limits = AncestryAnswer.Limits()) -> String? {
            let answer = AncestryAnswer(version2: true, format: .sha1, limits: limits)
            do {
                try answer.consume(bytes)
                try answer.finish()
                return nil
            } catch {
                return "\(error)"
            }
        }
        XCTAssertNil(failure(bytes))
        XCTAssertEqual(failure(Array(bytes.dropLast(30))), "the upstream's answer ends early")
        // Cut where a line ends: every line read whole, only the closing flush missing.
        XCTAssertEqual(Array(bytes.suffix(4)), Array("0000".utf8))
        XCTAssertEqual(failure(Array(bytes.dropLast(4))), "the upstream's answer ends early")
        XCTAssertEqual(failure(bytes, limits: AncestryAnswer.Limits(bytes: 100)), "the upstream's answer is larger than 100 bytes")
        XCTAssertEqual(failure(bytes, limits: AncestryAnswer.Limits(commits: 2)), "the upstream's answer holds more than 2 commits")
        XCTAssertEqual(failure(Array("0014ERR not our ref\n".utf8)), "the upstream refused the question: not our ref")
        XCTAssertEqual(failure(Array("000dpackfile\n".utf8) + PktLine.encode([3] + Array("fatal: out of memory\n".utf8))),
                       "the upstream failed: fatal: out of memory")
        XCTAssertEqual(failure(Array("0014acknowledgments\n".utf8)), "the upstream's answer has an unexpected section acknowledgments")
        // A byte of the pack's checksum (git 2.39 sends its last byte in a pkt-line of its
        // own, `0006\x01?`, before the flush).
        var damaged = bytes
        damaged[damaged.count - 12] ^= 0xFF
        XCTAssertEqual(failure(damaged), "the upstream's pack cannot be read: the pack's checksum does not match its content")
        XCTAssertEqual(failure(Array("000dpackfile\n0000".utf8)), "the upstream's pack cannot be read: there is no pack")
    }

    /// The push check: where the pack does not prove an update, it asks the upstream
    /// (the question names where the walk left the pack) and decides by the answer; an
    /// unanswered question refuses with its cause.
    func testThePushCheckAsksAboutWhatThePackDoesNotProve() throws {
        let h = try history()
        try git("-C", repo, "checkout", "-q", "later")
        let c5 = try commit("five", ["e.txt": "e\n"])
        // A pack holding c5 only (c4 is upstream on `later`), pushed to main (at c3).
        let packPath = dir.file("push.pack")
        let made = try Run.process(["sh", "-c", "git -C \"$1\" pack-objects --stdout --revs -q > \"$2\"", "sh", repo, packPath], stdin: "\(c5)\n^\(h.c4)\n")
        XCTAssertEqual(made.status, 0, made.description)
        let pack = Array(try Data(contentsOf: URL(fileURLWithPath: packPath)))
        let commands = PktLine.encode(Array("\(h.c3) \(c5) refs/heads/main\u{0}report-status\n".utf8)) + PktLine.flushBytes
        let loop = EmbeddedEventLoop()
        let dialer = EmbeddedDialer(loop: loop)

        final class Seen: @unchecked Sendable {
            var questions: [AncestryQuestion] = []
            var refusals: [PushPolicy.Refusal] = []
            var proof: ReceivePackInspector.Proof?
        }
        func check(_ answer: Result<Bool, AncestryFailure>) throws -> (Seen, LocalResponse?) {
            let seen = Seen()
            let inspector = ReceivePackInspector(
                ask: { questions, eventLoop, _ in
                    seen.questions = questions
                    return eventLoop.makeSucceededFuture(questions.map { _ in answer })
                },
                passed: { seen.proof = $0 },
                refuse: { _, refusals, _ in
                    seen.refusals = refusals
                    return LocalResponse.text(.ok, "refused")
                })
            XCTAssertNil(inspector.inspect(ByteBuffer(bytes: commands + pack)))
            guard case .pending(let work) = inspector.finish() else {
                XCTFail("the check waits for the upstream")
                return (seen, nil)
            }
            return (seen, try work(loop, dialer).wait())
        }
        let (proven, passed) = try check(.success(true))
        XCTAssertNil(passed)
        XCTAssertEqual(proven.questions, [AncestryQuestion(old: h.c3, boundaries: [h.c4])], "asked about where the walk left the pack")
        XCTAssertEqual(proven.proof, .upstream)

        let (disproven, refused) = try check(.success(false))
        XCTAssertNotNil(refused)
        XCTAssertEqual(disproven.refusals, [PushPolicy.Refusal(ref: "refs/heads/main", reason: PushHistory.reason(old: h.c3))])
        XCTAssertNil(disproven.proof)

        let (unanswered, _) = try check(.failure(AncestryFailure("the upstream answered HTTP 500")))
        XCTAssertEqual(unanswered.refusals, [PushPolicy.Refusal(
            ref: "refs/heads/main",
            reason: "not proven fast-forward: cannot ask the upstream whether \(h.c3.prefix(12)) is an ancestor of the pushed commits: the upstream answered HTTP 500")])

        // What the pack proves needs no question.
        let onTop = PktLine.encode(Array("\(h.c4) \(c5) refs/heads/later\u{0}report-status\n".utf8)) + PktLine.flushBytes
        let seen = Seen()
        let inspector = ReceivePackInspector(ask: { questions, eventLoop, _ in
            seen.questions = questions
            return eventLoop.makeSucceededFuture([])
        }, passed: { seen.proof = $0 }, refuse: { _, _, _ in LocalResponse.text(.ok, "refused") })
        XCTAssertNil(inspector.inspect(ByteBuffer(bytes: onTop + pack)))
        guard case .pass = inspector.finish() else { return XCTFail("proven by the pack") }
        XCTAssertEqual(seen.questions, [])
        XCTAssertEqual(seen.proof, .pack)
    }

    /// The client: the advertisement, then the question, both to the push's repository
    /// with the session's credential; a status other than 200, a failed dial and a
    /// silent upstream are failures naming the cause.
    func testTheClientAsksThePushsRepositoryAndFailsClosed() throws {
        let h = try history()
        let question = AncestryQuestion(old: h.c2, boundaries: [h.c4])
        let config = ["uploadpack.allowFilter=true"]
        let refs = try uploadPack(["--advertise-refs", "--stateless-rpc"], input: [], version2: true, config: config)
        let answer = try uploadPack(["--stateless-rpc"], input: try advertisement(version2: true, config: config).request(for: question), version2: true, config: config)
        let loop = EmbeddedEventLoop()
        let dialer = EmbeddedDialer(loop: loop)
        let repository = UpstreamRepository(target: UpstreamTarget(host: "git.test", port: 443), hostHeader: "git.test",
                                            path: "/base/owner/repo.git", token: Secret("ghp_REAL"))
        func ask() -> EventLoopFuture<[Result<Bool, AncestryFailure>]> {
            AncestryClient.ask([question], repository: repository, dialer: dialer, eventLoop: loop)
        }
        func respond(_ channel: EmbeddedChannel, status: Int = 200, body: [UInt8]) throws {
            try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 \(status) X\r\nContent-Length: \(body.count)\r\n\r\n"))
            try channel.writeInbound(ByteBuffer(bytes: body))
            loop.run()
        }
        func outcome(_ future: EventLoopFuture<[Result<Bool, AncestryFailure>]>, line: UInt = #line) throws -> Result<Bool, AncestryFailure>? {
            loop.run()
            var result: Result<[Result<Bool, AncestryFailure>], Error>?
            future.whenComplete { result = $0 }
            guard let result else {
                XCTFail("no answer yet", line: line)
                return nil
            }
            return try result.get().first
        }
        func failure(_ future: EventLoopFuture<[Result<Bool, AncestryFailure>]>, line: UInt = #line) throws -> String? {
            guard case .failure(let failure) = try outcome(future, line: line) else { return nil }
            return failure.description
        }

        let proven = ask()
        loop.run()
        let get = String(decoding: try GatewayHarness.drain(try XCTUnwrap(dialer.last)).readableBytesView, as: UTF8.self)
        XCTAssertTrue(get.hasPrefix("GET /base/owner/repo.git/info/refs?service=git-upload-pack HTTP/1.1\r\n"), get)
        XCTAssertTrue(get.contains("Authorization: Basic \(Base64.encode(Array("x-access-token:ghp_REAL".utf8)))\r\n"), get)
        XCTAssertTrue(get.contains("Git-Protocol: version=2\r\n"), get)
        try respond(dialer.last!, body: refs)
        XCTAssertEqual(dialer.channels.count, 2)
        let post = String(decoding: try GatewayHarness.drain(dialer.last!).readableBytesView, as: UTF8.self)
        XCTAssertTrue(post.hasPrefix("POST /base/owner/repo.git/git-upload-pack HTTP/1.1\r\n"), post)
        XCTAssertTrue(post.hasSuffix("0032want \(h.c4)\n0032have \(h.c2)\n0009done\n0000"), post)
        try respond(dialer.last!, body: answer)
        guard case .success(true) = try outcome(proven) else { return XCTFail("proven: \(String(describing: try outcome(proven)))") }
        XCTAssertEqual(dialer.targets.map(\.host), ["git.test", "git.test"])

        let refused = ask()
        loop.run()
        try respond(dialer.last!, status: 500, body: Array("oops".utf8))
        XCTAssertEqual(try failure(refused), "the upstream answered HTTP 500")

        let silent = ask()
        loop.run()
        loop.advanceTime(by: .seconds(31))
        XCTAssertEqual(try failure(silent), "the upstream did not answer within 30 s")

        dialer.failure = .connectFailed(host: "git.test", port: 443, reason: "connection refused")
        XCTAssertEqual(try failure(ask()), "cannot connect to git.test:443: connection refused")
        for channel in dialer.channels { _ = try? channel.finish(acceptAlreadyClosed: true) }
    }
}
