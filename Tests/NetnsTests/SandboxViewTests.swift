import XCTest
@testable import Netns

/// The parsers behind the sandbox's view, on recorded `/proc` text, and the path-safety
/// judgement on real files.
final class SandboxViewTests: XCTestCase {
    let fresh = SandboxView.freshRoots(privateTmp: true)

    func testKernelMountsOutsideTheSandboxsOwnAreCovered() {
        let mountinfo = """
            22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
            23 22 0:21 / /proc rw,nosuid,nodev,noexec shared:2 - proc proc rw
            24 22 0:22 / /sys rw,nosuid shared:3 - sysfs sysfs rw
            25 24 0:23 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw
            26 22 0:24 / /srv/chroot/proc rw - proc proc rw
            27 26 0:25 / /srv/chroot/proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
            28 22 0:26 / /srv/build\\040root/sys rw - sysfs sysfs rw
            29 22 0:27 / /dev/mqueue rw - mqueue mqueue rw
            30 22 0:28 / /home rw - ext4 /dev/sda2 rw
            31 22 0:29 / /tmp/x/proc rw - proc proc rw
            32 22 0:30 / /sys/kernel/debug rw - debugfs debugfs rw
            """
        XCTAssertEqual(
            SandboxView.kernelMountPoints(mountinfo: mountinfo, fresh: fresh),
            ["/dev/mqueue", "/srv/build root/sys", "/srv/chroot/proc"])
        // Under a kept working directory in /tmp, a mount is the host's again.
        XCTAssertEqual(
            SandboxView.kernelMountPoints(mountinfo: mountinfo, fresh: fresh, kept: "/tmp/x"),
            ["/dev/mqueue", "/srv/build root/sys", "/srv/chroot/proc", "/tmp/x/proc"])
    }

    /// A mount's source is whatever its maker named it: one that begins with a combining
    /// mark would join the space before it into one character, and a parse by characters
    /// would miss the file system type, and leave that mount uncovered.
    func testAKernelMountIsFoundWhateverItsSourceIsNamed() {
        let mountinfo = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
            + "40 22 0:31 / /srv/other/proc rw - proc \u{301}proc rw\n"
            + "41 22 0:32 / /srv/ünïcode/sys rw - sysfs sÿs rw\n"
        XCTAssertEqual(
            SandboxView.kernelMountPoints(mountinfo: mountinfo, fresh: fresh), ["/srv/other/proc", "/srv/ünïcode/sys"])
    }

    func testPathSocketsOutsideFreshDirectoriesAreListed() {
        let unix = """
            Num       RefCount Protocol Flags    Type St Inode Path
            0000000000000000: 00000002 00000000 00010000 0001 01 20001 /run/systemd/private
            0000000000000000: 00000002 00000000 00010000 0001 01 20002 /tmp/tmux-1000/default
            0000000000000000: 00000002 00000000 00010000 0001 01 20003 /home/ana/.gnupg/S.gpg agent
            0000000000000000: 00000002 00000000 00010000 0001 01 20004 @/tmp/.X11-unix/X0
            0000000000000000: 00000003 00000000 00000000 0001 03 20005
            0000000000000000: 00000002 00000000 00010000 0001 01 20006 relative.sock
            0000000000000000: 00000002 00000000 00010000 0001 01 20007 /var/lib/docker.sock
            0000000000000000: 00000002 00000000 00010000 0001 01 20008 /var/lib/docker.sock
            """
        XCTAssertEqual(
            SandboxView.socketPaths(bound: UnixSocketPaths.fromProcNetUnix(unix), fresh: fresh),
            ["/home/ana/.gnupg/S.gpg agent", "/var/lib/docker.sock"])
        XCTAssertEqual(
            SandboxView.socketPaths(bound: UnixSocketPaths.fromProcNetUnix(unix), fresh: SandboxView.freshRoots(privateTmp: false)),
            ["/home/ana/.gnupg/S.gpg agent", "/tmp/tmux-1000/default", "/var/lib/docker.sock"])
    }

