import XCTest
@testable import Gateway
@testable import GatewayCore

/// The push policy's pieces on the bytes git sends: pkt-lines, the receive-pack command
/// section, the decision, and the report git reads back.
final class PushPolicyTests: XCTestCase {
    let zero = String(repeating: "0", count: 40)
    let a = String(repeating: "a", count: 40)
    let b = String(repeating: "b", count: 40)

    func line(_ text: String) -> [UInt8] { PktLine.encode(Array(text.utf8)) }

    func testPktLinesAreReadStrictly() {
        XCTAssertEqual(PktLine.read(Array("0009hello0000".utf8), at: 0), .line(.data(Array("hello".utf8)), next: 9))
        XCTAssertEqual(PktLine.read(Array("0009hello0000".utf8), at: 9), .line(.flush, next: 13))
        XCTAssertEqual(PktLine.read(Array("0001".utf8), at: 0), .line(.delimiter, next: 4))
        XCTAssertEqual(PktLine.read(Array("000ahel".utf8), at: 0), .needMore)
        XCTAssertEqual(PktLine.read(Array("00".utf8), at: 0), .needMore)
        XCTAssertEqual(PktLine.read(Array("zz09hello".utf8), at: 0), .malformed("a pkt-line length is not hexadecimal"))
        XCTAssertEqual(PktLine.read(Array("0003".utf8), at: 0), .malformed("a pkt-line length of 3"))
        XCTAssertEqual(PktLine.read(Array("fff1".utf8), at: 0), .malformed("a pkt-line longer than 65520 bytes"))
        XCTAssertEqual(PktLine.encode(Array("unpack ok\n".utf8)), Array("000eunpack ok\n".utf8))
    }

    func testCommandSectionAsGitSendsIt() {
        let body = line("\(zero) \(a) refs/heads/feature\u{0}report-status side-band-64k agent=git/2.39\n")
            + line("\(a) \(b) refs/heads/main\n") + PktLine.flushBytes + Array("PACK....".utf8)
        XCTAssertEqual(ReceivePackCommands.parse(body), .complete([
            RefUpdate(old: zero, new: a, ref: "refs/heads/feature"),
            RefUpdate(old: a, new: b, ref: "refs/heads/main"),
        ], capabilities: ["report-status", "side-band-64k", "agent=git/2.39"], length: body.count - 8))
        // Cut anywhere inside the section: more is needed, nothing is decided.
        for cut in [0, 3, 20, body.count - 12] {
            XCTAssertEqual(ReceivePackCommands.parse(Array(body[..<cut])), .needMore, "cut at \(cut)")
        }
        let shallow = line("shallow \(a)\n") + line("\(a) \(b) refs/heads/x\u{0}report-status\n") + PktLine.flushBytes
        XCTAssertEqual(ReceivePackCommands.parse(shallow), .complete([RefUpdate(old: a, new: b, ref: "refs/heads/x")], capabilities: ["report-status"], length: shallow.count))
    }

    func testWhatCannotBeCheckedFailsClosed() {
        func parse(_ lines: String...) -> ReceivePackCommands.Parse {
            ReceivePackCommands.parse(lines.flatMap(line) + PktLine.flushBytes)
        }
        XCTAssertEqual(parse("\(a) \(b) refs/heads/../main\n"), .malformed("the ref name 'refs/heads/../main' is not valid"))
        XCTAssertEqual(parse("\(a) \(b) refs/heads//main\n"), .malformed("the ref name 'refs/heads//main' is not valid"))
        XCTAssertEqual(parse("\(a) \(b) refs/heads/main.lock\n"), .malformed("the ref name 'refs/heads/main.lock' is not valid"))
        XCTAssertEqual(parse("\(a) \(b) HEAD\n"), .malformed("the ref name 'HEAD' is not valid"))
        XCTAssertEqual(parse("\(a) \(b.prefix(39)) refs/heads/x\n"), .malformed("a push command is not `<old-id> <new-id> <ref>`"))
        XCTAssertEqual(parse("\(a.uppercased()) \(b) refs/heads/x\n"), .malformed("a push command is not `<old-id> <new-id> <ref>`"))
        XCTAssertEqual(parse("push-cert\u{0}report-status\n"), .malformed("signed pushes (push certificates) cannot be checked by airlock"))
        XCTAssertEqual(parse("\(a) \(b) refs/heads/x\n", "\(a) \(b) refs/heads/y\u{0}caps\n"), .malformed("capabilities after the first command"))
        // git's probe before a large push names no ref and updates nothing.
        XCTAssertEqual(ReceivePackCommands.parse(PktLine.flushBytes), .complete([], capabilities: [], length: 4))
        XCTAssertEqual(PushPolicy.standard.refusals([]), [])
        // A section that never ends is cut off at the bound.
        let endless = Array(repeating: line("\(a) \(b) refs/heads/branch-with-a-long-name\n"), count: 20_000).flatMap { $0 }
        XCTAssertEqual(ReceivePackCommands.parse(endless), .malformed("the push names more refs than airlock reads (1024 KiB of commands)"))
    }

