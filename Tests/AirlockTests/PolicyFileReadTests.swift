@testable import airlock
import Gateway
import Glibc
import XCTest

/// `sandbox create --policy FILE` and `run --via-daemon --policy FILE` read the file
/// themselves (the daemon gets its text): missing, oversized and directory files are
/// refused in one line naming the flag and the file.
final class PolicyFileReadTests: XCTestCase {
    private func refusal(_ path: String) -> String {
        do {
            return "read: " + (try SandboxCommand.readPolicyFile(path))
        } catch {
            return "\(error)"
        }
    }

    func testItReadsTheFileAndRefusesWhatItCannotSend() throws {
        let dir = "/tmp/airlock-policyfile-\(getpid())"
        mkdir(dir, 0o700)
        defer { _ = unlink(dir + "/ok"); _ = unlink(dir + "/big"); rmdir(dir) }
        let limit = UserRequest.maxBytes - 4096
        XCTAssertTrue(FileManagerFree.write(dir + "/ok", "allow example.com"))
        XCTAssertTrue(FileManagerFree.write(dir + "/big", String(repeating: "#", count: limit + 1)))
        XCTAssertEqual(refusal(dir + "/ok"), "read: allow example.com\n")
        XCTAssertEqual(refusal(dir + "/big"), "--policy \(dir)/big: longer than \(limit) bytes")
        XCTAssertEqual(refusal(dir + "/none"), "--policy \(dir)/none: cannot read it (No such file or directory)")
        XCTAssertEqual(refusal(dir), "--policy \(dir): cannot read it (Is a directory)")
    }
}

/// Writes test files with libc alone.
private enum FileManagerFree {
    static func write(_ path: String, _ text: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        return Glibc.write(fd, bytes, bytes.count) == bytes.count
    }
}