    /// A socket whose path holds a newline is found whole, over sock_diag, and covered:
    /// `/proc/net/unix` writes the path as it is, which cut it in two there.
    func testASocketPathWithANewlineIsCoveredWhole() throws {
        let base = (NSTemporaryDirectory() as NSString).appendingPathComponent("airlock-socketpath-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        // Read as /proc/net/unix lines: "…/agent", then a made-up socket at "/decoy.sock".
        let directory = base + "/agent\n0000000000000000: 00000002 00000000 00010000 0001 01 1 "
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/decoy.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        XCTAssertLessThan(bytes.count, MemoryLayout.size(ofValue: address.sun_path))
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0, String(cString: strerror(errno)))

        let found = try XCTUnwrap(try UnixSocketPaths.fromSocketDiagnostics(), "this kernel has unix_diag")
        XCTAssertTrue(found.contains(path), "\(found)")
        let text = try String(contentsOfFile: "/proc/net/unix", encoding: .utf8)
        XCTAssertFalse(UnixSocketPaths.fromProcNetUnix(text).contains(path), "/proc/net/unix cuts it")
        XCTAssertTrue(UnixSocketPaths.fromProcNetUnix(text).contains("/decoy.sock"), "and reads its tail as a socket of its own")

        let view = try SandboxView.build(home: "/nonexistent", extraMasks: [], protectedFiles: [], privateTmp: false, workingDirectory: nil)
        XCTAssertTrue(view.sockets.contains(Mask(path: path, kind: .file)), "\(view.sockets)")
    }

    func testChangeablePathsHonourOwnersModesAndStickyDirectories() throws {
        let base = (NSTemporaryDirectory() as NSString).appendingPathComponent("airlock-pathsafety-\(getpid())")
        try FileManager.default.createDirectory(atPath: base + "/open", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        chmod(base, 0o755)
        let someone = SandboxUser(uid: 64999, gid: 64999, groups: [64999], home: "/", name: "someone")
        FileManager.default.createFile(atPath: base + "/policy", contents: Data("x\n".utf8))
        chmod(base + "/policy", 0o644)
        // The file's owner can change it; another account cannot.
        var owner = SandboxUser(uid: getuid(), gid: getgid(), groups: [getgid()], home: "/", name: "me")
        if getuid() == 0 {
            owner = SandboxUser(uid: 64998, gid: 64998, groups: [64998], home: "/", name: "owner")
            chown(base + "/policy", 64998, 64998)
        }
        XCTAssertNotNil(PathSafety.changeable(base + "/policy", by: owner))
        XCTAssertNil(PathSafety.changeable(base + "/policy", by: someone))
        XCTAssertEqual(PathSafety.changeableByNonRoot(base + "/policy"), getuid() == 0 ? base + "/policy" : base)
        chown(base + "/policy", getuid(), getgid())
        // World-writable file.
        chmod(base + "/policy", 0o666)
        XCTAssertEqual(PathSafety.changeable(base + "/policy", by: someone), base + "/policy")
        chmod(base + "/policy", 0o644)
        // A world-writable directory on the path lets anyone replace what is in it…
        chmod(base + "/open", 0o777)
        XCTAssertEqual(PathSafety.changeable(base + "/open/audit.jsonl", by: someone), base + "/open")
        // …unless it is sticky and the entry is not theirs.
        chmod(base + "/open", 0o1777)
        FileManager.default.createFile(atPath: base + "/open/audit.jsonl", contents: Data())
        chmod(base + "/open/audit.jsonl", 0o600)
        XCTAssertNil(PathSafety.changeable(base + "/open/audit.jsonl", by: someone))
        XCTAssertEqual(PathSafety.changeableByNonRoot(base + "/open/audit.jsonl"), getuid() == 0 ? nil : base)
    }
}
