import Foundation
import TestSupport
import XCTest

/// `gateway serve` under systemd's `Type=notify`: `READY=1` reaches `$NOTIFY_SOCKET` only once
/// every listener serves, and `STOPPING=1` when it stops. The test plays systemd's part with
/// a datagram socket of its own.
final class SystemdNotifyTests: XCTestCase {
    func testGatewayServeNotifiesReadinessAndStop() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-notify")
        let socketPath = dir.file("notify.sock")
        let receiver = try DatagramReceiver(path: socketPath)

        let name = "ntfy\(getpid() % 10000)"
        XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = socketPath
        let gateway = try BackgroundProcess(
            [TestPaths.airlock, "gateway", "serve", name, "--allow", "example.test"], environment: environment)
        defer { gateway.stop() }

        guard let ready = receiver.receive(timeout: 30) else {
            return XCTFail("no notification within 30 s; gateway output: \(gateway.stop())")
        }
        XCTAssertTrue(ready.hasPrefix("READY=1\n"), ready)
        XCTAssertTrue(ready.contains("STATUS=serving \(name) on 169.254.200.1"), ready)
        // Ready means serving: the first request after READY=1 is answered, with no retry.
        let health = try Run.airlock(["netns", "exec", name, "--user", "nobody", "--cwd", "/", "--",
                                      "curl", "-sS", "--max-time", "5", "http://airlock.internal/healthz"])
        XCTAssertTrue(health.stdout.hasPrefix("ok"), "\(health)")

        let stopped = gateway.stop()
        XCTAssertEqual(stopped.status, 0, "\(stopped)")
        XCTAssertEqual(receiver.receive(timeout: 10), "STOPPING=1\nSTATUS=stopped")
    }

    func testGatewayServeRefusesAnUnusableNotifySocket() throws {
        try RootTier.require()
        let name = "ntfz\(getpid() % 10000)"
        XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = "/nonexistent/notify.sock"
        let result = try Run.airlock(["gateway", "serve", name, "--allow", "example.test"], environment: environment, timeout: 30)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(
            result.stderr.contains("NOTIFY_SOCKET=/nonexistent/notify.sock: connect: No such file or directory"),
            "a notify socket that cannot be reached is a start-up error, not a unit that never becomes ready: \(result)")
    }
}

/// A bound Unix datagram socket: systemd's end of `$NOTIFY_SOCKET`.
private final class DatagramReceiver {
    private let descriptor: Int32

    init(path: String) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    deinit { close(descriptor) }

    /// The next datagram, or `nil` after `timeout` seconds.
    func receive(timeout: TimeInterval) -> String? {
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(timeout * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }
}
