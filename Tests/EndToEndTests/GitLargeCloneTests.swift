import Foundation
import TestSupport
import XCTest

/// A clone of a repository of more than 200 MB through the git gateway, with the gateway's
/// peak memory far below the size of the pack it streamed: packs are never held whole.
final class GitLargeCloneTests: XCTestCase {
    func testLargeCloneStreamsWithBoundedGatewayMemory() throws {
        try RootTier.require()
        let rig = try GitRig(name: "big\(getpid() % 10000)")
        try rig.start()
        defer { rig.stop() }

        // 4 × 52 MiB of random bytes: incompressible, so the pack is as large as the data.
        let bare = "\(rig.root)/owner/big.git"
        let seed = rig.dir.file("seed-big")
        try rig.git(["init", "-q", "--bare", "-b", "main", bare])
        try rig.git(["init", "-q", "-b", "main", seed])
        for part in 0..<4 {
            let dd = try Run.process(["dd", "if=/dev/urandom", "of=\(seed)/blob\(part).bin", "bs=1M", "count=52", "status=none"], timeout: 60)
            XCTAssertEqual(dd.status, 0, dd.description)
        }
        try rig.git(["-C", seed, "add", "."])
        try rig.git(["-C", seed, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "large"])
        try rig.git(["-C", seed, "push", "-q", bare, "main"])
        let packBytes = try Run.process(["du", "-sb", bare]).stdout.split(separator: "\t").first.flatMap { Int($0) } ?? 0
        XCTAssertGreaterThan(packBytes, 200 << 20, "the upstream repository holds more than 200 MiB")

        let token = try rig.createSession(["owner/big"])
        let clone = try rig.inSandbox(["git", "clone", "-q", "https://github.com/owner/big", "big-clone"], token: token, timeout: 600)
        XCTAssertEqual(clone.status, 0, clone.description)
        let head = try rig.git(["-C", rig.dir.file("big-clone"), "rev-parse", "HEAD"]).stdout
        XCTAssertEqual(head, try rig.git(["--git-dir", bare, "rev-parse", "main"]).stdout)

        // The gateway's high-water mark of resident memory, after streaming the whole pack.
        let status = try String(contentsOfFile: "/proc/\(rig.gateway.pid)/status", encoding: .utf8)
        let peakKiB = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
            .flatMap { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first }
            .flatMap { Int($0) } ?? Int.max
        XCTAssertLessThan(peakKiB * 1024, packBytes / 2, "gateway peak RSS \(peakKiB) KiB for a \(packBytes)-byte pack")
        let allow = rig.auditLines.first { $0.contains("\"git_allow\"") && $0.contains("\"repo\":\"github.com/owner/big\"") && $0.contains("bytes_down") }
        XCTAssertNotNil(allow, "the clone is audited with its byte count")
    }
}
