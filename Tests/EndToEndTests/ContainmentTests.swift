import Foundation
import TestSupport
import XCTest

/// The sandbox tried as an attacker would, from inside `airlock run` (rootless and as
/// root, as an ordinary test account): the gateway stays the only way out, and airlock's
/// own inputs (policy, token, audit) stay out of reach. Each test asserts what the command
/// sees when it tries, and what is left on the host afterwards.
final class ContainmentTests: XCTestCase {
    /// The binary in a directory every account can enter, and an ordinary test account
    /// (made with useradd inside the throwaway namespace, whose /etc and /home are overlays).
    final class Rig {
        static let userName = "airlock-ct"
        let dir: TemporaryDirectory
        let binary: String
        let uid: UInt32
        let gid: UInt32
        let home: String

        init() throws {
            dir = try TemporaryDirectory(prefix: "airlock-contain")
            chmod(dir.path, 0o755)
            binary = try dir.copyOfAirlock()
            if try Run.process(["id", "-u", Self.userName]).status != 0 {
                let add = try Run.process(["useradd", "-m", "-s", "/bin/sh", Self.userName], timeout: 30)
                guard add.status == 0 else { throw FixtureError("useradd \(Self.userName): \(add.stderr)") }
            }
            func id(_ flag: String) throws -> UInt32 {
                UInt32(try Run.process(["id", flag, Self.userName]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            }
            uid = try id("-u")
            gid = try id("-g")
            home = "/home/\(Self.userName)"
        }

        /// A fresh directory owned by the test account: the command's working directory.
        func workDirectory() throws -> String {
            try dir.workDirectory(uid: uid, gid: gid)
        }
    }

    static let shared = SharedRig<Rig>("containment rig")

    override class func setUp() {
        super.setUp()
        shared.setUp { try Rig() }
    }

    override class func tearDown() {
        shared.tearDown()
        super.tearDown()
    }

    typealias Mode = RunMode

    var rig: Rig {
        get throws { try Self.shared.get() }
    }

    /// `airlock run` in `mode` as the test account: `--user` as root, setpriv rootless.
    func runArgv(_ mode: Mode, _ rig: Rig) -> [String] {
        switch mode {
        case .root: [rig.binary, "run", "--user", Rig.userName]
        case .rootless: ["/usr/bin/setpriv", "--reuid=\(rig.uid)", "--regid=\(rig.gid)", "--clear-groups", rig.binary, "run"]
        }
    }

    /// Runs `/bin/sh -c SCRIPT` in a sandbox started from `cwd`.
    func airlockRun(_ mode: Mode, _ flags: [String], script: String, cwd: String, timeout: TimeInterval = 60) throws -> ProcessResult {
        let rig = try rig
        let argv = runArgv(mode, rig) + flags + ["--", "/bin/sh", "-c", script]
        let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C"]
        return try Run.process(argv, environment: environment, currentDirectory: cwd, timeout: timeout)
    }

    func auditLines(_ text: String) -> [[String: Any]] {
        text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    // MARK: - airlock's own inputs

    /// The command appends rules that would open host loopback to its own policy file,
    /// then tries to reach a loopback service: the file inside is not the file, and the
    /// gateway never re-reads it during a run.
    func testThePolicyFileCannotBeRewrittenFromInside() throws {
        let web = try WebUpstream()
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            let policy = work + "/policy"
            let original = "example.org\n"
            try original.write(toFile: policy, atomically: true, encoding: .utf8)
            chown(policy, rig.uid, rig.gid)
            let result = try airlockRun(mode, ["--policy", policy], script: """
                printf 'allow-private 127.0.0.0/8\\nlocalhost:\(web.port)\\n' >> \(policy)
                sleep 2
                curl -s -o /dev/null -w 'status=%{http_code}\\n' --noproxy '' --proxy http://airlock.internal:3128 http://localhost:\(web.port)/
                """, cwd: work)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertEqual(result.stdout, "status=403\n", "\(mode): the loopback service stays out of reach: \(result)")
            XCTAssertEqual(try String(contentsOfFile: policy, encoding: .utf8), original, "\(mode): the file on the host is unchanged")
            let real = policy.replacingOccurrences(of: "//", with: "/")
            XCTAssertTrue(result.stderr.contains("airlock: masked ") && result.stderr.contains(real), "\(mode): \(result)")
        }
    }

    /// The token file and git's XDG credential store (and .netrc) read as empty inside.
    func testTheTokenFileAndCredentialStoresAreUnreadable() throws {
        let rig = try rig
        let xdg = rig.home + "/.config/git"
        try FileManager.default.createDirectory(atPath: xdg, withIntermediateDirectories: true)
        try "https://u:xdg_secret_value@github.com\n".write(toFile: xdg + "/credentials", atomically: true, encoding: .utf8)
        try "machine github.com password netrc_secret_value\n".write(toFile: rig.home + "/.netrc", atomically: true, encoding: .utf8)
        for path in [rig.home + "/.config", xdg, xdg + "/credentials", rig.home + "/.netrc"] { chown(path, rig.uid, rig.gid) }
        defer {
            try? FileManager.default.removeItem(atPath: rig.home + "/.config")
            try? FileManager.default.removeItem(atPath: rig.home + "/.netrc")
        }
        for mode in Mode.allCases {
            let work = try rig.workDirectory()
            let token = work + "/token"
            let tokenValue = "ghp_containment_file_value"
            try (tokenValue + "\n").write(toFile: token, atomically: true, encoding: .utf8)
            chown(token, rig.uid, rig.gid)
            chmod(token, 0o600)
            let result = try airlockRun(mode, ["--repo", "owner/app", "--token-file", token], script: """
                cat \(token) ~/.config/git/credentials ~/.netrc; echo "bytes=$(cat \(token) ~/.config/git/credentials ~/.netrc | wc -c)"
                """, cwd: work)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertEqual(result.stdout, "bytes=0\n", "\(mode): \(result)")
            for secret in [tokenValue, "xdg_secret_value", "netrc_secret_value"] {
                XCTAssertFalse(result.stdout.contains(secret) || result.stderr.contains(secret), "\(mode): \(secret) leaked: \(result)")
            }
        }
    }

    /// Audit lines are the gateway's alone: with --audit-log the command cannot write the
    /// file; without, they reach stderr only after the command has ended; as root, an
    /// audit path the command's account could change is refused before anything starts.
    func testAuditLinesCannotBeForged() throws {
        let rig = try rig
        let forge = #"{"event":"egress_allow","host":"forged.example"}"#
        for mode in Mode.allCases {
            let work = try rig.workDirectory()
            // As root the log must lie where the account cannot write; rootless, the gateway
            // is the account, and the file is hidden from the command instead.
            let logDirectory = mode == .root ? rig.dir.file("audit-\(UUID().uuidString.prefix(8))") : work
            try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
            let audit = logDirectory + "/audit.jsonl"
            let result = try airlockRun(mode, ["--audit-log", audit], script: """
                echo '\(forge)' >> \(audit)
                echo '\(forge)' >&2
                curl -s -o /dev/null -w 'status=%{http_code}\\n' --proxy http://airlock.internal:3128 http://denied.example/
                """, cwd: work)
            XCTAssertEqual(result.stdout, "status=403\n", "\(mode): \(result)")
            let written = try String(contentsOfFile: audit, encoding: .utf8)
            XCTAssertFalse(written.contains("forged.example"), "\(mode): the command wrote the audit log: \(written)")
            XCTAssertTrue(auditLines(written).contains { $0["event"] as? String == "egress_deny" && $0["host"] as? String == "denied.example" }, "\(mode): \(written)")

            let held = try airlockRun(mode, [], script: """
                curl -s -o /dev/null --proxy http://airlock.internal:3128 http://denied.example/
                echo command-done >&2
                """, cwd: work)
            let lines = held.stderr.split(separator: "\n").map(String.init)
            let done = try XCTUnwrap(lines.firstIndex(of: "command-done"), "\(mode): \(held)")
            let deny = try XCTUnwrap(lines.firstIndex { $0.contains("\"egress_deny\"") && $0.contains("denied.example") }, "\(mode): \(held)")
            XCTAssertGreaterThan(deny, done, "\(mode): audit lines come after the command's own output: \(held)")
        }
        let work = try rig.workDirectory()
        let refused = try airlockRun(.root, ["--audit-log", work + "/audit.jsonl"], script: "echo ran", cwd: work)
        XCTAssertEqual(refused.status, 125, "\(refused)")
        XCTAssertEqual(refused.stdout, "", "nothing ran: \(refused)")
        let normalized = work.replacingOccurrences(of: "//", with: "/")
        XCTAssertTrue(refused.stderr.contains("--audit-log \(work)/audit.jsonl: \(Rig.userName) (uid \(rig.uid)) could change \(normalized)"), "\(refused)")
    }

    // MARK: - Identity and kernel

    func testTheHostsRootIsRefused() throws {
        let rig = try rig
        let work = try rig.workDirectory()
        let result = try Run.process([rig.binary, "run", "--user", "root", "--", "id", "-u"], currentDirectory: work)
        XCTAssertEqual(result.status, 125, "\(result)")
        XCTAssertEqual(result.stdout, "")
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line: \(result)")
        XCTAssertTrue(result.stderr.hasPrefix("airlock: error: --user root: uid 0 is the host's root"), "\(result)")
    }

    /// seccomp is on (mode 2), new user namespaces are refused unless asked for, and
    /// /proc/sys is read-only.
    func testSeccompNestedNamespacesAndProcSys() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            let result = try airlockRun(mode, [], script: """
                grep '^Seccomp:' /proc/self/status
                unshare -Ur true; echo "unshare=$?"
                echo '|/bin/false' > /proc/sys/kernel/core_pattern; echo "sysctl=$?"
                """, cwd: work)
            XCTAssertEqual(result.stdout, "Seccomp:\t2\nunshare=1\nsysctl=2\n", "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains("unshare failed: Operation not permitted"), "\(mode): \(result)")
            XCTAssertTrue(result.stderr.contains("Read-only file system"), "\(mode): \(result)")

            let nested = try airlockRun(mode, ["--allow-nested-namespaces"], script: "unshare -Ur id -u", cwd: work)
            XCTAssertEqual(nested.stdout, "0\n", "\(mode): \(nested)")
        }
    }

