import Foundation
import XCTest
import TestSupport
@testable import Netns

/// Fixtures for the spawn tests: a throwaway network namespace and an unprivileged test user.
enum SpawnFixture {
    static let testUserName = "airlock-test"

    /// The unprivileged test account, created with `useradd -m` when missing.
    static func testUser() throws -> SandboxUser {
        if let user = try? Users.lookup(testUserName) { return user }
        let result = try Run.process(["useradd", "-m", "-s", "/bin/sh", testUserName], timeout: 30)
        guard result.status == 0 else { throw Precondition.unmet("cannot create the test user \(testUserName): \(result.stderr)") }
        return try Users.lookup(testUserName)
    }

    /// A network namespace made with `ip netns add` (inside the throwaway namespace's
    /// private /run/netns); removed by `remove()`.
    final class Namespace {
        let name: String
        let descriptor: Int32

        init() throws {
            name = "airlock-spawn-\(getpid())-\(UInt32.random(in: 0..<1_000_000))"
            let add = try Run.process(["ip", "netns", "add", name], timeout: 30)
            guard add.status == 0 else { throw Precondition.unmet("ip netns add failed: \(add.stderr)") }
            descriptor = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw POSIXError(.ENOENT) }
        }

        func remove() {
            close(descriptor)
            _ = try? Run.process(["ip", "netns", "delete", name], timeout: 30)
        }
    }

    /// What a sandboxed command printed and how it ended.
    struct Outcome {
        var status: ExitStatus
        var output: String
    }

    /// Spawns `argv` (stdout and stderr into one pipe), waits for it, and returns its
    /// output and status. `whileRunning` gets the process and the output so far.
    static func run(
        _ argv: [String], user: SandboxUser, namespace: Namespace, masks: [Mask] = [],
        environment: [String: String] = ["PATH": "/usr/bin:/bin"], cwd: String? = "/",
        gateway: String = "169.254.200.1",
        whileRunning: ((SandboxProcess, () -> String) throws -> Void)? = nil
    ) throws -> Outcome {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var spec = SandboxProcessSpec(
            argv: argv, environment: environment, user: user, networkNamespace: namespace.descriptor,
            gatewayAddress: gateway, masks: masks, workingDirectory: cwd)
        spec.standardStreams = (-1, fds[1], fds[1])
        let process: SandboxProcess
        do {
            process = try SandboxProcess.spawn(spec)
        } catch {
            close(fds[0]); close(fds[1])
            throw error
        }
        close(fds[1])
        let reader = PipeReader(fds[0])
        if let whileRunning {
            do {
                try whileRunning(process, { reader.snapshot() })
            } catch {
                try? process.signal(SIGKILL)
                _ = process.wait()
                throw error
            }
        }
        let status = process.wait()
        return Outcome(status: status, output: reader.finish())
    }
}

/// Reads a pipe to its end on a background thread.
final class PipeReader: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ fd: Int32) {
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fd, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                lock.lock(); data.append(contentsOf: buffer[0..<n]); lock.unlock()
            }
            close(fd)
            done.signal()
        }
    }

    func snapshot() -> String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    func finish() -> String {
        _ = done.wait(timeout: .now() + 30)
        return snapshot()
    }
}
