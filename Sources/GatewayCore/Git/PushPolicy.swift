/// A pattern of ref names: `main`, `release/*`, `agent/*` name branches (`refs/heads/…`);
/// a pattern starting with `refs/` names any ref. `*` matches any run of characters,
/// slashes included.
package struct RefPattern: Hashable, Sendable, CustomStringConvertible {
    /// The full pattern, `refs/heads/release/*`.
    package let pattern: String
    /// As it was given.
    package let description: String

    /// Why a pattern was refused.
    package struct Invalid: Error, Equatable, CustomStringConvertible {
        package var description: String
    }

    /// - Throws: `Invalid` for an empty pattern or one with characters refs never hold.
    package init(_ text: String) throws {
        guard !text.isEmpty, text.utf8.count <= 256,
              text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\\") && $0 != UInt8(ascii: ":") })
        else { throw Invalid(description: "ref pattern '\(text)' is not valid (a branch such as main or release/*, or refs/…)") }
        description = text
        pattern = text.hasPrefix("refs/") ? text : "refs/heads/" + text
    }

    /// A branch pattern airlock itself names (the defaults); never fails.
    init(branch: String) {
        description = branch
        pattern = "refs/heads/" + branch
    }

    /// Whether `ref` (a full ref name) matches.
    package func matches(_ ref: String) -> Bool {
        Self.glob(Array(pattern.utf8)[...], Array(ref.utf8)[...])
    }

    private static func glob(_ pattern: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Bool {
        guard let first = pattern.first else { return text.isEmpty }
        if first == UInt8(ascii: "*") {
            let rest = pattern.dropFirst()
            var candidate = text
            while true {
                if glob(rest, candidate) { return true }
                guard !candidate.isEmpty else { return false }
                candidate = candidate.dropFirst()
            }
        }
        guard text.first == first else { return false }
        return glob(pattern.dropFirst(), text.dropFirst())
    }
}

/// What a session may push, checked on the command section of every `git-receive-pack`
/// before anything reaches the upstream.
///
/// - No ref is deleted (branches and tags alike).
/// - Protected refs are never updated: by default `main`, `master` and `release/*`, and
///   always the upstream's default branch (the branch its `HEAD` names, asked of the
///   upstream as the push streams) unless the session protects nothing (`--protect none`).
/// - With `allowed` set (`--push-refs 'agent/*'`), only matching refs are pushed at all.
///
/// History rewrites are judged later, from the pushed pack's commits, as the push streams
/// upstream (`ReceivePackInspector`, `PushHistory`).
package struct PushPolicy: Equatable, Sendable {
    /// Refs that are never updated.
    package var protected: [RefPattern]
    /// When set, the only refs that may be pushed.
    package var allowed: [RefPattern]?
    /// Refs whose history may be rewritten (`--allow-force-push`): updates to them are not
    /// checked for fast-forward. Empty by default: every update must be a fast-forward.
    package var rewritable: [RefPattern] = []
    /// Whether the upstream's default branch is protected too. True unless `--protect
    /// none`: a session that protects nothing protects that branch neither, and airlock
    /// does not ask the upstream which it is.
    package var protectsDefaultBranch = true
    /// The most bytes one push's body may carry (`--max-push-size`); more is refused with
    /// `413`. 2 GiB by default: GitHub's own limit for one push, far above what source
    /// code needs, and low enough that a runaway agent cannot stream without end.
    package var maxPushBytes: Int64 = PushPolicy.defaultMaxPushBytes
    /// The most pushes one session makes in any minute (`--push-rate`); more are refused
    /// with `429` and `Retry-After`. 30 by default: a push every two seconds is more than
    /// any agent's edit–test–push loop, and far less than one that pushes in a loop.
    package var pushesPerMinute: Int = PushPolicy.defaultPushesPerMinute

    /// The default `maxPushBytes`: 2 GiB.
    package static let defaultMaxPushBytes: Int64 = 2 << 30
    /// The default `pushesPerMinute`.
    package static let defaultPushesPerMinute = 30
    /// The highest `--push-rate`.
    package static let maximumPushesPerMinute = 10_000

    /// The default protected branches.
    package static let defaultProtected = ["main", "master", "release/*"]

    /// The default: `main`, `master` and `release/*` protected, any other branch pushable.
    package static let standard = PushPolicy(protected: defaultProtected.map(RefPattern.init(branch:)), allowed: nil)

    package init(protected: [RefPattern], allowed: [RefPattern]?) {
        self.protected = protected
        self.allowed = allowed
    }

    /// The policy the flags describe: `--protect` replaces the default protected
    /// branches (`--protect none` protects nothing), `--push-refs` limits pushes to the
    /// matching refs, `--allow-force-push` lets the matching refs be rewritten.
    /// `maxPushSize` (`2G`, `500M`, bytes) and `pushRate` (`30` or `30/min`) replace the
    /// defaults when given.
    /// - Throws: `RefPattern.Invalid` naming a bad pattern or limit.
    package init(protect: [String], pushRefs: [String], allowForcePush: [String] = [], maxPushSize: String? = nil, pushRate: String? = nil) throws {
        rewritable = try allowForcePush.map { try RefPattern($0) }
        if let maxPushSize { maxPushBytes = try Self.size(maxPushSize) }
        if let pushRate { pushesPerMinute = try Self.rate(pushRate) }
        if protect.isEmpty {
            protected = PushPolicy.standard.protected
        } else if protect == ["none"] {
            protected = []
            protectsDefaultBranch = false
        } else {
            protected = try protect.map { try RefPattern($0) }
        }
        allowed = pushRefs.isEmpty ? nil : try pushRefs.map { try RefPattern($0) }
    }

    /// Reads a size: a whole number of bytes, or with `K`, `M`, `G` (binary: 1024, …),
    /// optionally followed by `iB` or `B`; at least 1 byte, at most 1 TiB.
    /// - Throws: `RefPattern.Invalid` naming the text.
    package static func size(_ text: String) throws -> Int64 {
        let invalid = RefPattern.Invalid(description: "push size '\(text.prefix(40))' is not valid (bytes, or a number with K, M or G, such as 500M or 2G, up to 1T)")
        var unit = Substring(text)
        let digits = unit.prefix { $0.isASCII && $0.isNumber }
        unit = unit.dropFirst(digits.count)
        guard !digits.isEmpty, digits.count <= 13, let number = Int64(digits) else { throw invalid }
        let shifts: [String: Int64] = ["": 0, "B": 0, "K": 10, "KB": 10, "KIB": 10, "M": 20, "MB": 20, "MIB": 20, "G": 30, "GB": 30, "GIB": 30, "T": 40, "TB": 40, "TIB": 40]
        guard let shift = shifts[unit.uppercased()] else { throw invalid }
        let bytes = number << shift
        guard number >= 1, bytes >> shift == number, bytes <= 1 << 40 else { throw invalid }
        return bytes
    }

    /// Reads a push rate: pushes per minute, `30` or `30/min`, from 1 to 10,000.
    /// - Throws: `RefPattern.Invalid` naming the text.
    package static func rate(_ text: String) throws -> Int {
        let number = text.hasSuffix("/min") ? String(text.dropLast(4)) : text
        guard number.utf8.count <= 6, number.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let rate = Int(number),
              (1...maximumPushesPerMinute).contains(rate) else {
            throw RefPattern.Invalid(description: "push rate '\(text.prefix(40))' is not valid (pushes per minute, 1 to \(maximumPushesPerMinute), such as 30 or 30/min)")
        }
        return rate
    }

    /// One refused update: the ref and why.
    package struct Refusal: Equatable, Sendable {
        package var ref: String
        package var reason: String

        package init(ref: String, reason: String) {
            self.ref = ref
            self.reason = reason
        }
    }

    /// Whether `update` must be proven fast-forward: it moves an existing ref that is not
    /// one the policy lets be rewritten.
    package func checksHistory(of update: RefUpdate) -> Bool {
        update.movesExistingRef && !rewritable.contains { $0.matches(update.ref) }
    }

    /// The updates to `defaultBranch` (the full ref the upstream's `HEAD` names), of any
    /// kind, fast-forwards included; none when the policy does not protect it.
    package func defaultBranchRefusals(_ updates: [RefUpdate], defaultBranch: String) -> [Refusal] {
        guard protectsDefaultBranch else { return [] }
        return updates.filter { $0.ref == defaultBranch }.map { update in
            Refusal(ref: update.ref, reason: Self.defaultBranchReason(update.ref))
        }
    }

    /// Why an update of the upstream's default branch is refused.
    package static func defaultBranchReason(_ ref: String) -> String {
        let name = ref.hasPrefix("refs/heads/") ? String(ref.dropFirst("refs/heads/".count)) : ref
        return "\(name) is the upstream's default branch and protected by airlock; push another branch and open a pull request"
    }

    /// Why a push is refused when the upstream's default branch cannot be learned: an
    /// update of it cannot be told apart from the others (fail closed).
    package static func unknownDefaultBranchReason(_ cause: String) -> String {
        "airlock cannot tell which branch is the upstream's default (it is protected): \(cause)"
    }

    /// The updates this policy refuses, in order; empty when the whole push may go on.
    package func refusals(_ updates: [RefUpdate]) -> [Refusal] {
        updates.compactMap { update in
            if update.isDeletion {
                return Refusal(ref: update.ref, reason: "deleting refs is not allowed through airlock")
            }
            if let allowed, !allowed.contains(where: { $0.matches(update.ref) }) {
                let names = allowed.map(\.description).joined(separator: ", ")
                return Refusal(ref: update.ref, reason: "this session pushes only to \(names)")
            }
            if let rule = protected.first(where: { $0.matches(update.ref) }) {
                return Refusal(ref: update.ref, reason: "\(rule) is protected by airlock; push another branch and open a pull request")
            }
            return nil
        }
    }
}
