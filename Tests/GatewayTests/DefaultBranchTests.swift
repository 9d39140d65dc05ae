import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// The upstream's default branch, protected like the `--protect` patterns: read from the
/// real `git upload-pack` advertisement (v0, `symref=HEAD:…`), asked of the push's own
/// repository with its credential, remembered for a minute, and applied by the push check
/// at the body's end; an upstream that cannot say refuses the push.
final class DefaultBranchTests: XCTestCase {
    var dir: TemporaryDirectory!
    var bare: String { dir.file("up.git") }

    override func setUpWithError() throws {
        dir = try TemporaryDirectory(prefix: "airlock-default-branch")
        try git("init", "-q", "--bare", "-b", "trunk", bare)
    }

    @discardableResult
    func git(_ args: String...) throws -> String {
        let result = try Run.process(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"] + args)
        guard result.status == 0 else { throw Failed(description: "git \(args.joined(separator: " ")) failed: \(result)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct Failed: Error, CustomStringConvertible { var description: String }

    /// Pushes one commit to `branch` of the bare upstream.
    func seed(_ branch: String) throws -> String {
        let work = dir.file("work-\(branch)")
        try git("init", "-q", "-b", branch, work)
        try git("-C", work, "commit", "-q", "--allow-empty", "-m", "seed \(branch)")
        try git("-C", work, "push", "-q", bare, branch)
        return try git("-C", work, "rev-parse", "HEAD")
    }

    /// The upstream's smart-HTTP `info/refs?service=git-upload-pack` answer, as the real
    /// upload-pack writes it (v0 unless `version2`).
    func advertisement(version2: Bool = false) throws -> [UInt8] {
        let answer = dir.file("answer")
        var environment = ProcessInfo.processInfo.environment
        environment["GIT_PROTOCOL"] = version2 ? "version=2" : nil
        let result = try Run.process(["sh", "-c", "git upload-pack --advertise-refs --stateless-rpc \"$1\" > \"$2\"", "sh", bare, answer], environment: environment)
        XCTAssertEqual(result.status, 0, result.description)
        let body = Array(try Data(contentsOf: URL(fileURLWithPath: answer)))
        return version2 ? body : PktLine.encode(Array("# service=git-upload-pack\n".utf8)) + PktLine.flushBytes + body
    }

    func failure(_ bytes: [UInt8]) -> String? {
        do {
            _ = try DefaultBranch.parse(bytes, ended: true)
            return nil
        } catch {
            return (error as? AncestryFailure)?.description
        }
    }

    func testTheAdvertisementNamesTheBranchHEADNamesOrSaysWhyNot() throws {
        XCTAssertEqual(failure(try advertisement()), "the upstream repository is empty, so it has no default branch yet")
        let trunk = try seed("trunk")
        _ = try seed("main")
        let bytes = try advertisement()
        XCTAssertEqual(try DefaultBranch.parse(bytes, ended: true), "refs/heads/trunk")
        // Read as it arrives: nothing is decided before the first ref line is whole.
        for cut in [0, 10, 30, 40] { XCTAssertNil(try DefaultBranch.parse(Array(bytes.prefix(cut)), ended: false)) }
        XCTAssertEqual(failure(Array(bytes.prefix(40))), "the upstream's advertisement ends early")

        try git("--git-dir", bare, "symbolic-ref", "HEAD", "refs/heads/main")
        XCTAssertEqual(try DefaultBranch.parse(try advertisement(), ended: true), "refs/heads/main")

        // A detached HEAD names no branch; a v2 answer is not what was asked.
        try git("--git-dir", bare, "update-ref", "--no-deref", "HEAD", trunk)
        XCTAssertEqual(failure(try advertisement()), "the upstream does not say which branch its HEAD names")
        XCTAssertEqual(failure(try advertisement(version2: true)), "the upstream answered in protocol v2 where airlock asked for v0")
        XCTAssertEqual(failure(PktLine.encode(Array("# service=git-upload-pack\n".utf8)) + Array("0001".utf8)),
                       "the upstream's advertisement is malformed")
        XCTAssertEqual(failure(Array("00zz".utf8)), "the upstream's advertisement is malformed (a pkt-line length is not hexadecimal)")
        let invalid = PktLine.encode(Array("\(trunk) HEAD\u{0}symref=HEAD:refs/heads/a..b side-band-64k\n".utf8))
        XCTAssertEqual(failure(invalid), "the upstream names a default branch that is not a valid ref (refs/heads/a..b)")
    }

    /// The real upload-pack's v2 `ls-refs` answer to `DefaultBranch.unbornRequest`.
    func lsRefs(_ config: [String] = []) throws -> [UInt8] {
        let request = dir.file("ls-refs-request"), answer = dir.file("ls-refs-answer")
        try Data(DefaultBranch.unbornRequest).write(to: URL(fileURLWithPath: request))
        var environment = ProcessInfo.processInfo.environment
        environment["GIT_PROTOCOL"] = "version=2"
        let result = try Run.process(
            ["sh", "-c", "in=$1; out=$2; shift 2; git \"$@\" < \"$in\" > \"$out\"", "sh", request, answer]
                + config.flatMap { ["-c", $0] } + ["upload-pack", "--stateless-rpc", bare],
            environment: environment)
        XCTAssertEqual(result.status, 0, result.description)
        return Array(try Data(contentsOf: URL(fileURLWithPath: answer)))
    }

    /// An empty repository has no branch to read from its v0 advertisement, but protocol v2
    /// names the branch its first push will make the default (`unborn`); a server that
    /// will not say leaves it unknown, and the push check fails closed.
    func testAnEmptyRepositoryNamesTheBranchItWillMakeItsDefault() throws {
        XCTAssertEqual(try DefaultBranch.parseUnborn(try lsRefs(), ended: true), "refs/heads/trunk")
        do {
            _ = try DefaultBranch.parseUnborn(try lsRefs(["lsrefs.unborn=ignore"]), ended: true)
            XCTFail("a server that does not say was read as saying")
        } catch let failure as AncestryFailure {
            XCTAssertEqual(failure.description, "the upstream repository is empty and does not say which branch it will make its default")
        }
        // Once the branch exists, the same question names it with its id.
        _ = try seed("trunk")
        XCTAssertEqual(try DefaultBranch.parseUnborn(try lsRefs(), ended: true), "refs/heads/trunk")
        XCTAssertNil(try DefaultBranch.parseUnborn(Array(try lsRefs().dropLast(4)), ended: false), "not decided before the flush")
    }

    func testTheCacheForgetsAfterItsLifetimeAndStaysBounded() {
        let now = NIOLockedValueBox<Double>(1)
        let cache = DefaultBranchCache(lifetime: 60, capacity: 2, clock: { now.withLockedValue { $0 } })
        cache.store("refs/heads/trunk", for: "github.com/o/a")
        now.withLockedValue { $0 = 60 }
        XCTAssertEqual(cache.value(for: "github.com/o/a"), "refs/heads/trunk")
        now.withLockedValue { $0 = 61 }
        XCTAssertNil(cache.value(for: "github.com/o/a"), "a minute later the upstream is asked again")
        now.withLockedValue { $0 = 1 }
        cache.store("refs/heads/a", for: "github.com/o/a")
        now.withLockedValue { $0 = 2 }
        cache.store("refs/heads/b", for: "github.com/o/b")
        now.withLockedValue { $0 = 3 }
        cache.store("refs/heads/c", for: "github.com/o/c")
        XCTAssertEqual(cache.count, 2)
        XCTAssertNil(cache.value(for: "github.com/o/a"), "the entry that expires soonest made room")
        XCTAssertEqual(cache.value(for: "github.com/o/c"), "refs/heads/c")
        XCTAssertEqual(DefaultBranchCache.defaultBranches().lifetime, 60)
        XCTAssertEqual(DefaultBranchCache.defaultBranches().capacity, 4096)
    }

    /// The push check learns the default branch at the body's end: an update of it (a
    /// fast-forward creation here) is refused with the reason git shows, others pass; an
    /// upstream that cannot say refuses every update.
    func testThePushCheckRefusesTheDefaultBranchAndFailsClosedWhenItIsUnknown() throws {
        let loop = EmbeddedEventLoop()
        let dialer = EmbeddedDialer(loop: loop)
        let old = String(repeating: "0", count: 40), new = String(repeating: "a", count: 40)
        final class Seen: @unchecked Sendable { var refusals: [PushPolicy.Refusal] = []; var asked = 0 }
        func check(_ ref: String, answer: Result<String, AncestryFailure>, policy: PushPolicy = .standard) throws -> (Seen, LocalResponse?) {
            let seen = Seen()
            let inspector = ReceivePackInspector(
                defaultBranch: { eventLoop, _ in
                    seen.asked += 1
                    return eventLoop.makeSucceededFuture(answer)
                },
                defaultBranchRefusals: { policy.defaultBranchRefusals($0, defaultBranch: $1) },
                refuse: { _, refusals, _ in
                    seen.refusals = refusals
                    return LocalResponse.text(.ok, "refused")
                })
            let commands = PktLine.encode(Array("\(old) \(new) \(ref)\u{0}report-status\n".utf8)) + PktLine.flushBytes
            XCTAssertNil(inspector.inspect(ByteBuffer(bytes: commands + Array("PACK".utf8))))
            guard case .pending(let work) = inspector.finish() else {
                XCTFail("the check waits for the upstream")
                return (seen, nil)
            }
            return (seen, try work(loop, dialer).wait())
        }
        let (trunk, refused) = try check("refs/heads/trunk", answer: .success("refs/heads/trunk"))
        XCTAssertNotNil(refused)
        XCTAssertEqual(trunk.refusals, [PushPolicy.Refusal(
            ref: "refs/heads/trunk",
            reason: "trunk is the upstream's default branch and protected by airlock; push another branch and open a pull request")])
        let (topic, passed) = try check("refs/heads/topic", answer: .success("refs/heads/trunk"))
        XCTAssertNil(passed)
        XCTAssertEqual(topic.asked, 1)
        XCTAssertEqual(topic.refusals, [])
        let (unknown, _) = try check("refs/heads/topic", answer: .failure(AncestryFailure("the upstream answered HTTP 500")))
        XCTAssertEqual(unknown.refusals, [PushPolicy.Refusal(
            ref: "refs/heads/topic",
            reason: "airlock cannot tell which branch is the upstream's default (it is protected): the upstream answered HTTP 500")])
        // --protect none protects nothing, the default branch included.
        let open = try PushPolicy(protect: ["none"], pushRefs: [])
        XCTAssertFalse(open.protectsDefaultBranch)
        XCTAssertEqual(open.defaultBranchRefusals([RefUpdate(old: old, new: new, ref: "refs/heads/trunk")], defaultBranch: "refs/heads/trunk"), [])
        XCTAssertTrue(try PushPolicy(protect: ["release/*"], pushRefs: []).protectsDefaultBranch, "other patterns keep it protected")

        // The empty probe before a large push names no ref: nothing is asked.
        let probe = ReceivePackInspector(defaultBranch: { eventLoop, _ in
            XCTFail("asked for a push that names no ref")
            return eventLoop.makeSucceededFuture(.success("refs/heads/trunk"))
        }, refuse: { _, _, _ in LocalResponse.text(.ok, "refused") })
        XCTAssertNil(probe.inspect(ByteBuffer(bytes: PktLine.flushBytes)))
        guard case .pass = probe.finish() else { return XCTFail("the probe passes") }
    }

    /// The question goes to the push's repository with the session's credential and no
    /// `Git-Protocol` (v0 carries the symref); the connection is left once the first ref
    /// line is read; failures name their cause.
    func testTheClientAsksThePushsRepositoryInProtocolV0() throws {
        _ = try seed("trunk")
        let refs = try advertisement()
        let loop = EmbeddedEventLoop()
        let dialer = EmbeddedDialer(loop: loop)
        let repository = UpstreamRepository(target: UpstreamTarget(host: "git.test", port: 443), hostHeader: "git.test",
                                            path: "/base/owner/repo.git", token: Secret("ghp_REAL"))
        func outcome(_ future: EventLoopFuture<Result<String, AncestryFailure>>, line: UInt = #line) throws -> Result<String, AncestryFailure>? {
            loop.run()
            var result: Result<Result<String, AncestryFailure>, Error>?
            future.whenComplete { result = $0 }
            guard let result else {
                XCTFail("no answer yet", line: line)
                return nil
            }
            return try result.get()
        }
        let asked = DefaultBranch.ask(repository: repository, dialer: dialer, eventLoop: loop)
        loop.run()
        let get = String(decoding: try GatewayHarness.drain(try XCTUnwrap(dialer.last)).readableBytesView, as: UTF8.self)
        XCTAssertTrue(get.hasPrefix("GET /base/owner/repo.git/info/refs?service=git-upload-pack HTTP/1.1\r\n"), get)
        XCTAssertTrue(get.contains("Authorization: Basic \(Base64.encode(Array("x-access-token:ghp_REAL".utf8)))\r\n"), get)
        XCTAssertFalse(get.lowercased().contains("git-protocol"), get)
        // Chunked and never ended: the first ref line is enough.
        try dialer.last!.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
        try dialer.last!.writeInbound(ByteBuffer(string: String(refs.count, radix: 16) + "\r\n"))
        try dialer.last!.writeInbound(ByteBuffer(bytes: refs))
        guard case .success(let ref) = try outcome(asked) else { return XCTFail("answered") }
        XCTAssertEqual(ref, "refs/heads/trunk")

        let refused = DefaultBranch.ask(repository: repository, dialer: dialer, eventLoop: loop)
        loop.run()
        try dialer.last!.writeInbound(ByteBuffer(string: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
        guard case .failure(let notFound) = try outcome(refused) else { return XCTFail("refused") }
        XCTAssertEqual(notFound.description, "the upstream answered HTTP 404")

        let silent = DefaultBranch.ask(repository: repository, dialer: dialer, eventLoop: loop)
        loop.run()
        loop.advanceTime(by: .seconds(11))
        guard case .failure(let late) = try outcome(silent) else { return XCTFail("timed out") }
        XCTAssertEqual(late.description, "the upstream did not answer within 10 s")

        // An empty repository: the v0 advertisement has no ref, so the v2 `unborn` question
        // follows, on a new connection, with the same credential.
        let emptyAdvertisement = PktLine.encode(Array("# service=git-upload-pack\n".utf8)) + PktLine.flushBytes + PktLine.flushBytes
        let unborn = PktLine.encode(Array("unborn HEAD symref-target:refs/heads/trunk\n".utf8)) + PktLine.flushBytes
        let empty = DefaultBranch.ask(repository: repository, dialer: dialer, eventLoop: loop)
        loop.run()
        let first = try XCTUnwrap(dialer.last)
        try first.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: \(emptyAdvertisement.count)\r\n\r\n"))
        try first.writeInbound(ByteBuffer(bytes: emptyAdvertisement))
        loop.run()
        let second = try XCTUnwrap(dialer.last)
        XCTAssertFalse(first === second, "a second connection")
        let post = String(decoding: try GatewayHarness.drain(second).readableBytesView, as: UTF8.self)
        XCTAssertTrue(post.hasPrefix("POST /base/owner/repo.git/git-upload-pack HTTP/1.1\r\n"), post)
        XCTAssertTrue(post.contains("Git-Protocol: version=2\r\n"), post)
        XCTAssertTrue(post.contains("Authorization: Basic \(Base64.encode(Array("x-access-token:ghp_REAL".utf8)))\r\n"), post)
        XCTAssertTrue(post.hasSuffix(String(decoding: DefaultBranch.unbornRequest, as: UTF8.self)), post)
        try second.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: \(unborn.count)\r\n\r\n"))
        try second.writeInbound(ByteBuffer(bytes: unborn))
        guard case .success(let unbornRef) = try outcome(empty) else { return XCTFail("answered for an empty repository") }
        XCTAssertEqual(unbornRef, "refs/heads/trunk")
        for channel in dialer.channels { _ = try? channel.finish(acceptAlreadyClosed: true) }
    }
}