    // MARK: - The filesystem view

    /// A host process's socket in the shared working directory and one in /tmp: neither
    /// accepts a connection from inside.
    func testHostUnixSocketsAreUnreachable() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            let shared = try UnixListener(path: work + "/agent.sock")
            let inTmp = try UnixListener(path: "/tmp/airlock-ct-\(getpid())-\(mode).sock")
            let result = try airlockRun(mode, [], script: """
                python3 -c '
                import socket, sys
                for path in sys.argv[1:]:
                    s = socket.socket(socket.AF_UNIX)
                    try:
                        s.connect(path)
                        print("connected")
                    except OSError as e:
                        print("refused", e.errno)
                ' \(shared.path) \(inTmp.path)
                """, cwd: work)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertFalse(result.stdout.contains("connected"), "\(mode): \(result)")
            XCTAssertEqual(result.stdout.split(separator: "\n").count, 2, "\(mode): \(result)")
            XCTAssertFalse(shared.hasPendingConnection, "\(mode)")
            XCTAssertFalse(inTmp.hasPendingConnection, "\(mode)")
            XCTAssertTrue(result.stderr.contains("airlock: hidden "), "\(mode): \(result)")
        }
    }

    /// A procfs mounted elsewhere in the host's tree (a chroot's) shows nothing inside.
    func testOtherProcfsMountsAreCovered() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            let copy = work + "/chroot-proc"
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: false)
            guard mount("proc", copy, "proc", 0, nil) == 0 else { throw FixtureError("mount proc: \(String(cString: strerror(errno)))") }
            defer { umount2(copy, 2) }
            XCTAssertGreaterThan(try FileManager.default.contentsOfDirectory(atPath: copy).count, 10)
            let result = try airlockRun(mode, [], script: "ls -A \(copy) | wc -l; ls /proc | grep -cE '^[0-9]+$'", cwd: work)
            let counts = result.stdout.split(separator: "\n").compactMap { Int($0) }
            XCTAssertEqual(counts.first, 0, "\(mode): the second procfs is covered: \(result)")
            XCTAssertLessThanOrEqual(counts.last ?? 99, 5, "\(mode): /proc holds the sandbox's processes only: \(result)")
        }
    }

    /// System V IPC of the host (a shared memory segment another process made) is not
    /// the sandbox's: it runs in an IPC namespace of its own. The whole test runs in a
    /// throwaway IPC namespace, so the segment cannot outlive it.
    func testHostIPCIsNotShared() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            let inner = (runArgv(mode, rig) + ["--", "/bin/sh", "-c", "'echo inside=$(ipcs -m | grep -c ^0x)'"]).joined(separator: " ")
            let result = try Run.process(
                ["/usr/bin/unshare", "--ipc", "--", "/bin/sh", "-c",
                 "ipcmk -M 4096 >/dev/null && echo outside=$(ipcs -m | grep -c ^0x) && \(inner)"],
                environment: ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"], currentDirectory: work)
            XCTAssertEqual(result.stdout, "outside=1\ninside=0\n", "\(mode): the segment is seen outside, not inside: \(result)")
        }
    }

    /// `gateway serve` reloads its policy, so it refuses one that an account other than
    /// root could change, before it binds anything.
    func testServeRefusesAPolicyOthersCouldChange() throws {
        let rig = try rig
        let open = rig.dir.file("open-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false)
        chmod(open, 0o777)
        try "example.org\n".write(toFile: open + "/policy", atomically: true, encoding: .utf8)
        let name = "ct\(getpid() % 10000)"
        XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        let result = try Run.airlock(["gateway", "serve", name, "--policy", open + "/policy"], timeout: 30)
        XCTAssertEqual(result.status, 1, "\(result)")
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line: \(result)")
        let directory = open.replacingOccurrences(of: "//", with: "/")
        XCTAssertTrue(result.stderr.contains("policy \(open)/policy: \(directory) can be changed by an account other than root"), "\(result)")
    }

    /// The sandbox init (PID 1 inside) is a clone of airlock, with a copy of its memory (as
    /// root, the upstream token too) and its descriptors: the command, under the same
    /// account, can neither read it nor look at its descriptors.
    func testTheSandboxInitCannotBeReadByTheCommand() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            let token = work + "/token"
            try "ghp_containment_init_value\n".write(toFile: token, atomically: true, encoding: .utf8)
            chown(token, rig.uid, rig.gid)
            chmod(token, 0o600)
            let result = try airlockRun(mode, ["--repo", "owner/app", "--token-file", token], script: """
                for f in environ maps mem; do cat /proc/1/$f > /dev/null 2> err || true; echo "$f: $(cat err)"; done
                ls /proc/1/fd > /dev/null 2> err || true; echo "fd: $(cat err)"
                """, cwd: work)
            XCTAssertEqual(result.status, 0, "\(mode): \(result)")
            XCTAssertEqual(result.stdout, """
                environ: cat: /proc/1/environ: Permission denied
                maps: cat: /proc/1/maps: Permission denied
                mem: cat: /proc/1/mem: Permission denied
                fd: ls: cannot open directory '/proc/1/fd': Permission denied

                """, "\(mode): \(result)")
        }
    }

    /// Every process of a run that holds a copy of airlock's memory (the credentials among
    /// it) is not dumpable: airlock itself, the root run's gateway, the rootless builder
    /// (a fork) and the sandbox init. The kernel then gives their /proc files to root, so
    /// no other process of the same account can read or trace them, and no core is written.
    func testEveryProcessHoldingAirlocksMemoryIsNotDumpable() throws {
        for mode in Mode.allCases {
            let rig = try rig
            let work = try rig.workDirectory()
            let airlock = try BackgroundProcess(
                runArgv(mode, rig) + ["--", "/bin/sh", "-c", "touch \(work)/started; sleep 30"],
                environment: ["PATH": "/usr/bin:/bin"], currentDirectory: work)
            defer { airlock.stop() }
            XCTAssertTrue(Wait.until(timeout: 30) { FileManager.default.fileExists(atPath: work + "/started") }, "\(mode)")
            // In root mode the parent is setpriv-free airlock; rootless, setpriv execs it.
            var processes: [Int32] = [airlock.pid]
            var index = 0
            while index < processes.count {
                let pid = processes[index]
                index += 1
                if ProcStatus.field("Name", of: pid) == "sandbox-init" { continue }
                processes += ProcStatus.children(of: pid)
            }
            let names = processes.map { "\($0):\(ProcStatus.field("Name", of: $0) ?? "?")" }
            let held = processes.filter { ["airlock", "sandbox-init"].contains(ProcStatus.field("Name", of: $0)) }
            XCTAssertEqual(held.count, 3, "\(mode): airlock, its gateway or builder, and the sandbox init: \(names)")
            for pid in held {
                var info = stat()
                XCTAssertEqual(stat("/proc/\(pid)/environ", &info), 0)
                XCTAssertEqual(info.st_uid, 0, "\(mode): \(pid) (\(ProcStatus.field("Name", of: pid) ?? "?"), uid \(ProcStatus.field("Uid", of: pid) ?? "?")) is dumpable")
            }
        }
    }

    /// The rootless builder is a fork of airlock: it keeps none of airlock's files (here the
    /// audit log), only its end of the pair with the gateway, and neither does the sandbox
    /// init cloned from it.
    func testTheRootlessBuilderKeepsNoneOfAirlocksFiles() throws {
        let rig = try rig
        let work = try rig.workDirectory()
        let log = work + "/audit.log"
        let airlock = try BackgroundProcess(
            runArgv(.rootless, rig) + ["--audit-log", log, "--", "/bin/sh", "-c", "touch \(work)/started; sleep 30"],
            environment: ["PATH": "/usr/bin:/bin"], currentDirectory: work)
        defer { airlock.stop() }
        XCTAssertTrue(Wait.until(timeout: 30) { FileManager.default.fileExists(atPath: work + "/started") })
        func files(of pid: Int32) -> [String] {
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
            return fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
        }
        let real = URL(fileURLWithPath: log).resolvingSymlinksInPath().path
        XCTAssertTrue(files(of: airlock.pid).contains(real), "airlock writes the audit log: \(files(of: airlock.pid))")
        let builders = ProcStatus.children(of: airlock.pid)
        XCTAssertEqual(builders.count, 1, "one builder")
        for builder in builders {
            let inits = ProcStatus.children(of: builder)
            XCTAssertEqual(inits.map { ProcStatus.field("Name", of: $0) }, ["sandbox-init"])
            for pid in [builder] + inits {
                let held = files(of: pid)
                XCTAssertFalse(held.contains(real), "\(pid) holds the audit log: \(held)")
                XCTAssertFalse(held.contains { $0.hasPrefix("/") && !$0.hasPrefix("/dev/") }, "\(pid) holds a file: \(held)")
            }
        }
    }

    // MARK: - The gateway as root

    /// During a root run, the process that serves the sandbox runs as nobody with no
    /// capability in any set, on every thread.
    func testTheGatewayHoldsNoPrivilegeDuringARootRun() throws {
        let rig = try rig
        let work = try rig.workDirectory()
        let airlock = try BackgroundProcess(
            runArgv(.root, rig) + ["--", "/bin/sh", "-c", "touch \(work)/started; sleep 30"],
            environment: ["PATH": "/usr/bin:/bin"], currentDirectory: work)
        defer { airlock.stop() }
        XCTAssertTrue(Wait.until(timeout: 30) { FileManager.default.fileExists(atPath: work + "/started") })
        let children = ProcStatus.children(of: airlock.pid)
        let gateways = children.filter { ProcStatus.field("Name", of: $0) == "airlock" }
        XCTAssertEqual(gateways.count, 1, "one gateway process: \(children.map { ProcStatus.field("Name", of: $0) ?? "?" })")
        for gateway in gateways {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(gateway)/task")) ?? []
            XCTAssertGreaterThan(tasks.count, 1, "the gateway serves from threads")
            for task in tasks {
                let path = "/proc/\(gateway)/task/\(task)/status"
                XCTAssertEqual(ProcStatus.field("Uid", path: path), "65534\t65534\t65534\t65534", "thread \(task)")
                for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
                    XCTAssertEqual(ProcStatus.field(set, path: path), "0000000000000000", "thread \(task) \(set)")
                }
            }
        }
    }
}

/// A listening Unix socket owned by the test, connectable by every account.
final class UnixListener {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (i, byte) in path.utf8.prefix(buffer.count - 1).enumerated() { buffer[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0, listen(fd, 8) == 0 else { throw FixtureError("unix socket \(path): \(String(cString: strerror(errno)))") }
        chmod(path, 0o777)
    }

    /// Whether a connection waits to be accepted.
    var hasPendingConnection: Bool {
        let client = accept(fd, nil, nil)
        if client >= 0 { close(client) }
        return client >= 0
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

/// Reading `/proc/PID/status`.
enum ProcStatus {
    static func field(_ name: String, of pid: Int32) -> String? { field(name, path: "/proc/\(pid)/status") }

    static func field(_ name: String, path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    /// The processes whose parent is `pid`.
    static func children(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { field("PPid", of: $0) == String(pid) }
    }
}
