import Foundation
import Netns
import TestSupport
import XCTest

/// The `airlock netns` commands as a user sees them: output, one-line errors, exit codes.
/// Root tier: runs only inside scripts/in-throwaway-ns.
final class NetnsCommandTests: XCTestCase {
    override func setUpWithError() throws {
        try RootTier.require()
    }

    private func assertRefused(_ arguments: [String], _ message: String, status: Int32, file: StaticString = #filePath, line: UInt = #line) throws {
        let pinsBefore = entries("/run/netns"), stateBefore = entries("/run/airlock")
        let result = try Run.airlock(arguments)
        XCTAssertEqual(result.status, status, "\(arguments): \(result)", file: file, line: line)
        XCTAssertEqual(result.stderr, "airlock: error: \(message)\n", file: file, line: line)
        XCTAssertEqual(result.stdout, "", file: file, line: line)
        XCTAssertEqual(entries("/run/netns"), pinsBefore, "\(arguments) changed /run/netns", file: file, line: line)
        XCTAssertEqual(entries("/run/airlock"), stateBefore, "\(arguments) changed /run/airlock", file: file, line: line)
    }

    func testBadNamesAreRefusedWithOneLineAndNoChange() throws {
        let cases: [(String, String)] = [
            ("", "invalid sandbox name \"\": empty"),
            ("abcdefghijklm", "invalid sandbox name \"abcdefghijklm\": 13 bytes, at most 12 (NAME.gw must fit an interface name)"),
            ("a/b", "invalid sandbox name \"a/b\": contains \"/\""),
            ("a b", "invalid sandbox name \"a b\": contains a space"),
            ("..", "invalid sandbox name \"..\": contains \"..\""),
            ("x..y", "invalid sandbox name \"x..y\": contains \"..\""),
            (".", "invalid sandbox name \".\": \".\" is not a name"),
            ("a$b", "invalid sandbox name \"a$b\": \"$\" is not allowed (use A-Z a-z 0-9 _ . -)"),
        ]
        for (name, message) in cases {
            try assertRefused(["netns", "create", "--", name], message, status: 64)
            try assertRefused(["netns", "destroy", "--", name], message, status: 64)
        }
    }

    func testBadAddressesAreRefusedWithOneLineAndNoChange() throws {
        let cases: [([String], String)] = [
            (["--gateway-address", "169.254.200.1"], "invalid address \"169.254.200.1\": expected ADDRESS/PREFIX like 169.254.200.1/30"),
            (["--gateway-address", "300.1.1.1/30"], "invalid address \"300.1.1.1/30\": \"300.1.1.1\" is not an IPv4 address"),
            (["--sandbox-address", "169.254.200.2/33"], "invalid address \"169.254.200.2/33\": prefix \"33\" is not a number 0-32"),
            (["--sandbox-address", "169.254.200.1/30"], "gateway address 169.254.200.1/30 and sandbox address 169.254.200.1/30 are the same address"),
            (["--sandbox-address", "169.254.201.2/30"], "gateway address 169.254.200.1/30 and sandbox address 169.254.201.2/30 are not in the same subnet"),
            (["--sandbox-address", "169.254.200.3/30"], "sandbox address 169.254.200.3/30 is the broadcast address of 169.254.200.0/30"),
            (["--sandbox-address", "169.254.200.2/29"], "gateway address 169.254.200.1/30 and sandbox address 169.254.200.2/29 have different prefix lengths"),
        ]
        for (options, message) in cases {
            try assertRefused(["netns", "create", "sbx"] + options, message, status: 64)
        }
    }

    func testCreateListDestroyAndGC() throws {
        let name = try uniqueName("c").rawValue
        let created = try Run.airlock(["netns", "create", name])
        XCTAssertEqual(created.status, 0, "\(created)")
        XCTAssertEqual(created.stdout, "created sandbox \(name): S /run/netns/\(name) (eth0 169.254.200.2/30), G /run/netns/\(name).gw (gw0 169.254.200.1/30)\n")
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }

        let again = try Run.airlock(["netns", "create", name])
        XCTAssertEqual(again.status, 0)
        XCTAssertEqual(again.stdout, "sandbox \(name) already exists, unchanged\n")

