#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOConcurrencyHelpers
import TestSupport
import XCTest
@testable import GatewayCore

/// Sessions that survive a restart: a store with a `SessionJournal` on a temporary file,
/// then a second store (a restarted gateway) restored from the same file.
final class SessionJournalTests: XCTestCase {
    let upstream = Secret("ghp_REALUPSTREAM token%0with,odd bytes\u{e9}")
    var dir: TemporaryDirectory!
    var clock: ManualClock!
    var sink: MemoryAuditSink!
    let warnings = NIOLockedValueBox<[String]>([])

    override func setUpWithError() throws {
        dir = try TemporaryDirectory(prefix: "airlock-sessions")
        clock = ManualClock()
        sink = MemoryAuditSink()
        warnings.withLockedValue { $0 = [] }
    }

    private var path: String { dir.file("sessions") }

    /// A gateway's start: the file opened, then a fresh store restored from it.
    private func start(_ limits: SessionLimits = SessionLimits()) throws -> (SessionStore, Int) {
        let warnings = self.warnings
        let journal = try SessionJournal(path: path, owner: getuid(), warn: { line in warnings.withLockedValue { $0.append(line) } })
        let store = SessionStore(limits: limits, audit: AuditLog(sink: sink), clock: clock.read)
        let restored = store.restore(from: journal)
        return (store, restored)
    }

    private func scope(_ entries: String...) throws -> SessionScope {
        SessionScope(try entries.map { try ScopeEntry(parsing: $0) })
    }

    private func reveal(_ s: Secret) -> String { s.withRevealed { $0 } }

    private var fileText: String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    func testCreatedSessionsComeBackAndRevokedOnesStayRevoked() throws {
        let (first, none) = try start()
        XCTAssertEqual(none, 0)
        let policy = try PushPolicy(protect: ["main", "refs/tags/*"], pushRefs: ["agent/*"], allowForcePush: ["agent/scratch"], maxPushSize: "5M", pushRate: "7")
        let (kept, keptSummary) = try first.create(
            sandbox: "sbx", scope: try scope("owner/repo:rw", "git.example.com/team/lib"), upstreamToken: upstream, ttl: 3600, pushPolicy: policy)
        let (revoked, revokedSummary) = try first.create(sandbox: "sbx", scope: try scope("owner/other"), upstreamToken: Secret("ghp_second"))
        try first.revoke(id: revokedSummary.id)

        // Only digests: neither session token is in the file (the upstream token is, by design).
        XCTAssertFalse(fileText.contains(reveal(kept)))
        XCTAssertFalse(fileText.contains(reveal(revoked)))
        XCTAssertTrue(fileText.contains(SessionToken.digest(of: kept).hex))
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)

        clock.advance(60)
        let linesBefore = sink.lines.count
        let (second, restored) = try start()
        XCTAssertEqual(restored, 1)
        XCTAssertEqual(warnings.withLockedValue { $0 }, [])
        // The restart is in the audit log: the live session, by id and scope; not the revoked one.
        let restoreLines = sink.lines.dropFirst(linesBefore).filter { $0.contains("\"event\":\"session_restore\"") }
        XCTAssertEqual(restoreLines.count, 1, sink.lines.joined(separator: "\n"))
        XCTAssertTrue(restoreLines.first?.contains("\"session\":\"\(keptSummary.id)\"") ?? false, restoreLines.joined())
        XCTAssertTrue(restoreLines.first?.contains("\"ok\":true") ?? false, restoreLines.joined())
        XCTAssertFalse(sink.lines.contains { $0.contains(reveal(kept)) || $0.contains(reveal(upstream)) })
        XCTAssertEqual(second.list(), [keptSummary])
        guard case let .valid(grant) = second.check(token: reveal(kept), sandbox: "sbx") else { return XCTFail("the kept session is valid again") }
        XCTAssertEqual(grant.id, keptSummary.id)
        XCTAssertEqual(grant.upstreamToken, upstream)
        XCTAssertEqual(grant.scope, try scope("owner/repo:rw", "git.example.com/team/lib"))
        XCTAssertEqual(grant.pushPolicy, policy)
        XCTAssertEqual(second.check(token: reveal(kept), sandbox: "other").refusalReason, "the session token was issued for another sandbox")
        XCTAssertEqual(second.check(token: reveal(revoked), sandbox: "sbx").refusalReason, "the session was revoked")
        XCTAssertThrowsError(try second.revoke(id: revokedSummary.id)) { error in
            XCTAssertEqual(String(describing: error), "no live session with id \"\(revokedSummary.id)\"")
        }

