import Foundation
import XCTest

/// Where the package and its built binary are, found from this file's path.
public enum TestPaths {
    /// The package root: the nearest directory above this file holding Package.swift.
    public static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
                return url
            }
            url.deleteLastPathComponent()
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }()

    /// The `airlock` binary of the current build (`AIRLOCK_BINARY` overrides).
    public static var airlock: String {
        if let path = ProcessInfo.processInfo.environment["AIRLOCK_BINARY"] { return path }
        for config in ["debug", "release"] {
            let path = packageRoot.appendingPathComponent(".build/\(config)/airlock").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return packageRoot.appendingPathComponent(".build/debug/airlock").path
    }

    /// A file under `scripts/testing/`.
    public static func fixture(_ name: String) -> String {
        packageRoot.appendingPathComponent("scripts/testing/\(name)").path
    }
}

/// What a test does when the machine lacks something it needs (a tool, root, a fixture
/// server that starts): outside CI it skips and says why; in CI a missing precondition is
/// a failure, because a skipped test there would let CI pass while testing nothing.
public enum Precondition {
    /// Whether this is a CI run: `CI` is set to anything but empty, `0` or `false`
    /// (CI services set `CI=true`).
    public static var isCI: Bool {
        guard let value = ProcessInfo.processInfo.environment["CI"] else { return false }
        return !["", "0", "false"].contains(value.lowercased())
    }

    /// The unmet precondition, as a thrown error: outside CI an `XCTSkip` saying why, in CI
    /// a `Precondition.Unmet` error, which XCTest records as a failure naming the reason.
    public static func unmet(_ reason: String, file: StaticString = #filePath, line: UInt = #line) -> Error {
        isCI ? Unmet(reason: reason) : XCTSkip(reason, file: file, line: line)
    }

    /// Throws `unmet(reason)` unless `condition` holds.
    public static func require(
        _ condition: @autoclosure () -> Bool, _ reason: @autoclosure () -> String,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        if !condition() { throw unmet(reason(), file: file, line: line) }
    }

    /// A precondition that CI needs and the machine lacks.
    public struct Unmet: Error, CustomStringConvertible {
        public var reason: String
        public var description: String { "precondition unmet in CI (CI is set, so this fails instead of skipping): \(reason)" }
    }
}

/// Guards for the root tier.
public enum RootTier {
    /// Skips the test unless it runs as root inside the throwaway mount+net namespace
    /// made by `scripts/in-throwaway-ns`, so a root-tier test can never change the host.
    /// In CI either missing condition fails the test (`Precondition`).
    public static func require(file: StaticString = #filePath, line: UInt = #line) throws {
        try Precondition.require(getuid() == 0, "root tier: needs root (run scripts/test as root)", file: file, line: line)
        try Precondition.require(
            ProcessInfo.processInfo.environment["AIRLOCK_THROWAWAY_NS"] == "1",
            "root tier: runs only inside scripts/in-throwaway-ns, so nothing touches the host", file: file, line: line)
    }
}

/// The result of a finished process.
public struct ProcessResult: CustomStringConvertible {
    public var status: Int32
    /// True when the process was killed by a signal; `status` is then the signal.
    public var signaled: Bool
    public var stdout: String
    public var stderr: String
    public var timedOut: Bool

    public var description: String {
        "status \(signaled ? "signal " : "")\(status)\(timedOut ? " (timed out)" : "")\nstdout: \(stdout)\nstderr: \(stderr)"
    }
}

/// Runs processes for tests, always with a time limit.
public enum Run {
    /// Runs `argv` to completion (killed after `timeout` seconds) and captures its output.
    @discardableResult
    public static func process(
        _ argv: [String], environment: [String: String]? = nil, stdin: String? = nil,
        currentDirectory: String? = nil, timeout: TimeInterval = 60
    ) throws -> ProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0].hasPrefix("/") ? argv[0] : "/usr/bin/env")
        p.arguments = argv[0].hasPrefix("/") ? Array(argv.dropFirst()) : argv
        if let environment { p.environment = environment }
        if let currentDirectory { p.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        let outData = OutputCollector(out.fileHandleForReading)
        let errData = OutputCollector(err.fileHandleForReading)
        try p.run()
        if let stdin { input.fileHandleForWriting.write(stdin.data(using: .utf8)!) }
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while p.isRunning {
            if Date() > deadline {
                timedOut = true
                kill(p.processIdentifier, SIGKILL)
                break
            }
            usleep(10_000)
        }
        p.waitUntilExit()
        return ProcessResult(
            status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
            stdout: outData.finish(), stderr: errData.finish(), timedOut: timedOut)
    }

    /// Runs the built `airlock` binary with `arguments`.
    @discardableResult
    public static func airlock(
        _ arguments: [String], environment: [String: String]? = nil, stdin: String? = nil, timeout: TimeInterval = 60
    ) throws -> ProcessResult {
        try process([TestPaths.airlock] + arguments, environment: environment, stdin: stdin, timeout: timeout)
    }
}

