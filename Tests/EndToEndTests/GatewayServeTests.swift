import Foundation
import TestSupport
import XCTest

/// `airlock gateway serve` for a sandbox made by `airlock netns create`, with curl and dig run
/// inside S: what a host admin's sandbox sees, including hot reload of the policy file.
final class GatewayServeTests: XCTestCase {
    func testServeAllowsDeniesAndReloads() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-serve-e2e")
        chmod(dir.path, 0o755)
        let ca = try TestCA(in: dir.path, names: ["localhost", "127.0.0.1", "allowed.test", "later.test", "loop.test"])
        let https = try WebUpstream(port: 443, tls: ca)
        let http = try WebUpstream(port: 80)
        defer { https.stop(); http.stop() }

        let policy = dir.file("policy")
        try """
            # the test policy: local stand-ins on 127.0.0.1
            allowed.test
            resolve allowed.test=127.0.0.1
            resolve later.test=127.0.0.1
            loop.test
            resolve loop.test=127.0.0.2
            allow-private 127.0.0.1/32
            """.write(toFile: policy, atomically: true, encoding: .utf8)
        chmod(policy, 0o644)
        let audit = dir.file("audit.jsonl")
        let name = "serve\(getpid() % 10000)"
        XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        // Started with a low soft open-file limit, which the gateway must raise (see below).
        let gateway = try BackgroundProcess(["/bin/bash", "-c", "ulimit -Sn 256 && exec \"$0\" \"$@\"",
                                             TestPaths.airlock, "gateway", "serve", name, "--policy", policy, "--audit-log", audit])
        defer { gateway.stop() }
        XCTAssertTrue(Wait.until(timeout: 30) {
            (try? self.inside(name, cwd: dir.path, "curl -sS --max-time 2 http://airlock.internal/healthz").stdout)?.hasPrefix("ok") == true
        }, "the gateway answers its health endpoint")
        // Every tunnel holds descriptors: the gateway raises its soft open-file limit to the hard one.
        let limits = try String(contentsOfFile: "/proc/\(gateway.pid)/limits", encoding: .utf8)
        let files = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }?
            .dropFirst("Max open files".count).split(separator: " ").prefix(2).map(String.init) ?? []
        XCTAssertEqual(files.count, 2, limits)
        XCTAssertEqual(files.first, files.last, "soft limit raised to the hard limit: \(limits)")

        // Allowed: HTTPS through CONNECT and transparently (SNI), HTTP through the proxy and by Host.
        let allowed = try inside(name, cwd: dir.path, """
            curl -sS --max-time 10 --cacert \(ca.caFile) -x http://169.254.200.1:3128 https://allowed.test/a; echo
            curl -sS --max-time 10 --noproxy '*' --cacert \(ca.caFile) https://allowed.test/b; echo
            curl -sS --max-time 10 -x http://169.254.200.1:3128 http://allowed.test/c; echo
            curl -sS --max-time 10 --noproxy '*' http://allowed.test/d; echo
            """)
        XCTAssertEqual(allowed.stdout.split(separator: "\n"),
                       ["host=allowed.test path=/a", "host=allowed.test path=/b", "host=allowed.test path=/c", "host=allowed.test path=/d"],
                       "\(allowed)")

        // Refused: a host not listed (403 with the reason), its name (NXDOMAIN), an IP literal,
        // and a listed name that resolves to loopback outside the allow-private range.
        let refused = try inside(name, cwd: dir.path, """
            curl -sS --max-time 10 -x http://169.254.200.1:3128 http://later.test/; echo
            dig +tries=1 +time=3 @169.254.200.1 later.test | grep -o 'status: [A-Z]*'
            bash -c 'exec 3<>/dev/tcp/169.254.200.1/3128; printf "GET http://0x7f000001/ HTTP/1.1\\r\\nHost: 0x7f000001\\r\\nConnection: close\\r\\n\\r\\n" >&3; timeout 10 cat <&3'; echo
            curl -sS --max-time 10 -x http://169.254.200.1:3128 http://loop.test:80/; echo
            """)
        XCTAssertTrue(refused.stdout.contains("airlock: later.test is not on the allowlist; add it to \(policy) or pass --allow later.test"), "\(refused)")
        XCTAssertTrue(refused.stdout.contains("status: NXDOMAIN"), "\(refused)")
        XCTAssertTrue(refused.stdout.contains("HTTP/1.1 403 airlock: IP literal 0x7f000001 refused"), "the reason is in the status line: \(refused)")
        XCTAssertTrue(refused.stdout.contains("X-Airlock-Denied: airlock: IP literal 0x7f000001 refused"), "\(refused)")
        XCTAssertTrue(refused.stdout.contains("127.0.0.2 is loopback"), "\(refused)")

        // Hot reload: a broken file keeps the old policy; a good one takes effect.
        try "allowed.test\nthis is not a rule\n".write(toFile: policy, atomically: true, encoding: .utf8)
        kill(gateway.pid, SIGHUP)
        XCTAssertTrue(Wait.until(timeout: 10) { self.auditEvents(audit).contains { $0["event"] as? String == "policy_reload" && $0["ok"] as? Bool == false } })
        let stillAllowed = try inside(name, cwd: dir.path, "curl -sS --max-time 10 --noproxy '*' --cacert \(ca.caFile) https://allowed.test/kept; echo")
        XCTAssertEqual(stillAllowed.stdout, "host=allowed.test path=/kept\n", "the old policy stays after a bad reload: \(stillAllowed)")

        try "later.test\nresolve later.test=127.0.0.1\nallow-private 127.0.0.1/32\n".write(toFile: policy, atomically: true, encoding: .utf8)
        kill(gateway.pid, SIGHUP)
        XCTAssertTrue(Wait.until(timeout: 10) { self.auditEvents(audit).contains { $0["event"] as? String == "policy_reload" && $0["ok"] as? Bool == true } })
        let swapped = try inside(name, cwd: dir.path, """
            curl -sS --max-time 10 --noproxy '*' --cacert \(ca.caFile) https://later.test/new; echo
            curl -sS --max-time 10 -x http://169.254.200.1:3128 http://allowed.test/; echo
            """)
        XCTAssertTrue(swapped.stdout.contains("host=later.test path=/new"), "\(swapped)")
        XCTAssertTrue(swapped.stdout.contains("airlock: allowed.test is not on the allowlist"), "\(swapped)")

        // Audit lines, field by field.
        let events = auditEvents(audit)
        let sni = events.first { $0["event"] as? String == "egress_allow" && $0["via"] as? String == "sni" }
        XCTAssertEqual(sni?["host"] as? String, "allowed.test")
        XCTAssertEqual(sni?["port"] as? Int, 443)
        XCTAssertEqual(sni?["rule"] as? String, "allowed.test")
        XCTAssertEqual(sni?["sandbox"] as? String, name)
        XCTAssertGreaterThan(sni?["bytes_up"] as? Int ?? 0, 0)
        XCTAssertGreaterThan(sni?["bytes_down"] as? Int ?? 0, 0)
        XCTAssertNotNil(sni?["ms"] as? Int)
        let deny = events.first { $0["event"] as? String == "egress_deny" && $0["host"] as? String == "later.test" }
        XCTAssertEqual(deny?["via"] as? String, "proxy")
        XCTAssertEqual(deny?["reason"] as? String, "later.test is not on the allowlist")
        let dns = events.first { $0["event"] as? String == "dns_deny" }
        XCTAssertEqual(dns?["host"] as? String, "later.test")
        XCTAssertEqual(dns?["qtype"] as? String, "A")
        let loop = events.first { $0["event"] as? String == "egress_deny" && $0["host"] as? String == "loop.test" }
        XCTAssertNotNil(loop, "a listed name resolving to loopback outside allow-private is refused: \(events)")
    }

    /// A reload that allows a new `host:port` opens a transparent listener on it, and one
    /// that drops a port closes its listener: a client with no proxy settings reaches the
    /// new port by name and is refused on the old one. The listener comes from the port
    /// binder, a helper that runs as the --run-as user with CAP_NET_BIND_SERVICE alone.
    func testReloadOpensAndClosesPortListeners() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-serve-ports")
        chmod(dir.path, 0o755)
        let ca = try TestCA(in: dir.path, names: ["localhost", "127.0.0.1", "allowed.test"])
        let first = try WebUpstream(port: 8443, tls: ca)
        let second = try WebUpstream(port: 9443, tls: ca)
        defer { first.stop(); second.stop() }

        let policy = dir.file("policy")
        try "allowed.test:8443\nresolve allowed.test=127.0.0.1\nallow-private 127.0.0.1/32\n".write(toFile: policy, atomically: true, encoding: .utf8)
        chmod(policy, 0o644)
        let audit = dir.file("audit.jsonl")
        let name = "ports\(getpid() % 10000)"
        XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        let gateway = try BackgroundProcess([TestPaths.airlock, "gateway", "serve", name, "--policy", policy, "--audit-log", audit])
        defer { gateway.stop() }
        XCTAssertTrue(Wait.until(timeout: 30) {
            (try? self.inside(name, cwd: dir.path, "curl -sS --max-time 2 http://airlock.internal/healthz").stdout)?.hasPrefix("ok") == true
        }, "the gateway answers its health endpoint")
        XCTAssertTrue(gateway.output.contains(" (dns 53, http 80, tls 443, proxy 3128, ssh 22, port 8443)\n"),
                      "the ready line names the policy's own ports: \(gateway.output)")

        // The binder: a child of the gateway, as nobody, with CAP_NET_BIND_SERVICE (bit 10) alone.
        let children = (try? String(contentsOfFile: "/proc/\(gateway.pid)/task/\(gateway.pid)/children", encoding: .utf8)) ?? ""
        let binders = children.split(separator: " ").compactMap { Int32($0) }
        XCTAssertEqual(binders.count, 1, "one helper process: \(children)")
        if let binder = binders.first {
            let status = try String(contentsOfFile: "/proc/\(binder)/status", encoding: .utf8).split(separator: "\n")
            XCTAssertTrue(status.contains("Uid:\t65534\t65534\t65534\t65534"), "\(status)")
            XCTAssertTrue(status.contains("CapEff:\t0000000000000400"), "\(status)")
            XCTAssertTrue(status.contains("CapPrm:\t0000000000000400"), "\(status)")
            XCTAssertTrue(status.contains("CapBnd:\t0000000000000400"), "\(status)")
            XCTAssertTrue(status.contains("NoNewPrivs:\t1"), "\(status)")
            let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(binder)/fd")) ?? []
            XCTAssertEqual(descriptors.count, 4, "stdin, stdout, stderr (/dev/null) and its end of the pair: \(descriptors)")
        }

        let script = """
            curl -sS --noproxy '*' --max-time 10 --cacert \(ca.caFile) https://allowed.test:8443/a; echo " exit=$?"
            curl -sS --noproxy '*' --max-time 10 --cacert \(ca.caFile) https://allowed.test:9443/b; echo " exit=$?"
            """
        let before = try inside(name, cwd: dir.path, script)
        XCTAssertTrue(before.stdout.contains("host=allowed.test:8443 path=/a exit=0"), "\(before)")
        XCTAssertTrue(before.stderr.contains("Failed to connect to allowed.test port 9443"), "no listener yet: \(before)")

        try "allowed.test:9443\nresolve allowed.test=127.0.0.1\nallow-private 127.0.0.1/32\n".write(toFile: policy, atomically: true, encoding: .utf8)
        kill(gateway.pid, SIGHUP)
        XCTAssertTrue(Wait.until(timeout: 10) { self.auditEvents(audit).contains { $0["event"] as? String == "port_listen" } }, "\(auditEvents(audit))")
        let after = try inside(name, cwd: dir.path, script)
        XCTAssertTrue(after.stderr.contains("Failed to connect to allowed.test port 8443"), "the listener is closed: \(after)")
        XCTAssertTrue(after.stdout.contains("host=allowed.test:9443 path=/b exit=0"), "\(after)")

        let events = auditEvents(audit)
        let opened = events.first { $0["event"] as? String == "port_listen" }
        XCTAssertEqual(opened?["port"] as? Int, 9443, "\(events)")
        XCTAssertEqual(opened?["ok"] as? Bool, true, "\(events)")
        XCTAssertEqual(opened?["sandbox"] as? String, name)
        let closed = events.first { $0["event"] as? String == "port_close" }
        XCTAssertEqual(closed?["port"] as? Int, 8443, "\(events)")
        let allowed = events.first { $0["event"] as? String == "egress_allow" && $0["port"] as? Int == 9443 }
        XCTAssertEqual(allowed?["via"] as? String, "sni", "\(events)")
        XCTAssertEqual(allowed?["rule"] as? String, "allowed.test:9443", "\(events)")
    }

    /// `netns exec` sets the credential-route presets' variables as `run` does, for the
    /// presets the gateway's policy holds now (a reload adds one), and keeps the host's key
    /// out. With no gateway serving it says so and sets none.
    func testNetnsExecSetsThePresetsVariablesOfTheGatewaysPolicy() throws {
        try RootTier.require()
        let dir = try TemporaryDirectory(prefix: "airlock-serve-presets")
        chmod(dir.path, 0o755)
        let policy = dir.file("policy")
        try "@anthropic-api\n".write(toFile: policy, atomically: true, encoding: .utf8)
        chmod(policy, 0o644)
        let audit = dir.file("audit.jsonl")
        let name = "prst\(getpid() % 10000)"
        XCTAssertEqual(try Run.airlock(["netns", "create", name]).status, 0)
        defer { _ = try? Run.airlock(["netns", "destroy", name]) }
        let environment = ["PATH": "/usr/bin:/bin", "ANTHROPIC_API_KEY": "sk-ant-host-key-never-inside"]
        // In a directory nobody can enter: the test may run from a checkout under /root.
        let exec = { try Run.airlock(["netns", "exec", name, "--user", "nobody", "--cwd", dir.path, "--", "/usr/bin/env"], environment: environment) }

        let alone = try exec()
        XCTAssertEqual(alone.status, 0, "\(alone)")
        XCTAssertTrue(alone.stderr.contains("airlock: the credential-route presets' variables are not set ("), "\(alone)")
        XCTAssertFalse(alone.stdout.contains("ANTHROPIC"), "\(alone)")

        let gateway = try BackgroundProcess([TestPaths.airlock, "gateway", "serve", name, "--policy", policy, "--audit-log", audit])
        defer { gateway.stop() }
        XCTAssertTrue(Wait.until(timeout: 30) {
            (try? self.inside(name, cwd: dir.path, "curl -sS --max-time 2 http://airlock.internal/healthz").stdout)?.hasPrefix("ok") == true
        }, "the gateway answers its health endpoint")
        let first = try exec()
        XCTAssertEqual(first.status, 0, "\(first)")
        XCTAssertTrue(first.stdout.contains("ANTHROPIC_BASE_URL=http://airlock.internal/api/anthropic\n"), "\(first)")
        XCTAssertTrue(first.stdout.contains("ANTHROPIC_API_KEY=airlock-placeholder-key-the-gateway-adds-the-real-one\n"), "\(first)")
        XCTAssertFalse(first.stdout.contains("GOOGLE_GEMINI_BASE_URL"), "\(first)")
        XCTAssertFalse(first.stdout.contains("sk-ant-host-key-never-inside"), "\(first)")
        XCTAssertFalse(first.stderr.contains("presets' variables are not set"), "\(first)")

        try "@anthropic-api\n@gemini-api\n".write(toFile: policy, atomically: true, encoding: .utf8)
        kill(gateway.pid, SIGHUP)
        XCTAssertTrue(Wait.until(timeout: 10) { self.auditEvents(audit).contains { $0["event"] as? String == "policy_reload" && $0["ok"] as? Bool == true } })
        let second = try exec()
        XCTAssertTrue(second.stdout.contains("GOOGLE_GEMINI_BASE_URL=http://airlock.internal/api/gemini\n"), "\(second)")
        XCTAssertTrue(second.stdout.contains("GEMINI_API_KEY=airlock-placeholder-key-the-gateway-adds-the-real-one\n"), "\(second)")
        XCTAssertTrue(second.stdout.contains("ANTHROPIC_BASE_URL=http://airlock.internal/api/anthropic\n"), "\(second)")
    }

    /// Runs `script` inside the sandbox `name` as nobody, with curl/dig from the host's filesystem.
    func inside(_ name: String, cwd: String, _ script: String) throws -> ProcessResult {
        // From the test directory (the CA lies there): the sandbox's /tmp is a fresh one, with
        // the working directory bound back in.
        try Run.airlock(["netns", "exec", name, "--user", "nobody", "--cwd", cwd, "--", "/bin/sh", "-c", script], timeout: 60)
    }

    func auditEvents(_ path: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }
}