        // A third start: the rewritten file says the same.
        let (third, again) = try start()
        XCTAssertEqual(again, 1)
        XCTAssertEqual(third.check(token: reveal(revoked), sandbox: "sbx").refusalReason, "the session was revoked")
        XCTAssertEqual(third.list().map(\.id), [keptSummary.id])
    }

    func testExpiredSessionsDoNotReturn() throws {
        let (first, _) = try start()
        let (short, shortSummary) = try first.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream, ttl: 100)
        let (idle, _) = try first.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream, ttl: 7200, idleTimeout: 600)
        let (used, usedSummary) = try first.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream, ttl: 7200, idleTimeout: 600)
        // Used 500 s after its creation: its idle clock restarts then, and the file says so.
        clock.advance(500)
        guard case .valid = first.check(token: reveal(used), sandbox: "sbx") else { return XCTFail("valid") }
        // Down while the short one's lifetime ends and the idle one idles out.
        clock.advance(300)
        let (second, restored) = try start()
        XCTAssertEqual(restored, 1)
        XCTAssertEqual(second.list().map(\.id), [usedSummary.id])
        XCTAssertEqual(second.check(token: reveal(short), sandbox: "sbx").refusalReason, "the session has expired")
        XCTAssertEqual(second.check(token: reveal(idle), sandbox: "sbx").refusalReason, "the session has expired")
        XCTAssertTrue(sink.lines.contains { $0.contains("\"event\":\"session_expire\"") && $0.contains(shortSummary.id) && $0.contains("absolute lifetime reached") })
        XCTAssertTrue(sink.lines.contains { $0.contains("\"event\":\"session_expire\"") && $0.contains("idle for 600s") })
        // The used one idles out 600 s after its last use, restart or not.
        clock.advance(301)
        let (third, none) = try start()
        XCTAssertEqual(none, 0)
        XCTAssertEqual(third.check(token: reveal(used), sandbox: "sbx").refusalReason, "the session has expired")
    }

    func testATornLastRecordIsIgnored() throws {
        let (first, _) = try start()
        let (token, summary) = try first.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream)
        // A crash in the middle of the next write: half a line, no newline.
        let torn = String(fileText.prefix(70))
        let fd = open(path, O_WRONLY | O_APPEND)
        XCTAssertEqual(torn.withCString { write(fd, $0, strlen($0)) }, torn.utf8.count)
        close(fd)
        let (second, restored) = try start()
        XCTAssertEqual(restored, 1)
        XCTAssertEqual(warnings.withLockedValue { $0 }, [])
        XCTAssertEqual(second.list().map(\.id), [summary.id])
        guard case .valid = second.check(token: reveal(token), sandbox: "sbx") else { return XCTFail("valid") }
        // The rewrite dropped the torn tail.
        XCTAssertTrue(fileText.hasSuffix("\n"))
        XCTAssertEqual(fileText.split(separator: "\n").count, 1)
    }

    func testAMalformedFileRestoresNothingWithOneWarning() throws {
        let (first, _) = try start()
        let (token, _) = try first.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream)
        for garbage in ["airlock-sessions/1 use 0123456789ab nonsense\n", "airlock-sessions/9 end x\n", "not a record\n"] {
            let fd = open(path, O_WRONLY | O_APPEND)
            XCTAssertEqual(garbage.withCString { write(fd, $0, strlen($0)) }, garbage.utf8.count)
            close(fd)
            warnings.withLockedValue { $0 = [] }
            let (second, restored) = try start()
            XCTAssertEqual(restored, 0)
            XCTAssertEqual(second.check(token: reveal(token), sandbox: "sbx").refusalReason, "the session token is not known to this gateway")
            let said = warnings.withLockedValue { $0 }
            XCTAssertEqual(said.count, 1, "\(said)")
            XCTAssertTrue(said.first?.hasPrefix("airlock: the session file \(path) is unreadable (record ") ?? false, "\(said)")
            XCTAssertTrue(said.first?.hasSuffix("); its sessions are lost, replaced by an empty one") ?? false, "\(said)")
            XCTAssertFalse(said.joined().contains("ghp_"), "no secret in the warning")
            XCTAssertEqual(fileText, "", "replaced by an empty file")
            let failed = sink.lines.last { $0.contains("\"event\":\"session_restore\"") }
            XCTAssertTrue(failed?.contains("\"ok\":false") ?? false, failed ?? "no session_restore line")
            XCTAssertTrue(failed?.contains("no session was restored") ?? false, failed ?? "")
            XCTAssertFalse(failed?.contains("ghp_") ?? true, "no secret in the audit line")
            // Put the session back for the next kind of garbage.
            _ = try second.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream)
        }
        // The exact reasons, by record: a bad field, another version.
        XCTAssertThrowsError(try SessionJournalRecord(parsing: Array("airlock-sessions/1 use 0123456789ab nonsense".utf8)[...])) {
            XCTAssertEqual("\($0)", "bad use time")
        }
        XCTAssertThrowsError(try SessionJournalRecord(parsing: Array("airlock-sessions/2 end x".utf8)[...])) {
            XCTAssertEqual("\($0)", "not an airlock-sessions/1 record")
        }
    }

    func testAFileWithGroupOrOtherBitsIsRefusedAndReplaced() throws {
        let (first, _) = try start()
        let (token, _) = try first.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream)
        XCTAssertEqual(chmod(path, 0o640), 0)
        let (second, restored) = try start()
        XCTAssertEqual(restored, 0)
        XCTAssertEqual(second.check(token: reveal(token), sandbox: "sbx").refusalReason, "the session token is not known to this gateway")
        XCTAssertEqual(warnings.withLockedValue { $0 }, [
            "airlock: the session file \(path) must be owned by uid \(getuid()) with mode 0600 (it has uid \(getuid()), mode 0640); not read, its sessions are lost, replaced by an empty one",
        ])
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        XCTAssertEqual(fileText, "")
    }

    func testAFileOwnedByAnotherAccountOrASymlinkIsRefused() throws {
        guard getuid() == 0 else { throw XCTSkip("changing a file's owner needs root") }
        let (first, _) = try start()
        let (token, _) = try first.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream)
        XCTAssertEqual(chown(path, 65534, 65534), 0)
        let (second, restored) = try start()
        XCTAssertEqual(restored, 0)
        XCTAssertEqual(second.check(token: reveal(token), sandbox: "sbx").refusalReason, "the session token is not known to this gateway")
        XCTAssertEqual(warnings.withLockedValue { $0 }, [
            "airlock: the session file \(path) must be owned by uid 0 with mode 0600 (it has uid 65534, mode 0600); not read, its sessions are lost, replaced by an empty one",
        ])
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_uid, 0)

        // A symbolic link in its place is removed, never followed.
        let target = dir.file("elsewhere")
        XCTAssertTrue(FileManager.default.createFile(atPath: target, contents: Data("keep\n".utf8)))
        XCTAssertEqual(unlink(path), 0)
        XCTAssertEqual(symlink(target, path), 0)
        warnings.withLockedValue { $0 = [] }
        _ = try start()
        XCTAssertEqual(warnings.withLockedValue { $0 }, [
            "airlock: the session file \(path) is a symbolic link; not read, its sessions are lost, replaced by an empty one",
        ])
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "keep\n")
        XCTAssertEqual(lstat(path, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFREG)
    }

    func testAFailedWriteEmptiesTheFileSoARevokedSessionCannotReturn() throws {
        let (first, _) = try start()
        let (token, summary) = try first.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream)
        // The file may not grow any more: the revocation's record cannot be written (EFBIG).
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)
        var saved = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved), 0)
        var limited = saved
        limited.rlim_cur = rlim_t(info.st_size)
        XCTAssertEqual(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limited), 0)
        try first.revoke(id: summary.id)
        XCTAssertEqual(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved), 0)
        signal(SIGXFSZ, oldHandler)
        XCTAssertEqual(first.check(token: reveal(token), sandbox: "sbx").refusalReason, "the session was revoked")
        XCTAssertEqual(warnings.withLockedValue { $0 }, [
            "airlock: cannot write the session file \(path) (File too large); emptied it, sessions from now on will not survive a restart",
        ])
        XCTAssertEqual(fileText, "")
        // Nothing more is written, and the restarted store does not know the session at all.
        _ = try first.create(sandbox: "sbx", scope: try scope("owner/repo"), upstreamToken: upstream)
        XCTAssertEqual(fileText, "")
        let (second, restored) = try start()
        XCTAssertEqual(restored, 0)
        XCTAssertEqual(second.check(token: reveal(token), sandbox: "sbx").refusalReason, "the session token is not known to this gateway")
    }

    func testRecordsRoundTrip() throws {
        let digest = SessionToken.digest(of: SessionToken.generate())
        var policy = PushPolicy(protected: [], allowed: [])
        policy.protectsDefaultBranch = false
        let session = StoredSession(
            digest: digest, sandbox: "sbx-1", scope: SessionScope([]), upstreamToken: Secret("a b\nc%,.-"), pushPolicy: policy,
            createdAt: 1_800_000_000.123, expiresAt: 1_800_003_600.5, lastUsedAt: 1_800_000_001, idleTimeout: 7200)
        for record in [SessionJournalRecord.create(session), .use(id: digest.sessionID, at: 1_800_000_002.25), .end(digest: digest, revoked: true),
                       .end(digest: digest, revoked: false)] {
            let line = record.line
            XCTAssertEqual(line.last, UInt8(ascii: "\n"))
            XCTAssertEqual(line.filter { $0 == UInt8(ascii: "\n") }.count, 1)
            XCTAssertEqual(try SessionJournalRecord(parsing: line.dropLast()), record)
        }
        XCTAssertEqual(String(decoding: SessionJournalRecord.end(digest: digest, revoked: true).line, as: UTF8.self),
                       "airlock-sessions/1 end \(digest.hex) revoked\n")
    }
}
