import ArgumentParser
import Foundation
import Netns
import GatewayCore
import TestSupport
import XCTest
@testable import airlock

/// `RunPlan`: what `airlock run` hands the sandboxed command, decided before anything is
/// built. The upstream token's variable (`--token-env NAME`) is removed whatever NAME is,
/// not only when it looks like a credential, and the "not passed" notice lists exactly
/// the variables that were left out.
final class RunPlanTests: XCTestCase {
    /// A token no test environment holds by chance.
    let token = "tok_" + UUID().uuidString.replacingOccurrences(of: "-", with: "")

    /// The plan for `airlock run --repo owner/app --token-env NAME -- /bin/true` with
    /// `inherited` as airlock's environment. As root the command runs as nobody (`--user`; never root);
    /// rootless as the caller.
    func plan(tokenEnv name: String, inherited: [String: String]) throws -> RunPlan {
        var argv = ["--repo", "owner/app", "--token-env", name]
        if geteuid() == 0 { argv += ["--user", "nobody"] }
        argv += ["--", "/bin/true"]
        let command = try RunCommand.parse(argv)
        return try RunPlan(command: command, environment: inherited)
    }

    /// Names of every shape: plain words, lower and mixed case, digits, underscores, names
    /// that look like ordinary settings, and names airlock itself sets for the command.
    static let names: [String] = {
        var names = [
            "PLAINVAR", "x", "Z9", "_", "_LEADING", "lower_case", "MiXeD", "A1_B2_C3", "LANG", "TERM",
            "EDITOR", "GIT_AUTHOR_NAME", "GOPATH", "PWD", "SHELL", "DATA", "UPSTREAM", "GH", "MY_VALUE",
            "HOME", "USER", "LOGNAME", "PATH", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
        ]
        // And a fixed set of generated names (seeded, so a failure is reproducible).
        var generator = SplitMix64(seed: 17)
        let first = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
        let rest = first + Array("0123456789")
        for _ in 0..<200 {
            let length = Int.random(in: 1...24, using: &generator)
            var name = String(first.randomElement(using: &generator)!)
            for _ in 1..<length { name.append(rest.randomElement(using: &generator)!) }
            names.append(name)
        }
        return names
    }()

    /// `run` stops its gateway after the command and everything it started are gone: what is
    /// still open then is an upstream keeping a connection open, so the drain is 2 s, not
    /// `gateway serve`'s 30; a `--drain-timeout` given is kept.
    /// `--token-file` is read to a limit, and a file it cannot use is refused with the system's
    /// reason; the token, trimmed, is what reaches the plan.
    func testTokenFileIsReadToALimitAndRefusedWithTheReason() throws {
        func plan(_ file: String) throws -> RunPlan {
            let user = geteuid() == 0 ? ["--user", "nobody"] : []
            return try RunPlan(command: try RunCommand.parse(user + ["--repo", "owner/app", "--token-file", file, "--", "/bin/true"]),
                               environment: [:])
        }
        let dir = NSTemporaryDirectory() + "airlock-token-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ("  " + token + "\n").write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        XCTAssertEqual(try plan(dir + "/token").upstreamToken?.withRevealed { $0 }, token)
        try "\n".write(toFile: dir + "/empty", atomically: true, encoding: .utf8)
        let refusals = [
            (dir + "/missing", "--token-file \(dir)/missing: cannot read it (No such file or directory)"),
            (dir, "--token-file \(dir): cannot read it (Is a directory)"),
            ("/dev/zero", "--token-file /dev/zero: larger than 65536 bytes"),
            (dir + "/empty", "--token-file \(dir)/empty: the file is empty"),
        ]
        for (file, expected) in refusals {
            XCTAssertThrowsError(try plan(file), file) { XCTAssertEqual(String(describing: $0), expected) }
        }
    }

    func testRunDrainsBrieflyUnlessTold() throws {
        let user = geteuid() == 0 ? ["--user", "nobody"] : []
        let plain = try RunPlan(command: try RunCommand.parse(user + ["--", "/bin/true"]), environment: [:])
        XCTAssertEqual(plain.gatewayOptions.limits.drainTimeout, .seconds(2))
        let told = try RunPlan(command: try RunCommand.parse(user + ["--drain-timeout", "40", "--", "/bin/true"]), environment: [:])
        XCTAssertEqual(told.gatewayOptions.limits.drainTimeout, .seconds(40))
        let zero = try RunPlan(command: try RunCommand.parse(user + ["--drain-timeout", "0", "--", "/bin/true"]), environment: [:])
        XCTAssertEqual(zero.gatewayOptions.limits.drainTimeout, .seconds(0))
        XCTAssertEqual(try GatewayCommand.Serve.parse(["sbx"]).options.limits.drainTimeout, .seconds(30))
    }

