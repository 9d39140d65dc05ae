import NIOCore
import GatewayCore

/// Checks the history of a push while its body streams upstream: reads the command
/// section again (the body check before the dial already passed it), then, when an update
/// moves an existing ref, the pack with `PackReader`; at the body's end each such update
/// must be proven fast-forward (`PushHistory`). A pack it cannot read refuses the push.
/// Pushes that only create refs are not read further.
package final class ReceivePackInspector: RequestBodyInspector {
    private enum State {
        case commands([UInt8])
        case pack(PackReader)
        case passing
        case refused
    }

    private var state = State.commands([])
    private var updates: [RefUpdate] = []
    private var capabilities: [String] = []
    private let limits: PackReader.Limits
    private let checks: @Sendable (RefUpdate) -> Bool
    private let refuse: @Sendable (_ updates: [RefUpdate], _ refusals: [PushPolicy.Refusal], _ capabilities: [String]) -> LocalResponse

    /// - Parameters:
    ///   - limits: the pack reader's bounds.
    ///   - checks: which updates must be proven fast-forward (`PushPolicy.checksHistory`).
    ///   - refuse: makes (and audits) the answer to a refused push.
    package init(
        limits: PackReader.Limits = PackReader.Limits(),
        checks: @escaping @Sendable (RefUpdate) -> Bool = PushHistory.isChecked,
        refuse: @escaping @Sendable (_ updates: [RefUpdate], _ refusals: [PushPolicy.Refusal], _ capabilities: [String]) -> LocalResponse
    ) {
        self.limits = limits
        self.checks = checks
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
                    state = .passing
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
        case .passing, .refused:
            return nil
        }
    }

    package func finish() -> LocalResponse? {
        switch state {
        case .commands:
            return refuseAll("cannot check this push: it ended inside its commands")
        case .pack(let reader):
            do {
                try reader.finish()
            } catch {
                return refuseAll("cannot check this push's history: \(error)")
            }
            let refusals = PushHistory.refusals(updates.filter(checks), commits: reader.commits)
            guard !refusals.isEmpty else {
                state = .passing
                return nil
            }
            state = .refused
            return refuse(updates, refusals, capabilities)
        case .passing, .refused:
            return nil
        }
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
