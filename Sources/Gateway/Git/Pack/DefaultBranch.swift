import NIOCore
import NIOHTTP1
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
    ///   repository (`emptyRepository`, which `ask` follows with the `unborn` question), a
    ///   detached `HEAD`, a protocol v2 answer, malformed bytes.
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
            throw DefaultBranch.emptyRepository
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
            throw DefaultBranch.emptyRepository
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

    /// What a v0 advertisement without refs means: the repository has no branch yet.
    package static let emptyRepository = AncestryFailure("the upstream repository is empty, so it has no default branch yet")

    /// The protocol v2 `ls-refs` request that names `HEAD`'s target even while that branch
    /// does not exist yet (`unborn`, git 2.31 and later, GitHub): what an empty repository
    /// will make its default branch.
    package static let unbornRequest: [UInt8] =
        PktLine.encode(Array("command=ls-refs\n".utf8)) + Array("0001".utf8)
        + PktLine.encode(Array("symrefs\n".utf8)) + PktLine.encode(Array("unborn\n".utf8))
        + PktLine.encode(Array("ref-prefix HEAD\n".utf8)) + PktLine.flushBytes

    /// Reads `HEAD`'s target from an `ls-refs` answer (`unborn HEAD symref-target:REF` or
    /// `<id> HEAD symref-target:REF`, then a flush); `nil` while it has not ended.
    /// - Throws: `AncestryFailure` when it names none (a server without `unborn`).
    package static func parseUnborn(_ bytes: [UInt8], ended: Bool) throws -> String? {
        var offset = 0
        var target: String?
        while true {
            switch PktLine.read(bytes, at: offset) {
            case .needMore:
                guard !ended else { throw AncestryFailure("the upstream's answer ends early") }
                return nil
            case .malformed(let why):
                throw AncestryFailure("the upstream's answer is malformed (\(why))")
            case .line(.flush, _):
                guard let target else {
                    throw AncestryFailure("the upstream repository is empty and does not say which branch it will make its default")
                }
                return target
            case .line(.data(let payload), let next):
                offset = next
                var text = String(decoding: payload, as: UTF8.self)
                if text.hasSuffix("\n") { text.removeLast() }
                let fields = text.split(separator: " ")
                guard fields.count >= 3, fields[1] == "HEAD",
                      let symref = fields.dropFirst(2).first(where: { $0.hasPrefix("symref-target:") }) else { continue }
                let ref = String(symref.dropFirst("symref-target:".count))
                if !ReceivePackCommands.isRefName(ref) {
                    throw AncestryFailure("the upstream names a default branch that is not a valid ref (\(UploadPackAdvertisement.printable(ref)))")
                }
                target = ref
            case .line:
                throw AncestryFailure("the upstream's answer is malformed")
            }
        }
    }

    /// Asks the upstream which ref its `HEAD` names, within `seconds`: the v0 advertisement,
    /// and for an empty repository the v2 `unborn` question.
    /// - Returns: the full ref name (`refs/heads/trunk`), or the failure naming why it is not known.
    package static func ask(
        repository: UpstreamRepository, dialer: any UpstreamDialer, eventLoop: any EventLoop, seconds: Int = 10
    ) -> EventLoopFuture<Result<String, AncestryFailure>> {
        let deadline = eventLoop.now + .seconds(Int64(seconds))
        return askAdvertisement(repository: repository, dialer: dialer, eventLoop: eventLoop, deadline: deadline, seconds: seconds)
            .flatMap { result in
                guard case .failure(emptyRepository) = result else { return eventLoop.makeSucceededFuture(result) }
                return askUnborn(repository: repository, dialer: dialer, eventLoop: eventLoop, deadline: deadline, seconds: seconds)
            }
    }

    private static func askUnborn(
        repository: UpstreamRepository, dialer: any UpstreamDialer, eventLoop: any EventLoop, deadline: NIODeadline, seconds: Int
    ) -> EventLoopFuture<Result<String, AncestryFailure>> {
        var request = AncestryClient.head(.POST, "\(repository.path)/git-upload-pack", repository: repository, version2: true)
        request.headers.add(name: "Content-Type", value: "application/x-git-upload-pack-request")
        request.headers.add(name: "Accept", value: "application/x-git-upload-pack-result")
        request.headers.add(name: "Content-Length", value: String(unbornRequest.count))
        return askOnce(request, body: unbornRequest, answer: "answer", naming: "HEAD", parse: parseUnborn,
                       repository: repository, dialer: dialer, eventLoop: eventLoop, deadline: deadline, seconds: seconds)
    }

    private static func askAdvertisement(
        repository: UpstreamRepository, dialer: any UpstreamDialer, eventLoop: any EventLoop, deadline: NIODeadline, seconds: Int
    ) -> EventLoopFuture<Result<String, AncestryFailure>> {
        let request = AncestryClient.head(.GET, "\(repository.path)/info/refs?service=git-upload-pack", repository: repository, version2: false)
        return askOnce(request, body: nil, answer: "advertisement", naming: "its refs", parse: parse,
                       repository: repository, dialer: dialer, eventLoop: eventLoop, deadline: deadline, seconds: seconds)
    }

    /// One request to the upstream whose answer `parse` reads as it arrives (nil: not yet),
    /// within `maximumLength` bytes; `answer` and `naming` word the failures.
    private static func askOnce(
        _ request: HTTPRequestHead, body: [UInt8]?, answer: String, naming: String,
        parse: @escaping ([UInt8], Bool) throws -> String?,
        repository: UpstreamRepository, dialer: any UpstreamDialer, eventLoop: any EventLoop, deadline: NIODeadline, seconds: Int
    ) -> EventLoopFuture<Result<String, AncestryFailure>> {
        var bytes: [UInt8] = []
        var found: String?
        return AncestryClient.exchange(
            request, body: body, repository: repository, dialer: dialer, eventLoop: eventLoop,
            deadline: deadline, seconds: seconds,
            consume: { buffer in
                bytes += buffer.readableBytesView
                found = try parse(bytes, false)
                if found == nil && bytes.count > maximumLength {
                    throw AncestryFailure("the upstream's \(answer) does not name \(naming) within \(maximumLength) bytes")
                }
                return found != nil
            },
            finish: {
                if found == nil { found = try parse(bytes, true) }
            })
            .map { found.map { .success($0) } ?? .failure(AncestryFailure("the upstream's \(answer) ends early")) }
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

/// The default branches airlock has learned, per repository, for 60 seconds: a push does
/// not cost an extra question to the upstream each time, and a default branch changed
/// upstream is seen within a minute. At most 4,096 repositories. Only answers are kept,
/// never failures.
package typealias DefaultBranchCache = ExpiringCache<String>

extension ExpiringCache where Value == String {
    /// 60 s, at most 4,096 repositories.
    package static func defaultBranches(
        clock: @escaping @Sendable () -> Double = DenialBudget.monotonicClock
    ) -> DefaultBranchCache {
        DefaultBranchCache(lifetime: 60, capacity: 4096, clock: clock)
    }
}