    func testTokenVariableIsRemovedWhateverItsName() throws {
        for name in Self.names {
            var inherited = ["PATH": "/usr/bin:/bin", "LANG": "C"]
            inherited[name] = token
            let plan = try plan(tokenEnv: name, inherited: inherited)
            for (variable, value) in plan.environment {
                XCTAssertFalse(value.contains(token), "--token-env \(name): the token reached the command as \(variable)")
            }
            XCTAssertTrue(plan.droppedNames.contains(name), "--token-env \(name): not listed as not passed: \(plan.droppedNames)")
            XCTAssertNotNil(plan.upstreamToken, name)
        }
    }

    func testTokenVariableIsRemovedAmongOthers() throws {
        let inherited = ["PATH": "/usr/bin:/bin", "LANG": "C", "PLAINVAR": token, "OTHER": "kept", "GH_TOKEN": "ghp_other"]
        let plan = try plan(tokenEnv: "PLAINVAR", inherited: inherited)
        XCTAssertNil(plan.environment["PLAINVAR"])
        XCTAssertNil(plan.environment["GH_TOKEN"])
        XCTAssertEqual(plan.environment["OTHER"], "kept")
        XCTAssertEqual(plan.environment["LANG"], "C")
        XCTAssertEqual(plan.droppedNames, ["GH_TOKEN", "PLAINVAR"])
        XCTAssertEqual(plan.upstreamToken?.withRevealed { $0 }, token)
    }

    /// The caller's proxy settings never reach the command: every one, `ALL_PROXY`
    /// included, is airlock's own or absent.
    func testCallersProxySettingsNeverReachTheCommand() throws {
        var inherited = ["PATH": "/usr/bin:/bin", "PLAINVAR": token]
        for name in SandboxEnvironment.proxyNames { inherited[name] = "socks5://corp-proxy.example:1080" }
        let plan = try plan(tokenEnv: "PLAINVAR", inherited: inherited)
        for name in SandboxEnvironment.proxyNames {
            XCTAssertNotEqual(plan.environment[name], "socks5://corp-proxy.example:1080", name)
        }
        XCTAssertNil(plan.environment["ALL_PROXY"])
        XCTAssertNil(plan.environment["all_proxy"])
        XCTAssertEqual(plan.environment["HTTPS_PROXY"], SandboxEnvironment.proxyURL)
    }

    /// What the notice lists as not passed is what was left out: every listed name was in
    /// airlock's environment and is not in the command's (or holds airlock's own value),
    /// and every inherited name not listed reaches the command unchanged (proxy settings
    /// aside, which airlock replaces).
    func testReportedAsRemovedIsWhatWasRemoved() throws {
        var generator = SplitMix64(seed: 42)
        for name in Self.names.shuffled(using: &generator).prefix(60) {
            var inherited = ["PATH": "/usr/bin:/bin", "LANG": "C", "NPM_TOKEN": "npm_x", "AWS_PROFILE": "dev", "COLOR": "blue"]
            for other in Self.names.shuffled(using: &generator).prefix(8) where other != name {
                inherited[other] = "value-of-\(other)"
            }
            inherited[name] = token
            let plan = try plan(tokenEnv: name, inherited: inherited)
            let set = ["HOME", "USER", "LOGNAME", "PATH"] + SandboxEnvironment.proxyNames
            XCTAssertEqual(plan.droppedNames, Array(Set(plan.droppedNames)).sorted(), "sorted, each name once")
            for dropped in plan.droppedNames {
                XCTAssertNotNil(inherited[dropped], "\(dropped) listed as not passed but was never there")
                if set.contains(dropped) {
                    XCTAssertNotEqual(plan.environment[dropped], inherited[dropped], "\(dropped) listed as not passed but passed")
                } else {
                    XCTAssertNil(plan.environment[dropped], "\(dropped) listed as not passed but passed")
                }
            }
            for (variable, value) in inherited where !plan.droppedNames.contains(variable) && !set.contains(variable) {
                XCTAssertEqual(plan.environment[variable], value, "\(variable) neither passed nor listed as not passed (token in \(name))")
            }
        }
    }