        let different = try Run.airlock(["netns", "create", name, "--gateway-address", "10.1.0.1/24", "--sandbox-address", "10.1.0.2/24"])
        XCTAssertEqual(different.status, 1)
        XCTAssertEqual(different.stderr, "airlock: error: sandbox \"\(name)\" already exists with gateway address 169.254.200.1/30 (requested 10.1.0.1/24), sandbox address 169.254.200.2/30 (requested 10.1.0.2/24); destroy it first to change it\n")

        // `ip` sees exactly one route in S: the link to the gateway.
        let routes = try Run.process(["ip", "netns", "exec", name, "ip", "route"])
        XCTAssertEqual(routes.stdout, "169.254.200.1 dev eth0 proto static scope link src 169.254.200.2 \n")
        let unreachable = try Run.process(["ip", "netns", "exec", name, "ip", "route", "get", "192.0.2.1"])
        XCTAssertNotEqual(unreachable.status, 0)
        XCTAssertTrue(unreachable.stderr.contains("Network is unreachable"), unreachable.stderr)

        let list = try Run.airlock(["netns", "list"])
        XCTAssertEqual(list.status, 0)
        XCTAssertTrue(list.stdout.hasPrefix("NAME"), list.stdout)
        XCTAssertTrue(list.stdout.split(separator: "\n").contains { $0.hasPrefix(name + " ") && $0.contains("complete") && $0.hasSuffix("169.254.200.2/30") }, list.stdout)

        let json = try Run.airlock(["netns", "list", "--json"])
        let decoded = try JSONDecoder().decode([SandboxSummary].self, from: Data(json.stdout.utf8))
        XCTAssertEqual(decoded.first { $0.name.rawValue == name },
                       SandboxSummary(name: try NamespaceName(name), gatewayAddress: try IPv4CIDR("169.254.200.1/30"),
                                      sandboxAddress: try IPv4CIDR("169.254.200.2/30"), status: .complete))

        let gc = try Run.airlock(["netns", "gc"])
        XCTAssertEqual(gc.status, 0)
        XCTAssertFalse(gc.stdout.contains(name), "gc must not touch a complete sandbox: \(gc.stdout)")

        let destroyed = try Run.airlock(["netns", "destroy", name])
        XCTAssertEqual(destroyed.status, 0, "\(destroyed)")
        XCTAssertEqual(destroyed.stdout, "destroyed sandbox \(name): removed /run/netns/\(name), /run/netns/\(name).gw, /run/airlock/\(name)\n")
        XCTAssertFalse(Pinning.exists("/run/netns/\(name)"))
        XCTAssertFalse(try Run.process(["ip", "netns", "list"]).stdout.contains(name))
    }

    func testDestroyOfAMissingNameExits3() throws {
        let result = try Run.airlock(["netns", "destroy", "nosuch"])
        XCTAssertEqual(result.status, 3)
        XCTAssertEqual(result.stderr, "airlock: error: no sandbox named \"nosuch\"\n")
    }

    func testGCReportsWhatItRemoved() throws {
        let name = try uniqueName("g").rawValue
        try FileManager.default.createDirectory(atPath: "/run/airlock/\(name)", withIntermediateDirectories: true)
        let result = try Run.airlock(["netns", "gc"])
        XCTAssertEqual(result.status, 0)
        XCTAssertTrue(result.stdout.contains("removed \(name) (half-made): /run/airlock/\(name)\n"), result.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/airlock/\(name)"))
    }

    func testWithoutPrivilegesCreateExits4NamingTheCapabilities() throws {
        // As nobody, with no capabilities: refused before anything is changed.
        let result = try Run.process(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                                      TestPaths.airlock, "netns", "create", "sbx"])
        guard !result.stderr.contains("Permission denied") || result.status == 4 else {
            throw Precondition.unmet("the built binary is not executable by nobody here (a checkout under a 0700 directory?): \(result.stderr)")
        }
        XCTAssertEqual(result.status, 4, "\(result)")
        XCTAssertEqual(result.stderr, "airlock: error: airlock netns create needs CAP_NET_ADMIN, CAP_SYS_ADMIN (run it as root, e.g. with sudo)\n")
        XCTAssertFalse(Pinning.exists("/run/netns/sbx"))
    }
}
