import Foundation
import TestSupport
import XCTest

/// A pod's path end to end, as on a Kubernetes node: the runtime calls `airlock-cni` ADD
/// on the pod's network namespace, the plugin registers the pod's sandbox with the real
/// gateway daemon (`airlock gateway serve --all`), the pod's traffic is decided by its
/// annotated policy, and DEL takes it all away again, leaving the runtime's namespace.
final class CNIDaemonTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var pod = ""

    override func setUpWithError() throws {
        try RootTier.require()
        dir = try TemporaryDirectory(prefix: "airlock-cni-daemon")
        chmod(dir.path, 0o755)
        pod = "cnipod\(getpid() % 100_000)"
    }

    override func tearDown() {
        _ = try? Run.process(["ip", "netns", "delete", pod])
    }

    func testAPodAddedByThePluginIsServedByTheDaemonWithItsPolicyAndDelRemovesIt() throws {
        // The node: a policy directory only root can change, the daemon, a local upstream.
        let policies = dir.file("policies")
        mkdir(policies, 0o755)
        try "a.test\nresolve a.test=127.0.0.1\nallow-private 127.0.0.1/32\n".write(toFile: policies + "/web.policy", atomically: true, encoding: .utf8)
        chmod(policies + "/web.policy", 0o644)
        let upstream = try WebUpstream(port: 80)
        defer { upstream.stop() }
        let audit = dir.file("audit.jsonl")
        let daemon = try BackgroundProcess([TestPaths.airlock, "gateway", "serve", "--all", "--audit-log", audit])
        defer { _ = daemon.stop() }
        XCTAssertTrue(Wait.until(timeout: 30) { (try? Run.airlock(["gateway", "request", "list"]))?.status == 0 }, "the daemon answers")

        // The runtime: a pod namespace, and the plugin as the only plugin (no prevResult).
        for command in [["ip", "netns", "add", pod], ["ip", "-n", pod, "link", "set", "lo", "up"]] {
            XCTAssertEqual(try Run.process(command).status, 0, "\(command)")
        }
        let pluginPath = dir.file("airlock-cni")
        try FileManager.default.createSymbolicLink(atPath: pluginPath, withDestinationPath: TestPaths.airlock)
        let id = (0..<4).map { _ in String(format: "%016llx", UInt64.random(in: 0...UInt64.max)) }.joined()
        let name = "k" + id.prefix(11)
        let environment = [
            "CNI_CONTAINERID": id, "CNI_NETNS": "/run/netns/\(pod)", "CNI_IFNAME": "eth0", "CNI_PATH": dir.path,
            "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin",
        ]
        let config = #"{"cniVersion":"1.0.0","name":"pods","type":"airlock-cni","policyDirectory":"\#(policies)","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"airlock.dev/policy":"web"}}}"#
        func cni(_ command: String) throws -> ProcessResult {
            try Run.process([pluginPath], environment: environment.merging(["CNI_COMMAND": command]) { $1 }, stdin: config)
        }

        let added = try cni("ADD")
        XCTAssertEqual(added.status, 0, "\(added)")
        XCTAssertTrue(added.stdout.contains("\"169.254.200.2/30\""), added.stdout)
        let list = try Run.airlock(["gateway", "request", "list"])
        XCTAssertEqual(list.stdout, "\(name) 169.254.200.1 \(policies)/web.policy\n", "\(list)")

        // The pod reaches what its policy allows through its gateway, and nothing else.
        func fetch(_ host: String) throws -> String {
            let r = try Run.process(["ip", "netns", "exec", pod, "curl", "-sS", "--max-time", "10",
                                     "-x", "http://169.254.200.1:3128", "http://\(host)/p"], timeout: 30)
            return r.stdout + r.stderr
        }
        XCTAssertEqual(try fetch("a.test"), "host=a.test path=/p")
        XCTAssertTrue(try fetch("b.test").contains("airlock: b.test is not on the allowlist"))
        let dns = try Run.process(["ip", "netns", "exec", pod, "dig", "+short", "+time=3", "+tries=1", "@169.254.200.1", "a.test"])
        XCTAssertEqual(dns.stdout, "169.254.200.1\n", "\(dns)")
        let direct = try Run.process(["ip", "netns", "exec", pod, "curl", "-sS", "--max-time", "3", "http://192.0.2.1/"])
        XCTAssertNotEqual(direct.status, 0, "no way out but the gateway")
        let lines = (try? String(contentsOfFile: audit, encoding: .utf8)) ?? ""
        XCTAssertTrue(lines.split(separator: "\n").contains { $0.contains("\"event\":\"egress_allow\"") && $0.contains("\"sandbox\":\"\(name)\"") && $0.contains("a.test") }, lines)
        XCTAssertTrue(lines.split(separator: "\n").contains { $0.contains("\"event\":\"egress_deny\"") && $0.contains("\"sandbox\":\"\(name)\"") && $0.contains("b.test") }, lines)

        // DEL: the daemon no longer serves it, airlock's state and G are gone, the pod's
        // namespace (the runtime's) stays.
        let deleted = try cni("DEL")
        XCTAssertEqual(deleted.status, 0, "\(deleted)")
        XCTAssertEqual(try Run.airlock(["gateway", "request", "list"]).stdout, "")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/airlock/\(name)"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/netns/\(name).gw"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: "/run/netns/\(pod)"))
        XCTAssertEqual(try cni("DEL").status, 0, "DEL again")
    }
}
