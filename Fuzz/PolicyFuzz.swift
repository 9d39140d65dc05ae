import Gateway
import GatewayCore

/// The policy file parser (`Policy.parse`).
///
/// Invariants: an error is one line naming the source and a line of the text; the same
/// text with CRLF line ends parses the same; a parsed policy re-rendered from its rules
/// (each rule as written, each preset once) parses to the same rules.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).count
    let first = outcome(text)
    switch first {
    case .failure(let error):
        let shown = error.description
        invariant(shown.hasPrefix("fuzz.txt:") && !shown.contains("\n") && !shown.contains("\r"), "error not one line: \(shown)")
        invariant(error.line >= 1 && error.line <= lines, "error on line \(error.line) of \(lines)")
    case .success(let policy):
        let rendered = render(policy)
        guard case .success(let again) = outcome(rendered) else {
            invariant(false, "re-rendered policy does not parse:\n\(rendered)")
            return 0
        }
        invariant(summary(again) == summary(policy), "re-rendered policy parses to other rules:\n\(rendered)")
    }
    if !text.contains("\r") {
        let crlf = text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n")
        switch (first, outcome(crlf)) {
        case (.success(let a), .success(let b)): invariant(summary(a) == summary(b), "CRLF line ends change the rules")
        case (.failure(let a), .failure(let b)): invariant(a.line == b.line, "CRLF line ends move the error")
        default: invariant(false, "CRLF line ends change whether the policy parses")
        }
    }
    return 0
}

private func outcome(_ text: String) -> Result<Policy, PolicyError> {
    do {
        return .success(try Policy.parse(text, source: "fuzz.txt"))
    } catch let error as PolicyError {
        return .failure(error)
    } catch {
        fatalError("Policy.parse threw \(type(of: error)), not PolicyError")
    }
}

/// The policy as a file: each rule written in the file as it was written, presets by name.
private func render(_ policy: Policy) -> String {
    var lines = policy.presets.map { "@\($0)" }
    let rules = policy.allowRules + policy.denyRules + policy.cidrRules + policy.allowPrivateRules
        + policy.resolveRules.keys.sorted().map { policy.resolveRules[$0]! }
    lines += rules.filter { !$0.text.hasPrefix("@") }.map(\.text)
    return lines.joined(separator: "\n")
}

/// What a policy allows and denies, without where each rule came from.
private func summary(_ policy: Policy) -> [String] {
    func kinds(_ rules: [Rule]) -> String {
        // A set: a preset named twice lists its hosts twice, which allows nothing more.
        Set(rules.map { "\($0.kind) \($0.port.map(String.init) ?? "-") \($0.isDeny)" }).sorted().joined(separator: "; ")
    }
    return [kinds(policy.allowRules), kinds(policy.denyRules), kinds(policy.cidrRules), kinds(policy.allowPrivateRules),
            policy.resolveOverrides.keys.sorted().map { "\($0)=\(policy.resolveOverrides[$0]!)" }.joined(separator: " "),
            policy.presets.joined(separator: " ")]
}
