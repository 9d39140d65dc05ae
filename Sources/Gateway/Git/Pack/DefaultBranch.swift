import NIOCore
import Synchronization
import GatewayCore

/// Which branch the upstream's `HEAD` names: the repository's default branch, which
/// airlock protects like the `--protect` patterns.
///
/// `git-receive-pack`'s advertisement does not say (it carries no `symref`), so airlock
/// asks upload-pack, with the push's own credential: `GET info/refs?service=git-upload-pack`
/// without `Git-Protocol`, so that every smart-HTTP server answers in protocol v0, whose
/// first ref line carries the capability `symref=HEAD:refs/heads/NAME`. Only that first
/// line is read (at most one pkt-line, 65,520 bytes); the connection is closed after it.
package enum DefaultBranch {
    /// Reads the default branch from the start of a v0 upload-pack advertisement; `nil`
    /// while its first ref line has not arrived.
    /// - Throws: `AncestryFailure` when the advertisement does not name one: an empty
    ///   repository, a detached `HEAD`, a protocol v2 answer, malformed bytes.
    package static func parse(_ bytes: [UInt8], ended: Bool) throws -> String? {
        func line(at offset: Int) throws -> (PktLine, next: Int)? {
            switch PktLine.read(bytes, at: offset) {
            case .needMore:
                guard !ended else { throw AncestryFailure("the upstream's advertisement ends early") }
                return nil
            case .malformed(let why):
                throw AncestryFailure("the upstream's advertisement is malformed (\(why))")
            case let .line(line, next):
                return (line, next)
            }
        }
        guard var first = try line(at: 0) else { return nil }
        // Smart HTTP puts `# service=git-upload-pack` and a flush before the refs.
        if case .data(let payload) = first.0, payload.starts(with: Array("# service=".utf8)) {
            guard let flush = try line(at: first.next) else { return nil }
            guard case .flush = flush.0 else { throw AncestryFailure("the upstream's advertisement is malformed") }
            guard let refs = try line(at: flush.next) else { return nil }
            first = refs
        }
        switch first.0 {
        case .data(let payload):
            if String(decoding: payload, as: UTF8.self).hasPrefix("version 2") {
                throw AncestryFailure("the upstream answered in protocol v2 where airlock asked for v0")
            }
            return try firstRefLine(payload)
        case .flush:
            throw AncestryFailure("the upstream repository is empty, so it has no default branch yet")
        case .delimiter, .responseEnd:
            throw AncestryFailure("the upstream's advertisement is malformed")
        }
    }

    /// The `symref=HEAD:…` capability of the first ref line (`<id> <name>\0<capabilities>`).
    private static func firstRefLine(_ payload: [UInt8]) throws -> String {
        guard let nul = payload.firstIndex(of: 0) else {
            throw AncestryFailure("the upstream's advertisement carries no capabilities")
        }
        let name = String(decoding: payload[..<nul], as: UTF8.self).split(separator: " ").dropFirst().first
        if name == "capabilities^{}" {
            throw AncestryFailure("the upstream repository is empty, so it has no default branch yet")
        }
        var capabilities = String(decoding: payload[(nul + 1)...], as: UTF8.self)
        if capabilities.hasSuffix("\n") { capabilities.removeLast() }
        guard let symref = capabilities.split(separator: " ").first(where: { $0.hasPrefix("symref=HEAD:") }) else {
            throw AncestryFailure("the upstream does not say which branch its HEAD names")
        }
        let ref = String(symref.dropFirst("symref=HEAD:".count))
        guard ReceivePackCommands.isRefName(ref) else {
            throw AncestryFailure("the upstream names a default branch that is not a valid ref (\(UploadPackAdvertisement.printable(ref)))")
        }
        return ref
    }

    /// Asks the upstream which ref its `HEAD` names, within `seconds`.
    /// - Returns: the full ref name (`refs/heads/trunk`), or the failure naming why it is not known.
    package static func ask(
        repository: UpstreamRepository, dialer: any UpstreamDialer, eventLoop: any EventLoop, seconds: Int = 10
    ) -> EventLoopFuture<Result<String, AncestryFailure>> {
        var bytes: [UInt8] = []
        var found: String?
        let request = AncestryClient.head(.GET, "\(repository.path)/info/refs?service=git-upload-pack", repository: repository, version2: false)
        return AncestryClient.exchange(
            request, body: nil, repository: repository, dialer: dialer, eventLoop: eventLoop,
            deadline: eventLoop.now + .seconds(Int64(seconds)), seconds: seconds,
            consume: { buffer in
                bytes += buffer.readableBytesView
                found = try parse(bytes, ended: false)
                if found == nil && bytes.count > maximumLength {
                    throw AncestryFailure("the upstream's advertisement does not name its refs within \(maximumLength) bytes")
                }
                return found != nil
            },
            finish: {
                if found == nil { found = try parse(bytes, ended: true) }
            })
            .flatMapThrowing { () -> Result<String, AncestryFailure> in
                guard let found else { throw AncestryFailure("the upstream's advertisement ends early") }
                return .success(found)
            }
            .flatMapErrorThrowing { error in
                if let failure = error as? AncestryFailure { return .failure(failure) }
                if let dial = error as? DialError { return .failure(AncestryFailure(dial.reason)) }
                return .failure(AncestryFailure("the connection to the upstream failed (\(error))"))
            }
    }

    /// The most of the advertisement read before its first ref line must have arrived:
    /// the service line, a flush and one pkt-line.
    package static let maximumLength = 2 * PktLine.maximumLength
}

/// The default branches airlock has learned, per repository, for a short while: a push
/// does not cost an extra question to the upstream each time, and a default branch
/// changed upstream is seen within `lifetime`. Bounded: at most `capacity` repositories;
/// when full, expired entries go first, then the one that expires soonest. Only answers
/// are kept, never failures.
package final class DefaultBranchCache: Sendable {
    /// How long an answer is used.
    package let lifetime: TimeAmount
    /// The most repositories remembered.
    package let capacity: Int
    private let entries = Mutex([String: (ref: String, until: NIODeadline)]())

    package init(lifetime: TimeAmount = .seconds(60), capacity: Int = 4096) {
        self.lifetime = lifetime
        self.capacity = max(1, capacity)
    }

    /// The default branch of `repository` learned less than `lifetime` ago.
    package func lookup(_ repository: String, now: NIODeadline = .now()) -> String? {
        entries.withLock { entries in
            guard let entry = entries[repository] else { return nil }
            guard entry.until > now else {
                entries[repository] = nil
                return nil
            }
            return entry.ref
        }
    }

    /// Remembers that `repository`'s default branch is `ref`.
    package func store(_ repository: String, ref: String, now: NIODeadline = .now()) {
        entries.withLock { entries in
            if entries[repository] == nil && entries.count >= capacity {
                entries = entries.filter { $0.value.until > now }
                if entries.count >= capacity, let soonest = entries.min(by: { $0.value.until < $1.value.until })?.key {
                    entries[soonest] = nil
                }
            }
            entries[repository] = (ref, now + lifetime)
        }
    }

    /// Repositories remembered now.
    package var count: Int { entries.withLock { $0.count } }
}
