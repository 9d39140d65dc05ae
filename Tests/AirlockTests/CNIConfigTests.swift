import Foundation
import Netns
import XCTest

@testable import airlock

/// airlock-cni's reading of the runtime's input, without namespaces: the network
/// configuration's error codes and texts, policy names, the sandbox name, the ADD result.
final class CNIConfigTests: XCTestCase {
    private func parseError(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> CNIError? {
        do {
            _ = try CNIConfig.parse(Array(text.utf8))
            XCTFail("\(text) parsed", file: file, line: line)
            return nil
        } catch {
            return error as? CNIError
        }
    }

    func testConfigurationErrorsHaveTheSpecsCodes() {
        let cases: [(String, Int, String)] = [
            ("", 6, "the network configuration on stdin is not a JSON object"),
            ("[1]", 6, "the network configuration on stdin is not a JSON object"),
            (#"{"name":"n","type":"airlock-cni"}"#, 7, "the network configuration has no `cniVersion`"),
            (#"{"cniVersion":"1.0.0","name":"n","type":"airlock-cni","defaultPolicy":3}"#, 7, "the network configuration's `defaultPolicy` has the wrong type"),
            (#"{"cniVersion":"0.4.0","name":"n","type":"airlock-cni"}"#, 1, "CNI version \"0.4.0\" is not supported; airlock-cni supports 1.0.0, 1.1.0"),
        ]
        for (text, code, message) in cases {
            let error = parseError(text)
            XCTAssertEqual(error?.code, code, text)
            XCTAssertEqual(error?.msg, message, text)
        }
    }

    func testPolicyNamesAreNeverPaths() {
        XCTAssertNil(PolicyName.invalidReason("web"))
        XCTAssertNil(PolicyName.invalidReason("team-a_v2.strict"))
        XCTAssertEqual(PolicyName.invalidReason(""), "empty")
        XCTAssertEqual(PolicyName.invalidReason("a/b"), "contains \"/\"")
        XCTAssertEqual(PolicyName.invalidReason(".."), "contains \"..\"")
        XCTAssertEqual(PolicyName.invalidReason("a..b"), "contains \"..\"")
        XCTAssertEqual(PolicyName.invalidReason(".web"), "starts with \".\"")
        XCTAssertEqual(PolicyName.invalidReason("-web"), "starts with \"-\"")
        XCTAssertEqual(PolicyName.invalidReason("web\u{0}"), "only A-Z a-z 0-9 _ . - are allowed")
        XCTAssertEqual(PolicyName.invalidReason(String(repeating: "a", count: 65)), "65 bytes, at most 64")
    }

    func testTheAnnotationWinsOverTheDefaultPolicy() throws {
        let directory = NSTemporaryDirectory() + "cni-policies-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for name in ["web", "base"] { FileManager.default.createFile(atPath: "\(directory)/\(name).policy", contents: Data()) }
        let annotated = try CNIConfig.parse(Array(#"""
            {"cniVersion":"1.1.0","name":"n","type":"airlock-cni","policyDirectory":"\#(directory)","defaultPolicy":"base",
             "runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"airlock.dev/policy":"web","other":"x"}}}
            """#.utf8))
        XCTAssertEqual(try annotated.policyFile(), "\(directory)/web.policy")
        let plain = try CNIConfig.parse(Array(#"{"cniVersion":"1.1.0","name":"n","type":"airlock-cni","policyDirectory":"\#(directory)","defaultPolicy":"base"}"#.utf8))
        XCTAssertEqual(try plain.policyFile(), "\(directory)/base.policy")
        let relative = try CNIConfig.parse(Array(#"{"cniVersion":"1.1.0","name":"n","type":"airlock-cni","policyDirectory":"policies","defaultPolicy":"base"}"#.utf8))
        XCTAssertThrowsError(try relative.policyFile()) { error in
            XCTAssertEqual((error as? CNIError)?.msg, "policyDirectory \"policies\" is not an absolute path")
        }
    }

    func testSandboxNameIsKAndTheContainerIdsFirstElevenLettersAndDigits() throws {
        XCTAssertEqual(try CNIPlugin.sandboxName("3f9a1c0b2d4e5f60718293a4b5c6d7e8").rawValue, "k3f9a1c0b2d4")
        XCTAssertEqual(try CNIPlugin.sandboxName("pod-1.a_b").rawValue, "kpod1ab")
        let environment = CNIEnvironment(command: "ADD", containerID: "-bad", netns: nil, ifname: nil, args: [:])
        XCTAssertThrowsError(try environment.requireContainerID()) { error in
            XCTAssertEqual((error as? CNIError)?.code, 4)
            XCTAssertEqual((error as? CNIError)?.msg, "CNI_CONTAINERID \"-bad\" is not a container id (A-Z a-z 0-9 _ . -)")
        }
    }

    func testTheResultKeepsThePreviousOneAndAddsTheAirlockInterface() throws {
        let config = try CNIConfig.parse(Array(#"""
            {"cniVersion":"1.0.0","name":"n","type":"airlock-cni","prevResult":{"cniVersion":"1.0.0",
             "interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:01:05","mtu":1450,"sandbox":"/var/run/netns/cni-1"}],
             "ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":0}],
             "routes":[{"dst":"0.0.0.0/0"}],"dns":{},"x-extra":{"kept":true}}}
            """#.utf8))
        let text = try CNIPlugin.result(config, netns: "/var/run/netns/cni-1", topology: config.topology(interface: "eth0"))
        let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let interfaces = try XCTUnwrap(result["interfaces"] as? [[String: Any]])
        XCTAssertEqual(interfaces.count, 2)
        XCTAssertEqual(interfaces[0]["mtu"] as? Int, 1450)
        XCTAssertEqual(interfaces[0]["mac"] as? String, "0a:58:0a:f4:01:05")
        XCTAssertEqual(interfaces[1] as? [String: String], ["name": "airlock0", "sandbox": "/var/run/netns/cni-1"])
        let ips = try XCTUnwrap(result["ips"] as? [[String: Any]])
        XCTAssertEqual(ips[0]["address"] as? String, "10.244.1.5/24")
        XCTAssertEqual(ips[1]["address"] as? String, "169.254.200.2/30")
        XCTAssertEqual(ips[1]["interface"] as? Int, 1)
        XCTAssertEqual(result["routes"] as? [[String: String]], [["dst": "169.254.200.1/32"]])
        XCTAssertEqual((result["x-extra"] as? [String: Bool]), ["kept": true])
    }
}
