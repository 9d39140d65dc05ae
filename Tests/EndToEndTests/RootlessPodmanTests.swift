import Foundation
import TestSupport
import XCTest

/// airlock inside a rootless Podman container, as a CI job or an agent runner starts it:
/// an unprivileged account runs `podman run`, so uid 0 in the container is that account's
/// mapped id, `/proc/sys` is read-only and parts of `/proc` are masked.
///
/// The container's root filesystem is made here from the machine's own (`/usr` and `/opt`
/// bound read-only, `/etc` copied, the built binary copied), so nothing is pulled. The container has no network of its own
/// (`--network none`): the sandbox's only peer is still the gateway airlock starts.
///
/// By default Podman masks parts of `/proc`, and a user namespace may then not mount the
/// sandbox's own `/proc`: the run is refused with the reason and the fix, and `doctor`
/// says so. With `--security-opt unmask=ALL` the sandbox is built and contains the command.
final class RootlessPodmanTests: XCTestCase {
    private static let account = "airlockpod"
    private var dir: TemporaryDirectory!
    private var pausePIDFile: String { dir.file("runtime/libpod/tmp/pause.pid") }

    override func setUpWithError() throws {
        try RootTier.require()
        for tool in ["/usr/bin/podman", "/usr/sbin/runc", "/usr/bin/newuidmap", "/usr/bin/catatonit"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw Precondition.unmet("\(tool) is not installed (scripts/setup installs podman, runc, uidmap and catatonit)")
        }
        dir = try TemporaryDirectory(prefix: "airlock-podman", in: "/var/tmp")
        chmod(dir.path, 0o755)
        let account = Self.account
        // The account and its subordinate ids: /etc is an overlay in the throwaway namespace.
        let script = """
            set -eu
            id \(account) >/dev/null 2>&1 || useradd -m -s /bin/sh \(account)
            grep -q '^\(account):' /etc/subuid || echo '\(account):300000:65536' >> /etc/subuid
            grep -q '^\(account):' /etc/subgid || echo '\(account):300000:65536' >> /etc/subgid
            R=\(dir.file("rootfs"))
            mkdir -p "$R" \(dir.file("runtime"))
            cp -a /etc "$R/etc"
            mkdir -p "$R/usr" "$R/opt"
            mount --bind /usr "$R/usr"
            mount -o remount,bind,ro "$R/usr"
            mount --bind /opt "$R/opt"
            mount -o remount,bind,ro "$R/opt"
            mkdir -p "$R/airlock"
            cp \(TestPaths.airlock) "$R/airlock/airlock"
            for l in bin lib lib64 sbin; do ln -sfn usr/$l "$R/$l"; done
            mkdir -p "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/run" "$R/root" "$R/home"
            chmod 1777 "$R/tmp"
            chown -R \(account):\(account) "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/run" "$R/root" "$R/home" \(dir.file("runtime"))
            chown \(account):\(account) "$R"
            chmod 0700 \(dir.file("runtime"))
            """
        let made = try Run.process(["/bin/bash", "-c", script], timeout: 120)
        guard made.status == 0 else { throw FixtureError("the container's root filesystem: \(made.stderr)") }
    }

    override func tearDown() {
        // Rootless Podman leaves a pause process holding its namespaces.
        if let dir, let text = try? String(contentsOfFile: pausePIDFile, encoding: .utf8), let pid = pid_t(text) {
            kill(pid, SIGKILL)
        }
        // The read-only views of /usr and /opt first; then what Podman left, files of the
        // account's mapped ids among them.
        // Nothing is removed while a view is still mounted (its files would be the machine's).
        if let dir {
            let unmounted = ["usr", "opt"].allSatisfy { view in
                let path = dir.file("rootfs/\(view)")
                if !isMountPoint(path) { return true }
                return (try? Run.process(["umount", path], timeout: 30))?.status == 0 && !isMountPoint(path)
            }
            if unmounted { _ = try? Run.process(["rm", "-rf", dir.path], timeout: 120) }
        }
    }

    /// Whether `path` is a mount point, by /proc/self/mountinfo.
    private func isMountPoint(_ path: String) -> Bool {
        let table = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return table.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first.map(String.init) == path }
    }

    /// `podman run` as the account, with `options`, running `command` in the container.
    private func podman(_ options: [String], _ command: String) throws -> ProcessResult {
        try Run.process(
            ["/usr/bin/setpriv", "--reuid", Self.account, "--regid", Self.account, "--init-groups",
             "/usr/bin/env", "HOME=/home/\(Self.account)", "XDG_RUNTIME_DIR=\(dir.file("runtime"))", "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
             "/usr/bin/podman", "--runtime", "/usr/sbin/runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
             "--storage-driver", "vfs", "--root", dir.file("runtime/storage"), "--runroot", dir.file("runtime/run"),
             "run", "--rm", "--network", "none"] + options + ["--rootfs", dir.file("rootfs"), "/bin/sh", "-c", command],
            currentDirectory: dir.path, timeout: 120)
    }

    func testMaskedProcIsRefusedWithTheFixAndUnmaskedContainsTheCommand() throws {
        let masked = try podman([], "/airlock/airlock doctor; echo doctor=$?; /airlock/airlock run -- /bin/true; echo run=$?")
        XCTAssertTrue(masked.stdout.contains("no   fresh /proc: mounting a sandbox's own /proc fails (Operation not permitted)"), "\(masked)")
        XCTAssertTrue(masked.stdout.contains("run (rootless): not ready\n  - no fresh /proc for the sandbox (Operation not permitted)"), "\(masked)")
        XCTAssertTrue(masked.stdout.contains("run=125"), "\(masked)")
        XCTAssertTrue(masked.stderr.contains(
            "airlock: error: sandbox setup: mount proc on /proc: Operation not permitted; parts of this /proc are mounted over "
            + "(a container's masked paths), and a user namespace may not mount a /proc that shows more; start the container "
            + "with its /proc unmasked (podman run --security-opt unmask=ALL"), "\(masked)")

        let unmasked = try podman(["--security-opt", "unmask=ALL"], """
            /airlock/airlock doctor | grep -E '^(run \\(rootless\\)|ok   fresh /proc)'
            /airlock/airlock run -- /bin/sh -c "id -u; echo ipv6-on-eth0=\\$(grep -c eth0 /proc/net/if_inet6); \
            grep '^Seccomp:' /proc/self/status; curl -sS --max-time 5 --noproxy '*' http://192.0.2.1/ 2>&1"
            echo run=$?
            """)
        let lines = unmasked.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(Array(lines.prefix(2)), ["ok   fresh /proc: a sandbox's own /proc can be mounted (in a user namespace)", "run (rootless): ready"],
                       "\(unmasked)")
        XCTAssertEqual(lines.dropFirst(2).first, "0", "the container's root runs the command: \(unmasked)")
        XCTAssertTrue(unmasked.stdout.contains("Failed to connect to 192.0.2.1"), "no way out but the gateway: \(unmasked)")
        XCTAssertTrue(lines.contains("Seccomp:\t2"), "the seccomp filter is loaded: \(unmasked)")
        XCTAssertEqual(lines.last, "run=7", "curl's status is the run's: \(unmasked)")
        XCTAssertTrue(lines.contains("ipv6-on-eth0=0"), "eth0 has no IPv6 address: \(unmasked)")
    }
}
