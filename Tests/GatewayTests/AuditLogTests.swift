import Foundation
import NIOConcurrencyHelpers
import NIOCore
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// The audit log's batched writes: whole lines, in order, none lost, batches never interleaved.
final class AuditLogTests: XCTestCase {
    private func event(_ host: String, sandbox: String? = nil) -> AuditEvent {
        AuditEvent(.dnsDeny, sandbox: sandbox, via: .dns, host: host, reason: "\(host) is not on the allowlist", qtype: "A")
    }

    /// For the tests of batching: no rate limit in the way.
    private static let unlimited = DenialBudget.Limits(burst: 1_000_000, perSecond: 1_000_000)

    private func objects(_ path: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(text.isEmpty || text.hasSuffix("\n"))
        return try text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], String($0))
        }
    }

    func testRecordContentsOfWritesEveryLineToTheFileAtOnce() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("audit.jsonl")
        let log = AuditLog(sink: try FileDescriptorAuditSink(appendingTo: path), sandbox: "sbx", denials: Self.unlimited)
        log.record(event("first.example"))
        log.record(contentsOf: [event("a.example"), event("b.example", sandbox: "other"), event("c.example")])
        // Read right away: nothing is held back.
        var lines = try objects(path)
        XCTAssertEqual(lines.map { $0["host"] as? String }, ["first.example", "a.example", "b.example", "c.example"])
        XCTAssertEqual(lines.map { $0["sandbox"] as? String }, ["sbx", "sbx", "other", "sbx"])
        XCTAssertTrue(lines.allSatisfy { $0["event"] as? String == "dns_deny" && $0["ts"] is String })

        log.record(contentsOf: [])
        log.record(contentsOf: [event("single.example")])
        // More than a pipe or a page holds.
        log.record(contentsOf: (0..<2000).map { event("n\($0).example") })
        lines = try objects(path)
        XCTAssertEqual(lines.count, 2005)
        XCTAssertEqual(lines[4]["host"] as? String, "single.example")
        XCTAssertEqual(lines.dropFirst(5).map { $0["host"] as? String }, (0..<2000).map { "n\($0).example" })
    }

    func testBatchesFromSeveralThreadsStayWholeAndTogether() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("audit.jsonl")
        let log = AuditLog(sink: try FileDescriptorAuditSink(appendingTo: path), denials: Self.unlimited)
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            for batch in 0..<100 {
                log.record(contentsOf: (0..<5).map { event("t\(thread)-b\(batch)-l\($0).example") })
                log.record(event("t\(thread)-single\(batch).example"))
            }
        }
        let hosts = try objects(path).map { try XCTUnwrap($0["host"] as? String) }
        XCTAssertEqual(hosts.count, 4 * 100 * 6)
        var index = 0
        while index < hosts.count {
            if hosts[index].contains("-single") {
                index += 1
                continue
            }
            let prefix = String(hosts[index].prefix { $0 != "l" })
            XCTAssertEqual(Array(hosts[index..<(index + 5)]), (0..<5).map { "\(prefix)l\($0).example" })
            index += 5
        }
    }

    func testDNSDenialsAreRateLimitedAndTheDroppedOnesCounted() throws {
        let sink = MemoryAuditSink()
        let log = AuditLog(sink: sink, sandbox: "sbx", denials: DenialBudget.Limits(burst: 3, perSecond: 2))
        // A flood: ten denials in one batch and five one by one; kinds that are not denials are never limited.
        log.record(contentsOf: (0..<10).map { event("flood\($0).example") })
        for i in 0..<5 { log.record(event("more\(i).example")) }
        for i in 0..<20 { log.record(AuditEvent(.egressAllow, via: .proxy, host: "h\(i).example", port: 443, rule: "h\(i).example")) }
        XCTAssertEqual(sink.lines.filter { $0.contains("\"dns_deny\"") }.count, 3, "the burst, then nothing: \(sink.lines)")
        XCTAssertEqual(sink.lines.filter { $0.contains("\"egress_allow\"") }.count, 20)
        XCTAssertTrue(sink.lines.prefix(3).allSatisfy { $0.contains("flood") }, "the first denials are the ones written")

        // Once the budget refills, the next denial is written after a line counting the dropped
        // ones: denials are sent until one is written (each dropped one is counted too).
        var sent = 0
        let linesBefore = sink.lines.count
        XCTAssertTrue(Wait.until(timeout: 30) {
            sent += 1
            log.record(event("later\(sent).example"))
            return sink.lines.count > linesBefore
        }, "the budget refills")
        let tail = Array(sink.lines.suffix(2))
        XCTAssertEqual(tail.count, 2)
        XCTAssertEqual(sink.lines.count, linesBefore + 2, "the count line and the denial: \(sink.lines.suffix(3))")
        XCTAssertTrue(tail[0].contains("\"reason\":\"\(12 + sent - 1) more denied name(s) not written one by one: over 3 at once or 2 a second\""), tail[0])
        XCTAssertTrue(tail[0].contains("\"event\":\"dns_deny\"") && tail[0].contains("\"sandbox\":\"sbx\""), tail[0])
        XCTAssertTrue(tail[1].contains("later\(sent).example"), tail[1])
    }

    func testEveryDenialKindSharesTheSandboxBudgetAndTheDroppedOnesAreCountedByKind() throws {
        let sink = MemoryAuditSink()
        let now = NIOLockedValueBox<Double>(1)
        let log = AuditLog(sink: sink, sandbox: "sbx", denials: DenialBudget.Limits(burst: 4, perSecond: 1),
                           clock: { now.withLockedValue { $0 } })
        // A keep-alive flood of refused requests, refused git requests and denied names.
        for i in 0..<1000 { log.record(AuditEvent(.egressDeny, via: .proxy, host: "h\(i).example", port: 80, reason: "not allowed")) }
        for _ in 0..<7 { log.record(AuditEvent(.gitDeny, via: .git, reason: "missing session token", status: 401)) }
        log.record(event("name.example"))
        XCTAssertEqual(sink.lines.count, 4, "one budget for all denials: \(sink.lines)")
        XCTAssertTrue(sink.lines.allSatisfy { $0.contains("\"egress_deny\"") })

        // A second later there is room for one line again; the counts come before it, one line per kind.
        now.withLockedValue { $0 += 1 }
        log.record(AuditEvent(.gitDeny, via: .git, reason: "missing session token", status: 401))
        let tail = Array(sink.lines.dropFirst(4))
        guard tail.count == 4 else { return XCTFail("three count lines and the denial: \(tail)") }
        XCTAssertTrue(tail[0].contains("\"event\":\"dns_deny\"") && tail[0].contains("\"reason\":\"1 more denied name(s) not written one by one: over 4 at once or 1 a second\""), tail[0])
        XCTAssertTrue(tail[1].contains("\"event\":\"egress_deny\"") && tail[1].contains("\"reason\":\"996 more refused request(s) or connection(s) not written one by one"), tail[1])
        XCTAssertTrue(tail[2].contains("\"event\":\"git_deny\"") && tail[2].contains("\"reason\":\"7 more refused git request(s) not written one by one"), tail[2])
        XCTAssertTrue(tail[3].contains("\"event\":\"git_deny\"") && tail[3].contains("\"status\":401"), tail[3])
        XCTAssertTrue(tail.allSatisfy { $0.contains("\"sandbox\":\"sbx\"") })
    }

    func testMemorySinkKeepsBatchedLinesApart() {
        let sink = MemoryAuditSink()
        AuditLog(sink: sink).record(contentsOf: [event("a.example"), event("b.example")])
        XCTAssertEqual(sink.lines.count, 2)
        XCTAssertTrue(sink.lines[1].contains(#""host":"b.example""#))
    }

    func testTimestampsAreWrittenDigitByDigit() {
        XCTAssertEqual(AuditTimestamp(secondsSinceEpoch: 0, milliseconds: 0).iso8601, "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(AuditTimestamp(secondsSinceEpoch: 1_796_026_500, milliseconds: 123).iso8601, "2026-11-30T08:15:00.123Z")
        XCTAssertEqual(AuditTimestamp(secondsSinceEpoch: 951_782_400, milliseconds: 7).iso8601, "2000-02-29T00:00:00.007Z")
        XCTAssertEqual(AuditTimestamp(secondsSinceEpoch: -1, milliseconds: 999).iso8601, "1969-12-31T23:59:59.999Z")
        XCTAssertEqual(AuditTimestamp(secondsSinceEpoch: 0, milliseconds: 1234).iso8601, "1970-01-01T00:00:00.1234Z")
        let now = AuditTimestamp.now().iso8601
        XCTAssertEqual(now.utf8.count, 24)
        XCTAssertNotNil(now.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression), now)
    }

    func testJSONLinesKeepTheirFieldOrderAndEscapes() {
        let ts = AuditTimestamp(secondsSinceEpoch: 1_796_026_500, milliseconds: 5)
        let deny = AuditEvent(.dnsDeny, sandbox: "sbx", via: .dns, host: "p\\.\\010i.example.org",
                              reason: "p\\.\\010i.example.org is not a valid host name", qtype: "TYPE65280")
        XCTAssertEqual(deny.jsonLine(timestamp: ts),
                       #"{"ts":"2026-11-30T08:15:00.005Z","event":"dns_deny","sandbox":"sbx","via":"dns","host":"p\\.\\010i.example.org","qtype":"TYPE65280","reason":"p\\.\\010i.example.org is not a valid host name"}"#)
        let everything = AuditEvent(.sessionCreate, sandbox: "s \"q\"", via: .control, host: "h\u{7F}", port: 443, rule: "r\tx",
                                    reason: "line\nbreak\r\u{01}\u{2028}é", bytesUp: 1, bytesDown: UInt64.max, ms: -3,
                                    qtype: "A", repo: "github.com/o/r", service: "git-upload-pack", status: 200,
                                    session: "abc", scope: ["github.com/o/r:rw", "x\"y"], ok: false, file: "/etc/airlock/policy")
        XCTAssertEqual(everything.jsonLine(timestamp: ts),
                       #"{"ts":"2026-11-30T08:15:00.005Z","event":"session_create","sandbox":"s \"q\"","via":"control","host":"h\u007f","port":443,"qtype":"A","repo":"github.com/o/r","service":"git-upload-pack","status":200,"session":"abc","scope":["github.com/o/r:rw","x\"y"],"rule":"r\tx","reason":"line\nbreak\r\u0001\u2028é","ok":false,"file":"/etc/airlock/policy","bytes_up":1,"bytes_down":18446744073709551615,"ms":-3}"#)
        XCTAssertEqual(AuditEvent(.policyReload, scope: []).jsonLine(timestamp: ts), #"{"ts":"2026-11-30T08:15:00.005Z","event":"policy_reload","scope":[]}"#)
        XCTAssertEqual(JSONLineWriter.quote("plain"), #""plain""#)
        XCTAssertEqual(JSONLineWriter.quote("a\\b\"c"), #""a\\b\"c""#)
    }
}
