import Foundation
import Netns
import TestSupport
import XCTest

/// `airlock-cni` driven exactly as a container runtime drives a CNI plugin: the `CNI_*`
/// variables, the network configuration on stdin, the result or the error object on
/// stdout, against a pod network namespace the test makes (as the runtime would) with a
/// main plugin's veth, address and routes (made with `ip`, or by Debian's `ptp` plugin).
/// The gateway daemon is a small Unix-socket listener that records the requests.
/// Root tier: runs only inside scripts/in-throwaway-ns.
final class CNIPluginTests: XCTestCase {
    private var plugin = ""
    private var policies = ""
    private let daemonSocket = "/run/cni-test-gateway.sock"
    private var pods: [String] = []

    override func setUpWithError() throws {
        try RootTier.require()
        let directory = NSTemporaryDirectory() + "airlock-cni-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory + "/bin", withIntermediateDirectories: true)
        plugin = directory + "/bin/airlock-cni"
        try FileManager.default.createSymbolicLink(atPath: plugin, withDestinationPath: TestPaths.airlock)
        policies = directory + "/policies"
        try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
        try "allow example.com\n".write(toFile: policies + "/web.policy", atomically: true, encoding: .utf8)
    }

    override func tearDown() {
        for pod in pods {
            _ = try? Run.process(["ip", "netns", "delete", pod])
            _ = try? Run.process(["ip", "link", "delete", "h-" + pod])
        }
        try? FileManager.default.removeItem(atPath: daemonSocket)
    }

    // MARK: VERSION and bad input