    /// `--repo` takes what a user copies from the browser or `git remote -v` as well as
    /// `OWNER/REPO`, all canonicalised alike; a host the run has no upstream for is refused
    /// (the token would go there), naming the flag that adds it.
    func testRepoURLFormsAndHosts() throws {
        let user = geteuid() == 0 ? ["--user", "nobody"] : []
        func scope(_ repos: [String], _ extra: [String] = []) throws -> [String] {
            let argv = user + extra + repos.flatMap { ["--repo", $0] } + ["--token-env", "T", "--", "/bin/true"]
            return try RunPlan(command: try RunCommand.parse(argv), environment: ["T": token]).scope.entries.map(\.description)
        }
        for form in ["Owner/Repo", "github.com/owner/repo", "https://github.com/Owner/Repo", "https://github.com/owner/repo.git",
                     "https://github.com/owner/repo/", "github.com/owner/repo.git"] {
            XCTAssertEqual(try scope([form]), ["github.com/owner/repo:read"], form)
        }
        for form in ["owner/repo:rw", "https://github.com/owner/repo:rw", "https://github.com/owner/repo.git:rw", "github.com/owner/repo:rw"] {
            XCTAssertEqual(try scope([form]), ["github.com/owner/repo:rw"], form)
        }
        XCTAssertEqual(try scope(["https://github.com/o/r", "o/r:rw"]), ["github.com/o/r:rw"], "one repository, the stronger access")
        XCTAssertEqual(try scope(["https://ghe.corp.test/o/r.git:rw"], ["--git-upstream", "ghe.corp.test=https://ghe.corp.test"]),
                       ["ghe.corp.test/o/r:rw"])

        func refusal(_ repo: String) -> String {
            do {
                _ = try scope([repo])
                return "accepted"
            } catch {
                return String(describing: error)
            }
        }
        XCTAssertEqual(refusal("https://gitlab.com/o/r"),
                       "--repo 'https://gitlab.com/o/r': gitlab.com is not a git host of this run (github.com); to send the token there, add --git-upstream gitlab.com=https://gitlab.com")
        XCTAssertEqual(refusal("gitlab.com/o/r:rw"),
                       "--repo 'gitlab.com/o/r:rw': gitlab.com is not a git host of this run (github.com); to send the token there, add --git-upstream gitlab.com=https://gitlab.com")
        XCTAssertEqual(refusal("https://github.com/o/r/tree/main"),
                       "--repo 'https://github.com/o/r/tree/main': scope entry \"https://github.com/o/r/tree/main\": expected [HOST/]OWNER/REPO[:rw] (expected [HOST/]OWNER/REPO[:rw] or https://HOST/OWNER/REPO[.git][:rw])")
    }

    /// Rootless, the policy is the caller's `$XDG_CONFIG_HOME/airlock` set (without
    /// `--policy`), and every file read, and the drop-in directory, is hidden from the command.
    func testRootlessReadsAndHidesTheXDGPolicy() throws {
        let dir = try TemporaryDirectory()
        let config = dir.file("config")
        try FileManager.default.createDirectory(atPath: config + "/airlock/policy.d", withIntermediateDirectories: true)
        try "pypi.org\n".write(toFile: config + "/airlock/policy", atomically: true, encoding: .utf8)
        try "crates.io\n".write(toFile: config + "/airlock/policy.d/10-a.conf", atomically: true, encoding: .utf8)
        // Planned rootless whoever runs the test (as root the set is /etc/airlock's:
        // EndToEndTests/PolicyLocationTests).
        let plan = try RunPlan(command: try RunCommand.parse(["--", "/bin/true"]),
                               environment: ["XDG_CONFIG_HOME": config, "HOME": dir.path], mode: .rootless)
        XCTAssertEqual(plan.policyFiles, PolicyFiles(directory: config + "/airlock"))
        let hidden = Set(plan.view.protectedFiles.map(\.path))
        for path in [config + "/airlock/policy", config + "/airlock/policy.d"] {
            var real = path
            if let resolved = realpath(path, nil) {
                real = String(cString: resolved)
                free(resolved)
            }
            XCTAssertTrue(hidden.contains(real), "\(path) hidden: \(hidden)")
        }
        let explicit = try RunPlan(command: try RunCommand.parse(["--policy", config + "/airlock/policy", "--", "/bin/true"]),
                                   environment: ["XDG_CONFIG_HOME": config, "HOME": dir.path], mode: .rootless)
        XCTAssertEqual(explicit.policyFiles, PolicyFiles(file: config + "/airlock/policy"), "--policy FILE alone")
    }
}

/// A small seeded generator, so generated names are the same on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