/// Reads a pipe on a background thread so a chatty child never blocks on a full pipe.
final class OutputCollector: @unchecked Sendable {
    private let handle: FileHandle
    private var data = Data()
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        self.handle = handle
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.lock()
                data.append(chunk)
                lock.unlock()
            }
            done.signal()
        }
    }

    /// What has arrived so far.
    var current: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    func finish() -> String {
        done.wait()
        return current
    }
}

/// A process running in the background for the length of a test (a fixture server, a
/// gateway). Killed by `stop()`, and at the latest when the object is released.
public final class BackgroundProcess: @unchecked Sendable {
    public let process: Process
    private let out: OutputCollector
    private let err: OutputCollector
    private var result: (status: Int32, stdout: String, stderr: String)?

    /// Starts `argv` with its output collected.
    public init(_ argv: [String], environment: [String: String]? = nil, stdin: String? = nil, currentDirectory: String? = nil) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: argv[0].hasPrefix("/") ? argv[0] : "/usr/bin/env")
        process.arguments = argv[0].hasPrefix("/") ? Array(argv.dropFirst()) : argv
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let o = Pipe(), e = Pipe(), i = Pipe()
        process.standardOutput = o
        process.standardError = e
        process.standardInput = i
        out = OutputCollector(o.fileHandleForReading)
        err = OutputCollector(e.fileHandleForReading)
        try process.run()
        if let stdin { i.fileHandleForWriting.write(stdin.data(using: .utf8)!) }
        try? i.fileHandleForWriting.close()
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    /// Standard output so far, while the process runs.
    public var output: String { out.current }

    /// Sends `signal` and waits (bounded) for the process to end; returns its output.
    /// Later calls return the same result without signalling again.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: TimeInterval = 10) -> (status: Int32, stdout: String, stderr: String) {
        if let result { return result }
        if process.isRunning { kill(process.processIdentifier, signal) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let finished = (process.terminationStatus, out.finish(), err.finish())
        result = finished
        return finished
    }

    deinit { stop(signal: SIGKILL, timeout: 2) }
}

/// Waiting for conditions, always bounded.
public enum Wait {
    /// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
    @discardableResult
    public static func until(timeout: TimeInterval = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    /// Waits until a TCP connect to 127.0.0.1:`port` succeeds.
    @discardableResult
    public static func forTCP(port: UInt16, host: String = "127.0.0.1", timeout: TimeInterval = 10) -> Bool {
        until(timeout: timeout) { TCP.canConnect(host: host, port: port) }
    }
}

/// Small socket helpers for tests.
public enum TCP {
    /// Whether a TCP connection to `host:port` (IPv4) can be made right now.
    public static func canConnect(host: String, port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &addr.sin_addr)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return r == 0
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago.
    public static func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return UInt16(bigEndian: addr.sin_port)
    }
}

/// A temporary directory removed when the object is released.
public final class TemporaryDirectory {
    public let path: String

    /// Makes `PARENT/PREFIX.XXXXXX`; the parent defaults to the temporary directory.
    public init(prefix: String = "airlock-test", in parent: String? = nil) throws {
        var base = parent ?? NSTemporaryDirectory()
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        var template = Array((base + "/\(prefix).XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = String(cString: p)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

extension TemporaryDirectory {
    /// A copy of the built airlock binary in this directory, mode 0755: rigs run airlock
    /// from a directory every account can reach, as an installed binary would be.
    public func copyOfAirlock() throws -> String {
        let binary = file("airlock")
        try FileManager.default.copyItem(atPath: TestPaths.airlock, toPath: binary)
        chmod(binary, 0o755)
        return binary
    }

    /// A fresh subdirectory owned by `uid`:`gid` (default the sandboxed user, 65534).
    public func workDirectory(uid: uid_t = 65534, gid: gid_t = 65534) throws -> String {
        let path = file("work-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        chown(path, uid, gid)
        return path
    }
}
