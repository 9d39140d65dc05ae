import Foundation
import TestSupport
import XCTest
@testable import Digests
@testable import Gateway

/// SHA-1 and SHA-256 as the pack reader and the session store use them: the FIPS 180
/// examples, every length around the padding boundaries against OpenSSL (Python's hashlib),
/// any split of the input, and git's own object ids.
final class DigestsTests: XCTestCase {
    private func hex(_ bytes: [UInt8]) -> String { ObjectID.hex(bytes) }

    func testFIPSExamples() {
        let twoBlocks = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
        let cases: [(String, String, String)] = [
            ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "a9993e364706816aba3e25717850c26c9cd0d89d", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
             "84983e441c3bd26ebaae4aa1f95129e5e54670f1", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
            (twoBlocks, "a49b2446a02c645bf419f995b67091253a04a259", "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
            (String(repeating: "a", count: 1_000_000),
             "34aa973cd4c4daa4f61eeb2bdbad27316534016f", "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
        ]
        for (message, sha1, sha256) in cases {
            XCTAssertEqual(hex(SHA1.hash(Array(message.utf8))), sha1, "SHA-1 of \(message.prefix(10))… (\(message.count) bytes)")
            XCTAssertEqual(hex(SHA256.hash(Array(message.utf8))), sha256, "SHA-256 of \(message.prefix(10))… (\(message.count) bytes)")
        }
    }

    /// Every length from 0 to 300 bytes (the one- and two-block paddings and their edges),
    /// fed whole and in pieces of every size from 1 to 70 bytes, against OpenSSL's digests.
    func testEveryLengthAndEverySplitAgreesWithOpenSSL() throws {
        let script = """
        import hashlib
        for n in range(301):
            m = bytes((i * 131 + 7) & 255 for i in range(n))
            print(hashlib.sha1(m).hexdigest(), hashlib.sha256(m).hexdigest())
        """
        let result = try Run.process(["python3", "-c", script])
        try Precondition.require(result.status == 0, "python3 with hashlib is needed: \(result)")
        let expected = result.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        XCTAssertEqual(expected.count, 301)
        for n in 0...300 {
            let message = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
            XCTAssertEqual(hex(SHA1.hash(message)), expected[n][0], "SHA-1 of \(n) bytes")
            XCTAssertEqual(hex(SHA256.hash(message)), expected[n][1], "SHA-256 of \(n) bytes")
            for piece in [1, 3, 55, 63, 64, 65, 70] where piece < max(n, 2) {
                var sha1 = SHA1(), sha256 = SHA256()
                var start = 0
                while start < n {
                    let chunk = Array(message[start..<min(n, start + piece)])
                    sha1.update(chunk)
                    sha256.update(chunk)
                    start += piece
                }
                XCTAssertEqual(hex(sha1.finalize()), expected[n][0], "SHA-1 of \(n) bytes in pieces of \(piece)")
                XCTAssertEqual(hex(sha256.finalize()), expected[n][1], "SHA-256 of \(n) bytes in pieces of \(piece)")
            }
        }
    }

    /// The hardware block function (x86 SHA extensions) against the Swift one: every
    /// length to 1,100 bytes and pieces of odd sizes, on pseudo-random bytes.
    func testTheHardwareBlockFunctionAgreesWithTheSwiftOne() throws {
        try Precondition.require(SHA1.hardwareAvailable,
                                 "this CPU has no SHA extensions (cpuinfo flag sha_ni); SHA-1 runs the Swift block function only")
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        let message = (0..<1100).map { _ -> UInt8 in
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: seed >> 33)
        }
        for n in 0...1100 {
            let input = Array(message[..<n])
            var hardware = SHA1(), portable = SHA1(portable: true)
            hardware.update(input)
            portable.update(input)
            XCTAssertEqual(hex(hardware.finalize()), hex(portable.finalize()), "SHA-1 of \(n) bytes")
        }
        for piece in [1, 7, 64, 129, 1000] {
            var hardware = SHA1(), portable = SHA1(portable: true)
            var start = 0
            while start < message.count {
                let chunk = Array(message[start..<min(message.count, start + piece)])
                hardware.update(chunk)
                portable.update(chunk)
                start += piece
            }
            XCTAssertEqual(hex(hardware.finalize()), hex(portable.finalize()), "SHA-1 of 1,100 bytes in pieces of \(piece)")
        }
    }

    func testFinalizeLeavesTheHashAsItWas() {
        var h = SHA256()
        h.update(Array("ab".utf8))
        _ = h.finalize()
        h.update(Array("c".utf8))
        XCTAssertEqual(hex(h.finalize()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// The ids the pack reader computes are git's: `git hash-object` in a SHA-1 and in a
    /// SHA-256 repository.
    func testObjectIDsAreGitsOwn() throws {
        let dir = try TemporaryDirectory(prefix: "airlock-digests")
        let content = "hello\nobject \u{00e9}\n" + String(repeating: "x", count: 200)
        for format in [ObjectFormat.sha1, .sha256] {
            let repo = dir.file(format == .sha1 ? "sha1" : "sha256")
            let created = try Run.process(["git", "init", "-q", "--object-format=\(format == .sha1 ? "sha1" : "sha256")", repo])
            try Precondition.require(created.status == 0, "git init: \(created)")
            let hashed = try Run.process(["git", "-C", repo, "hash-object", "--stdin"], stdin: content)
            XCTAssertEqual(hashed.status, 0, "\(hashed)")
            let ours = ObjectID.hex(format.objectID(type: "blob", content: Array(content.utf8)))
            XCTAssertEqual(ours, hashed.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(format)")
        }
    }

    func testSecureRandomBytesHaveTheLengthAskedAndDiffer() {
        for count in [0, 1, 7, 8, 32, 33] {
            XCTAssertEqual(SecureRandom.bytes(count: count).count, count)
        }
        XCTAssertNotEqual(SecureRandom.bytes(count: 32), SecureRandom.bytes(count: 32))
    }
}