    func testVersionListsTheSupportedSpecVersions() throws {
        let result = try run("VERSION", config: #"{"cniVersion":"1.1.0"}"#, environment: [:])
        XCTAssertEqual(result.status, 0, "\(result)")
        XCTAssertEqual(result.stdout, #"{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}"# + "\n")
        XCTAssertEqual(result.stderr, "")
    }

    func testInputThatIsNotJSONIsErrorSixInTheSpecShape() throws {
        let pod = try makePod()
        let before = entries("/run/netns")
        let result = try run("ADD", config: "not json {", environment: podEnvironment(pod))
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr, "")
        let error = try object(result.stdout)
        XCTAssertEqual(error["cniVersion"] as? String, "1.1.0")
        XCTAssertEqual(error["code"] as? Int, 6)
        XCTAssertEqual(error["msg"] as? String, "the network configuration on stdin is not a JSON object")
        XCTAssertEqual(Set(error.keys), ["cniVersion", "code", "msg"])
        XCTAssertEqual(entries("/run/netns"), before)
        XCTAssertEqual(try routes(pod), mainPluginRoutes(pod))
    }

    func testUnsupportedVersionAndMissingFieldsAreRefused() throws {
        let pod = try makePod()
        var result = try run("ADD", config: #"{"cniVersion":"0.3.1","name":"n","type":"airlock-cni"}"#, environment: podEnvironment(pod))
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(try object(result.stdout)["code"] as? Int, 1)
        XCTAssertEqual(try object(result.stdout)["msg"] as? String, "CNI version \"0.3.1\" is not supported; airlock-cni supports 1.0.0, 1.1.0")
        result = try run("ADD", config: #"{"cniVersion":"1.0.0","type":"airlock-cni"}"#, environment: podEnvironment(pod))
        XCTAssertEqual(try object(result.stdout)["code"] as? Int, 7)
        XCTAssertEqual(try object(result.stdout)["msg"] as? String, "the network configuration has no `name`")
        result = try run("ADD", config: config(pod), environment: podEnvironment(pod).filter { $0.key != "CNI_NETNS" })
        XCTAssertEqual(try object(result.stdout)["code"] as? Int, 4)
        XCTAssertEqual(try object(result.stdout)["msg"] as? String, "CNI_NETNS is not set")
        XCTAssertEqual(try routes(pod), mainPluginRoutes(pod))
    }

    func testPolicyNamesThatAreNotPlainNamesOrUnknownAreRefused() throws {
        let pod = try makePod()
        let daemon = try FakeDaemon(path: daemonSocket)
        defer { daemon.stop() }
        let before = entries("/run/netns")
        let beforeState = entries("/run/airlock")
        let cases: [(String, String)] = [
            ("../../etc/passwd", "invalid policy name \"../../etc/passwd\" in the pod's airlock.dev/policy annotation: contains \"/\""),
            ("..", "invalid policy name \"..\" in the pod's airlock.dev/policy annotation: contains \"..\""),
            (".hidden", "invalid policy name \".hidden\" in the pod's airlock.dev/policy annotation: starts with \".\""),
            ("a b", "invalid policy name \"a b\" in the pod's airlock.dev/policy annotation: only A-Z a-z 0-9 _ . - are allowed"),
            ("nope", "unknown policy \"nope\" (from the pod's airlock.dev/policy annotation): no file \(policies)/nope.policy"),
        ]
        for (name, message) in cases {
            let result = try run("ADD", config: config(pod, policy: name), environment: podEnvironment(pod))
            XCTAssertEqual(result.status, 1, "\(name): \(result)")
            XCTAssertEqual(try object(result.stdout)["code"] as? Int, 7, name)
            XCTAssertEqual(try object(result.stdout)["msg"] as? String, message)
        }
        let noPolicy = try run("ADD", config: config(pod, policy: nil), environment: podEnvironment(pod))
        XCTAssertEqual(try object(noPolicy.stdout)["msg"] as? String,
                       "no policy for the pod: annotate it with airlock.dev/policy or set defaultPolicy in the network configuration")
        XCTAssertEqual(entries("/run/netns"), before)
        XCTAssertEqual(entries("/run/airlock"), beforeState, "no sandbox state left (another test's daemon socket may be there)")
        XCTAssertEqual(daemon.requests, [])
        XCTAssertEqual(try routes(pod), mainPluginRoutes(pod))
    }

    // MARK: ADD, CHECK, DEL

    func testChainedAddLeavesOnlyTheRouteToTheGatewayAndDelLeavesNothing() throws {
        let pod = try makePod()
        let daemon = try FakeDaemon(path: daemonSocket)
        defer { daemon.stop() }
        let environment = podEnvironment(pod)
        let name = sandboxName(environment)

        let added = try run("ADD", config: config(pod), environment: environment)
        XCTAssertEqual(added.status, 0, "\(added)")
        XCTAssertEqual(added.stderr, "")
        let result = try object(added.stdout)
        XCTAssertEqual(result["cniVersion"] as? String, "1.0.0")
        let interfaces = try XCTUnwrap(result["interfaces"] as? [[String: Any]])
        XCTAssertEqual(interfaces.map { $0["name"] as? String }, ["h-" + pod, "eth0", "airlock0"])
        XCTAssertEqual(interfaces[2]["sandbox"] as? String, "/run/netns/\(pod)")
        let ips = try XCTUnwrap(result["ips"] as? [[String: Any]])
        XCTAssertEqual(ips.map { $0["address"] as? String }, ["10.99.0.2/24", "169.254.200.2/30"])
        XCTAssertEqual(ips[1]["gateway"] as? String, "169.254.200.1")
        XCTAssertEqual(ips[1]["interface"] as? Int, 2)
        XCTAssertEqual((result["routes"] as? [[String: String]]) ?? [], [["dst": "169.254.200.1/32"]])
        XCTAssertEqual((result["dns"] as? [String: [String]]) ?? [:], ["nameservers": ["169.254.200.1"]])

        // S's only route goes to G; the main plugin's default route and subnet are gone.
        XCTAssertEqual(try routes(pod), "169.254.200.1 dev airlock0 proto static scope link src 169.254.200.2 \n")
        let unreachable = try Run.process(["ip", "netns", "exec", pod, "ip", "route", "get", "192.0.2.1"])
        XCTAssertTrue(unreachable.stderr.contains("Network is unreachable"), unreachable.stderr)
        XCTAssertEqual(try Run.process(["ip", "-n", pod, "-6", "route"]).stdout, "")

        // The daemon was asked to serve it with the pod's policy; netns list shows it.
        XCTAssertEqual(try daemon.requests.map(request), [["op": "serve", "policy": policies + "/web.policy", "sandbox": name]])
        XCTAssertTrue(Pinning.isPinned("/run/netns/\(name).gw"))
        let state = try String(contentsOfFile: "/run/airlock/\(name)/state.json", encoding: .utf8)
        XCTAssertTrue(state.contains(#""containerID" : "\#(environment["CNI_CONTAINERID"]!)""#), state)
        XCTAssertTrue(state.contains(#""pod" : "default/web""#), state)
        XCTAssertTrue(state.contains(#""sandboxPin" : "/run/netns/\#(pod)""#), state)
        let list = try Run.airlock(["netns", "list"])
        XCTAssertTrue(list.stdout.contains(name + "  complete  169.254.200.1/30  169.254.200.2/30"), list.stdout)

        let checked = try run("CHECK", config: config(pod, prevResult: added.stdout), environment: environment)
        XCTAssertEqual(checked.status, 0, "\(checked)")
        XCTAssertEqual(checked.stdout, "")

        // A route that bypasses G, added behind airlock's back, fails CHECK with its text.
        XCTAssertEqual(try Run.process(["ip", "-n", pod, "route", "add", "198.51.100.0/24", "dev", "eth0"]).status, 0)
        let tampered = try run("CHECK", config: config(pod, prevResult: added.stdout), environment: environment)
        XCTAssertEqual(tampered.status, 1)
        XCTAssertEqual(try object(tampered.stdout)["code"] as? Int, 102)
        XCTAssertEqual(try object(tampered.stdout)["msg"] as? String,
                       "sandbox \(name): /run/netns/\(pod) has routes that do not go to the gateway: 198.51.100.0/24 dev eth0")

        let deleted = try run("DEL", config: config(pod, prevResult: added.stdout), environment: environment)
        XCTAssertEqual(deleted.status, 0, "\(deleted)")
        XCTAssertEqual(deleted.stdout, "")
        XCTAssertEqual(try daemon.requests.last.map(request), ["op": "stop", "sandbox": name])
        try assertNothingLeft(name, pod: pod)

        let again = try run("DEL", config: config(pod), environment: environment)
        XCTAssertEqual(again.status, 0, "\(again)")
        XCTAssertEqual(again.stdout, "")
        try assertNothingLeft(name, pod: pod)
    }

    func testAloneItMakesCNIIfnameTheSandboxInterface() throws {
        let pod = try makePod(mainPlugin: false)
        let daemon = try FakeDaemon(path: daemonSocket)
        defer { daemon.stop() }
        var environment = podEnvironment(pod)
        environment["CNI_IFNAME"] = "net1"
        let added = try run("ADD", config: config(pod, prevResult: nil), environment: environment)
        XCTAssertEqual(added.status, 0, "\(added)")
        let result = try object(added.stdout)
        XCTAssertEqual((result["interfaces"] as? [[String: String]]) ?? [], [["name": "net1", "sandbox": "/run/netns/\(pod)"]])
        XCTAssertEqual(try routes(pod), "169.254.200.1 dev net1 proto static scope link src 169.254.200.2 \n")
        XCTAssertEqual(try run("DEL", config: config(pod, prevResult: nil), environment: environment).status, 0)
        try assertNothingLeft(sandboxName(environment), pod: pod, interface: "net1")
    }

    func testAddWithoutADaemonFailsWithTryAgainLaterAndChangesNothing() throws {
        let pod = try makePod()
        let environment = podEnvironment(pod)
        let result = try run("ADD", config: config(pod), environment: environment)
        XCTAssertEqual(result.status, 1)
        let error = try object(result.stdout)
        XCTAssertEqual(error["code"] as? Int, 11)
        XCTAssertEqual(error["msg"] as? String,
                       "cannot register sandbox \(sandboxName(environment)): no gateway daemon is running (no control socket at \(daemonSocket)); start it with `airlock gateway serve --all`")
        try assertNothingLeft(sandboxName(environment), pod: pod)
        XCTAssertEqual(try routes(pod), mainPluginRoutes(pod), "a failed ADD left the main plugin's routes alone")
    }

    func testDaemonRefusalRollsBackAndDelAfterItSucceeds() throws {
        let pod = try makePod()
        let daemon = try FakeDaemon(path: daemonSocket) { _ in #"{"ok":false,"error":"policy web.policy line 1: unknown directive"}"# }
        defer { daemon.stop() }
        let environment = podEnvironment(pod)
        let name = sandboxName(environment)
        let result = try run("ADD", config: config(pod), environment: environment)
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(try object(result.stdout)["code"] as? Int, 101)
        XCTAssertEqual(try object(result.stdout)["msg"] as? String,
                       "the gateway daemon refused to serve sandbox \(name): policy web.policy line 1: unknown directive")
        try assertNothingLeft(name, pod: pod)
        XCTAssertEqual(try routes(pod), mainPluginRoutes(pod))

        let deleted = try run("DEL", config: config(pod), environment: environment)
        XCTAssertEqual(deleted.status, 1, "the daemon refuses stop too: DEL says so, after removing everything")
        XCTAssertEqual(try object(deleted.stdout)["code"] as? Int, 11)
        try assertNothingLeft(name, pod: pod)
    }

    func testDelAfterAnAddKilledHalfWayLeavesNothing() throws {
        let pod = try makePod()
        // A daemon that takes the serve request and never answers: ADD is killed while
        // it waits, with G, the veth and the state made and the routes not yet removed.
        let daemon = try FakeDaemon(path: daemonSocket) { line in line.contains(#""op":"serve""#) ? nil : #"{"ok":true}"# }
        defer { daemon.stop() }
        let environment = podEnvironment(pod)
        let name = sandboxName(environment)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: plugin)
        process.environment = environment.merging(["CNI_COMMAND": "ADD"]) { $1 }
        let input = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        input.fileHandleForWriting.write(Data(config(pod).utf8))
        try input.fileHandleForWriting.close()
        XCTAssertTrue(Wait.until(timeout: 30) { !daemon.requests.isEmpty }, "ADD never reached the daemon")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertTrue(Pinning.isPinned("/run/netns/\(name).gw"), "ADD was not half done")
        XCTAssertTrue(try Run.process(["ip", "-n", pod, "link", "show", "airlock0"]).status == 0)

        let deleted = try run("DEL", config: config(pod), environment: environment)
        XCTAssertEqual(deleted.status, 0, "\(deleted)")
        XCTAssertEqual(try daemon.requests.last.map(request), ["op": "stop", "sandbox": name])
        try assertNothingLeft(name, pod: pod)
    }

    func testDelAfterTheRuntimeRemovedTheNetnsSucceeds() throws {
        let pod = try makePod()
        let daemon = try FakeDaemon(path: daemonSocket)
        defer { daemon.stop() }
        let environment = podEnvironment(pod)
        let name = sandboxName(environment)
        XCTAssertEqual(try run("ADD", config: config(pod), environment: environment).status, 0)
        XCTAssertEqual(try Run.process(["ip", "netns", "delete", pod]).status, 0)
        let deleted = try run("DEL", config: config(pod), environment: environment)
        XCTAssertEqual(deleted.status, 0, "\(deleted)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/netns/\(name).gw"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/airlock/\(name)"))
    }

    func testDelOfAnotherContainerWithTheSameShortNameLeavesTheSandbox() throws {
        let pod = try makePod()
        let daemon = try FakeDaemon(path: daemonSocket)
        defer { daemon.stop() }
        var environment = podEnvironment(pod)
        environment["CNI_CONTAINERID"] = "abcdef012345aaaa"
        let name = sandboxName(environment)
        XCTAssertEqual(try run("ADD", config: config(pod), environment: environment).status, 0)
        var other = environment
        other["CNI_CONTAINERID"] = "abcdef012345bbbb"
        XCTAssertEqual(try run("DEL", config: config(pod), environment: other).status, 0)
        XCTAssertTrue(Pinning.isPinned("/run/netns/\(name).gw"), "DEL of another container removed this one's sandbox")
        let taken = try run("ADD", config: config(pod), environment: other)
        XCTAssertEqual(try object(taken.stdout)["msg"] as? String,
                       "cannot make sandbox \(name) in /run/netns/\(pod): sandbox \"\(name)\" already exists for container abcdef012345aaaa")
        XCTAssertEqual(try run("DEL", config: config(pod), environment: environment).status, 0)
        try assertNothingLeft(name, pod: pod)
    }

    func testNetnsDestroyOfAPodSandboxKeepsThePodsNamespace() throws {
        let pod = try makePod()
        let daemon = try FakeDaemon(path: daemonSocket)
        defer { daemon.stop() }
        let environment = podEnvironment(pod)
        let name = sandboxName(environment)
        XCTAssertEqual(try run("ADD", config: config(pod), environment: environment).status, 0)
        let destroyed = try Run.airlock(["netns", "destroy", name])
        XCTAssertEqual(destroyed.status, 0, "\(destroyed)")
        XCTAssertEqual(destroyed.stdout, "destroyed sandbox \(name): removed airlock0 in /run/netns/\(pod), /run/netns/\(name).gw, /run/airlock/\(name)\n")
        try assertNothingLeft(name, pod: pod)
    }

    func testGCRemovesTheSandboxesOfContainersTheRuntimeNoLongerLists() throws {
        let daemon = try FakeDaemon(path: daemonSocket)
        defer { daemon.stop() }
        let kept = try makePod(), stale = try makePod()
        let keptEnvironment = podEnvironment(kept), staleEnvironment = podEnvironment(stale)
        XCTAssertEqual(try run("ADD", config: config(kept), environment: keptEnvironment).status, 0)
        XCTAssertEqual(try run("ADD", config: config(stale), environment: staleEnvironment).status, 0)
        var gcConfig = config(kept, prevResult: nil)
        gcConfig.removeLast()
        gcConfig += #","cni.dev/valid-attachments":[{"containerID":"\#(keptEnvironment["CNI_CONTAINERID"]!)","ifname":"eth0"}]}"#
        let collected = try run("GC", config: gcConfig.replacingOccurrences(of: "\"1.0.0\"", with: "\"1.1.0\""), environment: [:])
        XCTAssertEqual(collected.status, 0, "\(collected)")
        XCTAssertEqual(collected.stdout, "")
        XCTAssertEqual(try daemon.requests.last.map(request), ["op": "stop", "sandbox": sandboxName(staleEnvironment)])
        try assertNothingLeft(sandboxName(staleEnvironment), pod: stale)
        XCTAssertTrue(Pinning.isPinned("/run/netns/\(sandboxName(keptEnvironment)).gw"), "GC removed a listed container's sandbox")
        XCTAssertEqual(try routes(kept), "169.254.200.1 dev airlock0 proto static scope link src 169.254.200.2 \n")
        XCTAssertEqual(try run("DEL", config: config(kept), environment: keptEnvironment).status, 0)
        try assertNothingLeft(sandboxName(keptEnvironment), pod: kept)
    }

    // MARK: STATUS

    func testStatusIsReadyOnlyWhenTheDaemonAnswers() throws {
        let pod = try makePod(mainPlugin: false)
        let down = try run("STATUS", config: config(pod), environment: [:])
        XCTAssertEqual(down.status, 1)
        XCTAssertEqual(try object(down.stdout)["code"] as? Int, 50)
        XCTAssertEqual(try object(down.stdout)["msg"] as? String,
                       "no gateway daemon is running (no control socket at \(daemonSocket)); start it with `airlock gateway serve --all`")
        let daemon = try FakeDaemon(path: daemonSocket) { _ in #"{"ok":true,"sandboxes":[]}"# }
        defer { daemon.stop() }
        let up = try run("STATUS", config: config(pod), environment: [:])
        XCTAssertEqual(up.status, 0, "\(up)")
        XCTAssertEqual(up.stdout, "")
        XCTAssertEqual(try daemon.requests.map(request), [["op": "list"]])
    }

    // MARK: chained after Debian's ptp plugin

    func testChainedAfterThePtpPlugin() throws {
        let ptp = "/usr/lib/cni/ptp"
        try Precondition.require(FileManager.default.isExecutableFile(atPath: ptp),
                                 "needs Debian's containernetworking-plugins (/usr/lib/cni/ptp)")
        let pod = try makePod(mainPlugin: false)
        let daemon = try FakeDaemon(path: daemonSocket)
        defer { daemon.stop() }
        var environment = podEnvironment(pod)
        environment["CNI_PATH"] = "/usr/lib/cni"
        environment["CNI_ARGS"] = "IgnoreUnknown=1;" + environment["CNI_ARGS"]!
        let ptpConfig = #"{"cniVersion":"1.0.0","name":"pods","type":"ptp","ipam":{"type":"host-local","subnet":"10.98.0.0/24","routes":[{"dst":"0.0.0.0/0"}],"dataDir":"/run/cni-test-ipam"}}"#
        let main = try Run.process([ptp], environment: environment.merging(["CNI_COMMAND": "ADD"]) { $1 }, stdin: ptpConfig)
        XCTAssertEqual(main.status, 0, "\(main)")
        defer { _ = try? Run.process([ptp], environment: environment.merging(["CNI_COMMAND": "DEL"]) { $1 }, stdin: ptpConfig) }
        XCTAssertTrue(try routes(pod).contains("default via 10.98.0.1 dev eth0"))

        let added = try run("ADD", config: config(pod, prevResult: main.stdout), environment: environment)
        XCTAssertEqual(added.status, 0, "\(added)")
        let ips = try XCTUnwrap(try object(added.stdout)["ips"] as? [[String: Any]])
        XCTAssertEqual(ips.map { $0["address"] as? String }, ["10.98.0.2/24", "169.254.200.2/30"])
        XCTAssertEqual(try routes(pod), "169.254.200.1 dev airlock0 proto static scope link src 169.254.200.2 \n")
        XCTAssertEqual(try run("CHECK", config: config(pod, prevResult: added.stdout), environment: environment).status, 0)
        XCTAssertEqual(try run("DEL", config: config(pod, prevResult: added.stdout), environment: environment).status, 0)
        try assertNothingLeft(sandboxName(environment), pod: pod)
    }

    // MARK: helpers

    /// Makes a pod network namespace as a runtime would, at /run/netns/POD; with
    /// `mainPlugin`, also what a main plugin leaves: eth0 (a veth to the host side
    /// `h-POD`) with 10.99.0.2/24 and a default route via 10.99.0.1.
    private func makePod(mainPlugin: Bool = true) throws -> String {
        let pod = "pod\(UInt32.random(in: 0..<100_000))"
        pods.append(pod)
        var commands = [["ip", "netns", "add", pod], ["ip", "-n", pod, "link", "set", "lo", "up"]]
        if mainPlugin {
            commands += [
                ["ip", "link", "add", "h-" + pod, "type", "veth", "peer", "name", "eth0", "netns", pod],
                ["ip", "addr", "add", "10.99.0.1/24", "dev", "h-" + pod], ["ip", "link", "set", "h-" + pod, "up"],
                ["ip", "-n", pod, "addr", "add", "10.99.0.2/24", "dev", "eth0"], ["ip", "-n", pod, "link", "set", "eth0", "up"],
                ["ip", "-n", pod, "route", "add", "default", "via", "10.99.0.1"],
            ]
        }
        for command in commands {
            let result = try Run.process(command)
            XCTAssertEqual(result.status, 0, "\(command): \(result)")
        }
        return pod
    }

    /// The routes the simulated main plugin gave `pod`, as `ip route` prints them.
    private func mainPluginRoutes(_ pod: String) -> String {
        "default via 10.99.0.1 dev eth0 \n10.99.0.0/24 dev eth0 proto kernel scope link src 10.99.0.2 \n"
    }

    private func routes(_ pod: String) throws -> String {
        try Run.process(["ip", "-n", pod, "route"]).stdout
    }

    private func podEnvironment(_ pod: String) -> [String: String] {
        let id = (0..<4).map { _ in String(format: "%016llx", UInt64.random(in: 0...UInt64.max)) }.joined()
        return [
            "CNI_CONTAINERID": id, "CNI_NETNS": "/run/netns/\(pod)", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin",
            "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=\(id)",
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    }

    private func sandboxName(_ environment: [String: String]) -> String {
        "k" + environment["CNI_CONTAINERID"]!.prefix(11)
    }

    /// The network configuration with the pod annotated with `policy` (nil: none) and
    /// `prevResult` (default: the simulated main plugin's result; nil: none).
    private func config(_ pod: String, policy: String? = "web", prevResult: String?? = .some(nil)) -> String {
        let previous: String?
        switch prevResult {
        case .some(.some(let text)): previous = text.trimmingCharacters(in: .whitespacesAndNewlines)
        case .some(.none): previous = #"{"cniVersion":"1.0.0","interfaces":[{"name":"h-\#(pod)"},{"name":"eth0","sandbox":"/run/netns/\#(pod)"}],"ips":[{"address":"10.99.0.2/24","gateway":"10.99.0.1","interface":1}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#
        case .none: previous = nil
        }
        var fields = [
            #""cniVersion":"1.0.0""#, #""name":"pods""#, #""type":"airlock-cni""#,
            #""policyDirectory":"\#(policies)""#, #""daemonSocket":"\#(daemonSocket)""#,
        ]
        if let policy { fields.append(#""runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"airlock.dev/policy":"\#(policy)"}}"#) }
        if let previous { fields.append(#""prevResult":\#(previous)"#) }
        return "{" + fields.joined(separator: ",") + "}"
    }

    private func run(_ command: String, config: String, environment: [String: String]) throws -> ProcessResult {
        var environment = environment
        environment["CNI_COMMAND"] = command
        return try Run.process([plugin], environment: environment, stdin: config)
    }

    /// A daemon request line as its fields.
    private func request(_ line: String) throws -> [String: String] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], line)
    }

    private func object(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try XCTUnwrap(value as? [String: Any], text, file: file, line: line)
    }

    /// Nothing of the sandbox remains (G's pin, the state, the airlock interface in S),
    /// and the runtime's namespace is still there.
    private func assertNothingLeft(_ name: String, pod: String, interface: String = "airlock0", file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/netns/\(name).gw"), "G's pin is left", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/netns/\(name)"), file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/airlock/\(name)"), "state is left", file: file, line: line)
        XCTAssertTrue(Pinning.isPinned("/run/netns/\(pod)"), "the runtime's namespace was removed", file: file, line: line)
        let link = try Run.process(["ip", "-n", pod, "link", "show", interface])
        XCTAssertNotEqual(link.status, 0, "\(interface) is left in the pod: \(link.stdout)", file: file, line: line)
    }
}

/// A stand-in for the gateway daemon: a Unix socket that records each request line and
/// answers with `answer(line)` (nil: holds the connection open without answering).
final class FakeDaemon: @unchecked Sendable {
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var held: [Int32] = []
    private let done = DispatchSemaphore(value: 0)

    /// The request lines received so far.
    var requests: [String] {
        lock.lock()
        defer { lock.unlock() }
        return received
    }

    init(path: String, answer: @escaping @Sendable (String) -> String? = { _ in #"{"ok":true}"# }) throws {
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        Thread.detachNewThread { [self] in
            while true {
                let connection = accept(fd, nil, nil)
                if connection < 0 { break }
                var line: [UInt8] = []
                var byte: UInt8 = 0
                while read(connection, &byte, 1) == 1 && byte != UInt8(ascii: "\n") { line.append(byte) }
                let request = String(decoding: line, as: UTF8.self)
                lock.lock()
                received.append(request)
                lock.unlock()
                if let reply = answer(request) {
                    _ = (reply + "\n").utf8CString.withUnsafeBytes { write(connection, $0.baseAddress, $0.count - 1) }
                    close(connection)
                } else {
                    lock.lock()
                    held.append(connection)
                    lock.unlock()
                }
            }
            done.signal()
        }
    }

    /// Stops listening and closes held connections.
    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        done.wait()
        close(fd)
        lock.lock()
        held.forEach { close($0) }
        lock.unlock()
    }
}
