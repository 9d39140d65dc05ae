import FoundationEssentials
@testable import Netns
import XCTest

/// State files (`/run/airlock/NAME/state.json`) as `StateJSON` writes and reads them: the
/// same text Foundation's `JSONEncoder` wrote before (so older files read, and newer ones
/// read in older airlock), and refusals that name the member and the reason.
final class StateFileTests: XCTestCase {
    private func state(external: ExternalSandbox? = nil, version: String = "0.9.0", complete: Bool = true) throws -> SandboxState {
        SandboxState(
            name: try NamespaceName("sbx-1"),
            topology: try SandboxTopology(gatewayAddress: IPv4CIDR("10.77.0.1/30"), sandboxAddress: IPv4CIDR("10.77.0.2/30"),
                                          sandboxInterface: InterfaceName("eth0"), gatewayInterface: InterfaceName("gw-sbx")),
            createdAt: Date(timeIntervalSince1970: 1_796_473_620), airlockVersion: version,
            sandboxPin: "/run/netns/sbx-1", gatewayPin: "/run/netns/sbx-1.gw", complete: complete, external: external)
    }

    /// What the state file held when Foundation wrote it.
    private func foundationText(_ state: SandboxState) throws -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom(StateDate.encode)
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(state), as: UTF8.self)
    }

    private func foundationRead(_ text: String) throws -> SandboxState {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom(StateDate.decode)
        return try decoder.decode(SandboxState.self, from: Data(text.utf8))
    }

    private func refusal(_ text: String) -> String {
        do {
            _ = try SandboxState(fileText: Array(text.utf8))
            return "read"
        } catch {
            return "\(error)"
        }
    }

    func testItWritesWhatFoundationWroteAndReadsItBack() throws {
        let pod = ExternalSandbox(owner: "containerd", containerID: "c0ffee", network: "airlock-net", pod: "default/agent-7", policy: "agents")
        let odd = ExternalSandbox(owner: "crio \"quoted\" \\ back", containerID: "tab\there\nnew\u{01}\u{1F}", network: "ünï/cødé 😀",
                                  pod: nil, policy: nil)
        for sample in [try state(), try state(complete: false), try state(external: pod), try state(external: odd),
                       try state(version: "1.0.0-dev+\u{7F}")] {
            let text = sample.fileText
            XCTAssertEqual(text, try foundationText(sample))
            XCTAssertEqual(try SandboxState(fileText: Array(text.utf8)), sample)
            XCTAssertEqual(try foundationRead(text), sample)
        }
        XCTAssertEqual(try state().fileText, """
            {
              "airlockVersion" : "0.9.0",
              "complete" : true,
              "createdAt" : "2026-12-05T12:27:00Z",
              "gatewayPin" : "/run/netns/sbx-1.gw",
              "name" : "sbx-1",
              "sandboxPin" : "/run/netns/sbx-1",
              "topology" : {
                "gatewayAddress" : "10.77.0.1/30",
                "gatewayInterface" : "gw-sbx",
                "sandboxAddress" : "10.77.0.2/30",
                "sandboxInterface" : "eth0"
              }
            }
            """)
    }

    func testItOrdersKeysAndWritesEmptyContainersAsJSONEncoderDoes() throws {
        let keys = ["B", "a", "_x", "Ab", "ab", "a1", "a10", "a2", "é", "z"]
        var members: [String: StateJSON] = [:]
        for (position, key) in keys.enumerated() { members[key] = .number(String(position)) }
        members["z"] = .object(["empty": .array([]), "none": .object([:]), "list": .array([.bool(false), .null])])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        struct Inner: Encodable { var empty: [Int] = []; var none: [String: Int] = [:]; var list: [Bool?] = [false, nil] }
        struct Outer: Encodable {
            var values: [String: Int]
            func encode(to encoder: Encoder) throws {
                var container = encoder.container(keyedBy: Key.self)
                for (key, value) in values where key != "z" { try container.encode(value, forKey: Key(stringValue: key)) }
                try container.encode(Inner(), forKey: Key(stringValue: "z"))
            }
        }
        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        let values = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) })
        XCTAssertEqual(StateJSON.object(members).text, String(decoding: try encoder.encode(Outer(values: values)), as: UTF8.self))
    }

    func testItReadsAnyJSONOfTheSameMembers() throws {
        let expected = try state(external: ExternalSandbox(owner: "o", containerID: "c", network: "n", pod: nil, policy: "p/q"))
        // Compact, escaped slashes and letters, members in another order, null for absent
        // optionals, and members it does not know (kept by a newer airlock): as JSONDecoder read.
        let text = #"""
            {"topology":{"sandboxInterface":"eth0","gatewayInterface":"gw-sbx","gatewayAddress":"10.77.0.1\/30",
             "sandboxAddress":"10.77.0.2/30","mtu":1500},"name":"sbx\u002d1","complete":true,"createdAt":"2026-12-05T12:27:00Z",
             "airlockVersion":"0.9.0","sandboxPin":"\/run\/netns\/sbx-1","gatewayPin":"/run/netns/sbx-1.gw",
             "external":{"owner":"o","containerID":"c","network":"n","pod":null,"policy":"p\/q","labels":[1,-2.5e3,true,{}]},
             "future":{"nested":[[null]]}}
            """#
        XCTAssertEqual(try SandboxState(fileText: Array(text.utf8)), expected)
        XCTAssertEqual(try foundationRead(text), expected)
        XCTAssertEqual(try StateJSON.parse(Array(#""\u00e9\ud83d\ude00\/\b\f\r""#.utf8)), .string("é😀/\u{08}\u{0C}\r"))
    }

    func testItRefusesWhatIsNotAStateFileAndSaysWhere() throws {
        let good = try state().fileText
        XCTAssertEqual(refusal(""), "expected a value at byte 0")
        XCTAssertEqual(refusal("[]"), "the state is not an object")
        XCTAssertEqual(refusal(good + "x"), "unexpected text after the value at byte \(good.utf8.count)")
        XCTAssertEqual(refusal(String(good.dropLast())), "expected , or } at byte \(good.utf8.count - 1)")
        XCTAssertEqual(refusal(good.replacingOccurrences(of: "\"name\" : \"sbx-1\",\n", with: "")), "name: missing")
        XCTAssertEqual(refusal(good.replacingOccurrences(of: "\"sbx-1\"", with: "null")), "name: missing")
        XCTAssertEqual(refusal(good.replacingOccurrences(of: "\"complete\" : true", with: "\"complete\" : 1")),
                       "complete: missing or not true or false")
        XCTAssertEqual(refusal(good.replacingOccurrences(of: "\"sbx-1\"", with: "\"../etc\"")), "name: \(refusalOf { try NamespaceName("../etc") })")
        XCTAssertEqual(refusal(good.replacingOccurrences(of: "10.77.0.1/30", with: "10.77.0.1/33")),
                       "topology.gatewayAddress: \(refusalOf { try IPv4CIDR("10.77.0.1/33") })")
        XCTAssertTrue(refusal(good.replacingOccurrences(of: "10.77.0.1/30", with: "10.78.0.1/30")).hasPrefix("topology: "))
        XCTAssertEqual(refusal(good.replacingOccurrences(of: "2026-12-05T12:27:00Z", with: "2026-02-30T12:27:00Z")),
                       "createdAt: not an ISO 8601 date")
        let twice = good.replacingOccurrences(of: "\"sandboxPin\"", with: "\"name\"")
        let second = twice.utf8.count - twice.split(separator: "\"name\" : \"/run").last!.utf8.count - "\"name\" : \"/run".utf8.count
        XCTAssertEqual(refusal(twice), "key \"name\" given twice at byte \(second)")
        let pod = try state(external: ExternalSandbox(owner: "o", containerID: "c", network: "n", pod: "p", policy: nil)).fileText
        XCTAssertEqual(refusal(pod.replacingOccurrences(of: "\"network\" : \"n\"", with: "\"network\" : 7")), "external.network: not a string")
        XCTAssertEqual(refusal(pod.replacingOccurrences(of: "\"pod\" : \"p\"", with: "\"pod\" : false")), "external.pod: not a string")
        XCTAssertEqual(refusal(#"{"name":"a\u0000"#), "unterminated string at byte 16")
        XCTAssertEqual(refusal(#"{"name":"\ud800x"}"#), "a lone surrogate at byte 15")
        XCTAssertEqual(refusal(#"{"name":"\q"}"#), "an unknown escape at byte 9")
        XCTAssertEqual(refusal("{\"name\":\"a\tb\"}"), "a control character in a string at byte 10")
        XCTAssertEqual(refusal(#"{"n":01}"#), "expected , or } at byte 6")
        XCTAssertEqual(refusal(#"{"n":-}"#), "expected a digit at byte 6")
        XCTAssertEqual(refusal(#"{"n":tru}"#), "expected true at byte 5")
        XCTAssertEqual(refusal(String(repeating: "[", count: 40)), "nested deeper than 32 levels at byte 32")
        var invalid = Array(#"{"name":"x"}"#.utf8)
        invalid[9] = 0xFF
        XCTAssertThrowsError(try SandboxState(fileText: invalid)) {
            XCTAssertEqual("\($0)", "a string that is not UTF-8 at byte 8")
        }
    }

    private func refusalOf(_ make: () throws -> Any) -> String {
        do {
            _ = try make()
            return "accepted"
        } catch {
            return "\(error)"
        }
    }
}
