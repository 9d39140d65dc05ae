import ArgumentParser
import Gateway
import GatewayCore

/// The push policy flags of `airlock run` and `airlock session create`.
struct PushOptions: PlainOptions {
    @Option(name: .customLong("protect"), help: ArgumentHelp("A branch (or refs/… pattern, * allowed) pushes may not update; repeatable; replaces the defaults main, master, release/*. The upstream's default branch is protected too; `none` protects nothing, that branch included.", valueName: "pattern"))
    var protect: [String] = []

    @Option(name: .customLong("push-refs"), help: ArgumentHelp("Push only to matching branches (e.g. 'agent/*'); repeatable.", valueName: "pattern"))
    var pushRefs: [String] = []

    @Option(name: .customLong("allow-force-push"), help: ArgumentHelp("Let pushes rewrite the history of matching branches (e.g. 'agent/*'); repeatable. Without it every update of an existing branch must be a fast-forward.", valueName: "pattern"))
    var allowForcePush: [String] = []

    @Option(name: .customLong("max-push-size"), help: ArgumentHelp("The most one push may send (bytes, or with K, M, G: 500M, 2G); default 2G. A larger push is refused (HTTP 413) and nothing of it is applied.", valueName: "size"))
    var maxPushSize: String?

    @Option(name: .customLong("push-rate"), help: ArgumentHelp("Pushes allowed per minute per session (30 or 30/min); default 30. More are refused (HTTP 429 with Retry-After).", valueName: "n/min"))
    var pushRate: String?

    /// The options above, for a plain line of `run` (PlainLine).
    static let plainOptions: [PlainOption<Self>] = [
        .values("protect") { $0.protect = $1 }, .values("push-refs") { $0.pushRefs = $1 },
        .values("allow-force-push") { $0.allowForcePush = $1 }, .value("max-push-size") { $0.maxPushSize = $1 },
        .value("push-rate") { $0.pushRate = $1 },
    ]

    func validate() throws {
        do {
            _ = try policy()
        } catch {
            throw ValidationError(String(describing: error))
        }
    }

    /// The policy these flags describe.
    /// - Throws: `RefPattern.Invalid` naming a bad pattern.
    func policy() throws -> PushPolicy {
        try PushPolicy(protect: protect, pushRefs: pushRefs, allowForcePush: allowForcePush, maxPushSize: maxPushSize, pushRate: pushRate)
    }
}
