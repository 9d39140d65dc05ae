import NIOCore
import GatewayCore

/// Asks the upstream `AncestryQuestion`s on the client connection's event loop with the
/// forwarder's dialer: for each, whether the upstream proves it, or why it could not ask.
package typealias AncestryAsker = @Sendable (_ questions: [AncestryQuestion], _ eventLoop: any EventLoop, _ dialer: any UpstreamDialer)
    -> EventLoopFuture<[Result<Bool, AncestryFailure>]>

/// Learns the upstream's default branch (the full ref its `HEAD` names) on the client
/// connection's event loop with the forwarder's dialer, or why it cannot.
package typealias DefaultBranchAsker = @Sendable (_ eventLoop: any EventLoop, _ dialer: any UpstreamDialer)
    -> EventLoopFuture<Result<String, AncestryFailure>>

/// Checks the history of a push while its body streams upstream: reads the command
/// section again (the body check before the dial already passed it), then, when an update
/// moves an existing ref, the pack with `PackReader`; at the body's end each such update
/// must be proven fast-forward (`PushHistory`): by the pack, or else by the upstream's
/// answer to an `AncestryQuestion` (asked before the body's held tail goes upstream). A
/// pack it cannot read, or a question the upstream does not answer, refuses the push.
/// Pushes that only create refs are not read further. With `defaultBranch` set, every
/// push that names a ref also learns the upstream's default branch at the body's end and
/// is refused when it updates that branch, or when the branch cannot be learned.
package final class ReceivePackInspector: RequestBodyInspector {
    /// What proved the checked updates of a passed push fast-forward.
    package enum Proof: String, Sendable {
        /// The pushed pack alone.
        case pack
        /// The upstream's answer, for at least one update.
        case upstream
    }

    private enum State {
        case commands([UInt8])
        case pack(PackReader)
        /// The pack is not read, but the decision waits for the body's end.
        case awaitingEnd
        case passing
        case refused
    }

    private var state = State.commands([])
    private var updates: [RefUpdate] = []
    private var capabilities: [String] = []
    private let limits: PackReader.Limits
    private let checks: @Sendable (RefUpdate) -> Bool
    private let refuse: @Sendable (_ updates: [RefUpdate], _ refusals: [PushPolicy.Refusal], _ capabilities: [String]) -> LocalResponse
    private let ask: AncestryAsker?
    private let passed: (@Sendable (Proof) -> Void)?
    private let defaultBranch: DefaultBranchAsker?
    private let protectsDefaultBranch: @Sendable ([RefUpdate], String) -> [PushPolicy.Refusal]

    /// - Parameters:
    ///   - limits: the pack reader's bounds.
    ///   - checks: which updates must be proven fast-forward (`PushPolicy.checksHistory`).
    ///   - ask: asks the upstream what the pack does not prove; `nil` refuses those updates.
    ///   - passed: told how a push with checked updates was proven, when it passes.
    ///   - defaultBranch: learns the upstream's default branch; `nil` does not ask.
    ///   - defaultBranchRefusals: the refused updates, given the default branch
    ///     (`PushPolicy.defaultBranchRefusals`).
    ///   - refuse: makes (and audits) the answer to a refused push.
    package init(
        limits: PackReader.Limits = PackReader.Limits(),
        checks: @escaping @Sendable (RefUpdate) -> Bool = { PushHistory.isChecked($0) },
        ask: AncestryAsker? = nil,
        passed: (@Sendable (Proof) -> Void)? = nil,
        defaultBranch: DefaultBranchAsker? = nil,
        defaultBranchRefusals: @escaping @Sendable ([RefUpdate], String) -> [PushPolicy.Refusal] = { PushPolicy.standard.defaultBranchRefusals($0, defaultBranch: $1) },
        refuse: @escaping @Sendable (_ updates: [RefUpdate], _ refusals: [PushPolicy.Refusal], _ capabilities: [String]) -> LocalResponse
    ) {
        self.limits = limits
        self.checks = checks
        self.ask = ask
        self.passed = passed
        self.defaultBranch = defaultBranch
        self.protectsDefaultBranch = defaultBranchRefusals
        self.refuse = refuse
    }

    package func inspect(_ chunk: ByteBuffer) -> LocalResponse? {
        switch state {
        case .commands(var bytes):
            bytes += chunk.readableBytesView
            switch ReceivePackCommands.parse(bytes) {
            case .needMore:
                state = .commands(bytes)
                return nil
            case .malformed(let why):
                return refuseAll("cannot check this push: \(why)")
            case let .complete(updates, capabilities, length):
                self.updates = updates
                self.capabilities = capabilities
                guard let checked = updates.first(where: checks) else {
                    state = defaultBranch != nil && !updates.isEmpty ? .awaitingEnd : .passing
                    return nil
                }
                guard let format = ObjectFormat(hexLength: checked.old.utf8.count) else {
                    return refuseAll("cannot check this push: unknown object format")
                }
                let reader = PackReader(format: format, limits: limits)
                state = .pack(reader)
                return read(Array(bytes[length...]), into: reader)
            }
        case .pack(let reader):
            return chunk.withUnsafeReadableBytes { bytes in
                do {
                    try reader.consume(bytes)
                    return nil
                } catch {
                    return refuseAll("cannot check this push's history: \(error)")
                }
            }
        case .awaitingEnd, .passing, .refused:
            return nil
        }
    }

    package func finish() -> InspectorDecision {
        switch state {
        case .commands:
            return .refuse(refuseAll("cannot check this push: it ended inside its commands"))
        case .pack(let reader):
            do {
                try reader.finish()
            } catch {
                return .refuse(refuseAll("cannot check this push's history: \(error)"))
            }
            return decide(commits: reader.commits)
        case .awaitingEnd:
            return decide(commits: [:])
        case .passing, .refused:
            return .pass
        }
    }

    /// The decision once the pack is read: refused at once when the pack alone refuses an
    /// update; else passed when it proves every one and no default branch is to be
    /// learned; else pending the upstream's answers: the default branch first, then the
    /// ancestry questions.
    private func decide(commits: [String: PackReader.Commit]) -> InspectorDecision {
        let checked = updates.filter(checks)
        var refusals: [PushPolicy.Refusal] = []
        var asked: [(ref: String, question: AncestryQuestion)] = []
        if ask != nil {
            for update in checked {
                switch PushHistory.finding(update, commits: commits) {
                case .proven: break
                case .refused(let reason): refusals.append(PushPolicy.Refusal(ref: update.ref, reason: reason))
                case .ask(let question): asked.append((update.ref, question))
                }
            }
        } else {
            refusals = PushHistory.refusals(checked, commits: commits)
        }
        guard refusals.isEmpty else { return .refuse(refused(refusals)) }
        let proof: Proof? = checked.isEmpty ? nil : asked.isEmpty ? .pack : .upstream
        let learnsDefaultBranch = defaultBranch != nil && !updates.isEmpty
        guard learnsDefaultBranch || !asked.isEmpty else { return pass(proof) }
        state = .refused
        let (updates, capabilities, refuse, passed) = (self.updates, self.capabilities, self.refuse, self.passed)
        let (ask, defaultBranch, defaultBranchRefusals) = (self.ask, self.defaultBranch, self.protectsDefaultBranch)
        let questions = asked
        return .pending { eventLoop, dialer in
            let branch: EventLoopFuture<Result<String, AncestryFailure>?> = defaultBranch.map { $0(eventLoop, dialer).map { Optional.some($0) } }
                ?? eventLoop.makeSucceededFuture(nil)
            return branch.flatMap { branch -> EventLoopFuture<LocalResponse?> in
                switch branch {
                case .success(let ref)?:
                    let refusals = defaultBranchRefusals(updates, ref)
                    guard refusals.isEmpty else { return eventLoop.makeSucceededFuture(refuse(updates, refusals, capabilities)) }
                case .failure(let failure)?:
                    let reason = PushPolicy.unknownDefaultBranchReason(failure.description)
                    return eventLoop.makeSucceededFuture(refuse(updates, updates.map { PushPolicy.Refusal(ref: $0.ref, reason: reason) }, capabilities))
                case nil:
                    break
                }
                guard let ask, !questions.isEmpty else {
                    if let proof { passed?(proof) }
                    return eventLoop.makeSucceededFuture(nil)
                }
                return ask(questions.map(\.question), eventLoop, dialer).map { answers in
                    var refusals: [PushPolicy.Refusal] = []
                    for (index, item) in questions.enumerated() {
                        let answer = index < answers.count ? answers[index] : .failure(AncestryFailure("no answer"))
                        switch answer {
                        case .success(true): break
                        case .success(false): refusals.append(PushPolicy.Refusal(ref: item.ref, reason: PushHistory.reason(old: item.question.old)))
                        case .failure(let failure):
                            refusals.append(PushPolicy.Refusal(ref: item.ref, reason: PushHistory.unansweredReason(old: item.question.old, failure)))
                        }
                    }
                    guard refusals.isEmpty else { return refuse(updates, refusals, capabilities) }
                    passed?(.upstream)
                    return nil
                }
            }
        }
    }

    private func pass(_ proof: Proof?) -> InspectorDecision {
        state = .passing
        if let proof { passed?(proof) }
        return .pass
    }

    private func refused(_ refusals: [PushPolicy.Refusal]) -> LocalResponse {
        state = .refused
        return refuse(updates, refusals, capabilities)
    }

    private func read(_ bytes: [UInt8], into reader: PackReader) -> LocalResponse? {
        do {
            try reader.consume(bytes)
            return nil
        } catch {
            return refuseAll("cannot check this push's history: \(error)")
        }
    }

    /// Refuses every checked update (every update when none is) for `reason`.
    private func refuseAll(_ reason: String) -> LocalResponse {
        state = .refused
        let checked = updates.filter(checks)
        let named = checked.isEmpty ? updates : checked
        return refuse(updates, named.map { PushPolicy.Refusal(ref: $0.ref, reason: reason) }, capabilities)
    }
}