    func testPolicyRefusesDeletionsProtectedRefsAndRefsOutsideThePushPattern() throws {
        let policy = PushPolicy.standard
        XCTAssertEqual(policy.refusals([RefUpdate(old: a, new: b, ref: "refs/heads/feature/x"), RefUpdate(old: zero, new: a, ref: "refs/tags/v1")]), [])
        XCTAssertEqual(policy.refusals([RefUpdate(old: a, new: zero, ref: "refs/heads/feature")]),
                       [.init(ref: "refs/heads/feature", reason: "deleting refs is not allowed through airlock")])
        XCTAssertEqual(policy.refusals([RefUpdate(old: a, new: zero, ref: "refs/tags/v1")]).map(\.ref), ["refs/tags/v1"])
        for ref in ["refs/heads/main", "refs/heads/master", "refs/heads/release/2.0"] {
            XCTAssertEqual(policy.refusals([RefUpdate(old: a, new: b, ref: ref)]).first?.reason.hasSuffix("is protected by airlock; push another branch and open a pull request"), true, ref)
        }
        // A new branch named like a protected one is protected too.
        XCTAssertEqual(policy.refusals([RefUpdate(old: zero, new: a, ref: "refs/heads/main")]).count, 1)
        XCTAssertEqual(policy.refusals([RefUpdate(old: a, new: b, ref: "refs/heads/mainline")]), [])

        let agent = PushPolicy(protected: PushPolicy.standard.protected, allowed: [try RefPattern("agent/*")])
        XCTAssertEqual(agent.refusals([RefUpdate(old: zero, new: a, ref: "refs/heads/agent/fix-1")]), [])
        XCTAssertEqual(agent.refusals([RefUpdate(old: zero, new: a, ref: "refs/heads/feature")]),
                       [.init(ref: "refs/heads/feature", reason: "this session pushes only to agent/*")])
        XCTAssertThrowsError(try RefPattern("bad pattern")) {
            XCTAssertEqual(String(describing: $0), "ref pattern 'bad pattern' is not valid (a branch such as main or release/*, or refs/…)")
        }
        XCTAssertTrue(try RefPattern("refs/tags/*").matches("refs/tags/v1.0"))
    }

    /// The flags go through the same check as a pattern written alone: a bad one is refused,
    /// and a `refs/…` pattern names that ref (not a branch called `refs/…`).
    func testPatternsFromFlagsAreCheckedAndKeepTheirNamespace() throws {
        for flags in [(["bad:pattern"], [String](), [String]()), ([], ["bad pattern"], []), ([], [], ["a\\b"])] {
            XCTAssertThrowsError(try PushPolicy(protect: flags.0, pushRefs: flags.1, allowForcePush: flags.2), "\(flags)")
        }
        let tags = try PushPolicy(protect: ["refs/tags/*"], pushRefs: ["refs/tags/*", "agent/*"], allowForcePush: ["refs/tags/*"])
        XCTAssertEqual(tags.refusals([RefUpdate(old: a, new: b, ref: "refs/tags/v1")]).map(\.ref), ["refs/tags/v1"])
        XCTAssertEqual(tags.refusals([RefUpdate(old: a, new: b, ref: "refs/heads/agent/x")]), [])
        XCTAssertFalse(tags.checksHistory(of: RefUpdate(old: a, new: b, ref: "refs/tags/v1")))
        XCTAssertTrue(tags.checksHistory(of: RefUpdate(old: a, new: b, ref: "refs/heads/agent/x")))
    }

    func testReportIsWhatReceivePackWouldSay() {
        let updates = [RefUpdate(old: a, new: b, ref: "refs/heads/main"), RefUpdate(old: zero, new: a, ref: "refs/heads/ok")]
        let refusals = PushPolicy.standard.refusals(updates)
        let plain = ReceivePackReport.refused(updates, refusals: refusals, capabilities: ["report-status"])
        XCTAssertEqual(String(decoding: plain, as: UTF8.self),
                       "000eunpack ok\n" + "0061ng refs/heads/main main is protected by airlock; push another branch and open a pull request\n"
                       + "0043ng refs/heads/ok refused with the rest of this push by airlock\n" + "0000")
        let banded = ReceivePackReport.refused(updates, refusals: refusals, capabilities: ["report-status", "side-band-64k"])
        // Band 2 first (git prints it as `remote: …`), then the report in band 1, then a flush.
        guard case .line(.data(let progress), let next) = PktLine.read(banded, at: 0) else { return XCTFail("no band 2 line") }
        XCTAssertEqual(progress.first, 2)
        XCTAssertEqual(String(decoding: progress.dropFirst(), as: UTF8.self), "airlock: refs/heads/main: main is protected by airlock; push another branch and open a pull request\n")
        guard case .line(.data(let data), let end) = PktLine.read(banded, at: next) else { return XCTFail("no band 1 line") }
        XCTAssertEqual(data.first, 1)
        XCTAssertEqual(Array(data.dropFirst()), plain)
        XCTAssertEqual(PktLine.read(banded, at: end), .line(.flush, next: banded.count))
    }
}
