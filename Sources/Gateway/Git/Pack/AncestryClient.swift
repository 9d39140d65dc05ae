import NIOCore
import NIOHTTP1
import NIOSSL
import GatewayCore

/// The upstream repository a push goes to, as the ancestry question needs it: the same
/// target, path and credential as the push itself, and nothing else.
package struct UpstreamRepository: Sendable {
    /// Where the push is dialled.
    package var target: UpstreamTarget
    /// The `Host` header value.
    package var hostHeader: String
    /// The repository's path on the upstream (`/owner/repo.git`, after any base path).
    package var path: String
    /// The session's upstream credential.
    package var token: Secret

    package init(target: UpstreamTarget, hostHeader: String, path: String, token: Secret) {
        self.target = target
        self.hostHeader = hostHeader
        self.path = path
        self.token = token
    }
}

/// Asks the upstream `AncestryQuestion`s: `GET info/refs?service=git-upload-pack` (with
/// `Git-Protocol: version=2`) to learn how the server speaks, then one
/// `POST git-upload-pack` per question, each answer streamed into an `AncestryAnswer`.
/// Everything goes to the push's own repository with the session's credential, and the
/// whole exchange is bounded in bytes, commits and time (`AncestryAnswer.Limits`). Any
/// failure (a status other than 200, a malformed or oversized answer, a timeout, a
/// connection that fails) is that question's `AncestryFailure`, never a pass.
package enum AncestryClient {
    /// The `User-Agent` sent upstream (GitHub serves smart HTTP to `git/…` agents only).
    package static let userAgent = "git/airlock"

    /// Answers each of `questions` in order: whether the upstream proves it, or why it
    /// could not be asked.
    package static func ask(
        _ questions: [AncestryQuestion], repository: UpstreamRepository, dialer: any UpstreamDialer,
        eventLoop: any EventLoop, limits: AncestryAnswer.Limits = AncestryAnswer.Limits()
    ) -> EventLoopFuture<[Result<Bool, AncestryFailure>]> {
        let deadline = eventLoop.now + .seconds(Int64(limits.seconds))
        return advertisement(repository: repository, dialer: dialer, eventLoop: eventLoop, deadline: deadline, seconds: limits.seconds)
            .flatMap { advertisement -> EventLoopFuture<[Result<Bool, AncestryFailure>]> in
                var results: [Result<Bool, AncestryFailure>] = []
                var chain = eventLoop.makeSucceededVoidFuture()
                for question in questions {
                    chain = chain.flatMap {
                        answer(question, advertisement: advertisement, repository: repository, dialer: dialer,
                               eventLoop: eventLoop, deadline: deadline, limits: limits)
                            .map { results.append(.success($0)) }
                            .flatMapErrorThrowing { results.append(.failure(failure($0))) }
                    }
                }
                return chain.map { results }
            }
            .flatMapErrorThrowing { error in questions.map { _ in .failure(failure(error)) } }
    }

    private static func failure(_ error: Error) -> AncestryFailure {
        if let failure = error as? AncestryFailure { return failure }
        if let dial = error as? DialError { return AncestryFailure(dial.reason) }
        return AncestryFailure("the connection to the upstream failed (\(error))")
    }

    static func head(_ method: HTTPMethod, _ uri: String, repository: UpstreamRepository, version2: Bool) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "Host", value: repository.hostHeader)
        head.headers.add(name: "Authorization", value: HTTPAuthorization.upstreamCredential(repository.token))
        head.headers.add(name: "User-Agent", value: userAgent)
        if version2 { head.headers.add(name: "Git-Protocol", value: "version=2") }
        head.headers.add(name: "Connection", value: "close")
        return head
    }

    private static func advertisement(
        repository: UpstreamRepository, dialer: any UpstreamDialer, eventLoop: any EventLoop, deadline: NIODeadline, seconds: Int
    ) -> EventLoopFuture<UploadPackAdvertisement> {
        var bytes: [UInt8] = []
        var found: UploadPackAdvertisement?
        let request = head(.GET, "\(repository.path)/info/refs?service=git-upload-pack", repository: repository, version2: true)
        return exchange(request, body: nil, repository: repository, dialer: dialer, eventLoop: eventLoop, deadline: deadline, seconds: seconds,
                        consume: { buffer in
                            bytes += buffer.readableBytesView
                            found = try UploadPackAdvertisement.parse(bytes, ended: false)
                            return found != nil
                        },
                        finish: {
                            if found == nil { found = try UploadPackAdvertisement.parse(bytes, ended: true) }
                        })
            .flatMapThrowing {
                guard let found else { throw AncestryFailure("the upstream's advertisement ends early") }
                return found
            }
    }

    private static func answer(
        _ question: AncestryQuestion, advertisement: UploadPackAdvertisement, repository: UpstreamRepository,
        dialer: any UpstreamDialer, eventLoop: any EventLoop, deadline: NIODeadline, limits: AncestryAnswer.Limits
    ) -> EventLoopFuture<Bool> {
        let body: [UInt8]
        do {
            body = try advertisement.request(for: question)
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        let reader = AncestryAnswer(version2: advertisement.version2, format: question.format ?? .sha1, limits: limits)
        var request = head(.POST, "\(repository.path)/git-upload-pack", repository: repository, version2: advertisement.version2)
        request.headers.add(name: "Content-Type", value: "application/x-git-upload-pack-request")
        request.headers.add(name: "Accept", value: "application/x-git-upload-pack-result")
        request.headers.add(name: "Content-Length", value: String(body.count))
        return exchange(request, body: body, repository: repository, dialer: dialer, eventLoop: eventLoop, deadline: deadline, seconds: limits.seconds,
                        consume: { buffer in
                            try reader.consume(Array(buffer.readableBytesView))
                            return false
                        },
                        finish: { try reader.finish() })
            .map { reader.proves(question) }
    }

    /// One request to the upstream; the response body goes to `consume` as it arrives
    /// (`true`: enough has been read, the rest is not wanted), then `finish` at its end.
    static func exchange(
        _ head: HTTPRequestHead, body: [UInt8]?, repository: UpstreamRepository, dialer: any UpstreamDialer,
        eventLoop: any EventLoop, deadline: NIODeadline, seconds: Int,
        consume: @escaping (ByteBuffer) throws -> Bool, finish: @escaping () throws -> Void
    ) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        let timeout = eventLoop.scheduleTask(deadline: deadline) {
            promise.fail(AncestryFailure("the upstream did not answer within \(seconds) s"))
        }
        promise.futureResult.whenComplete { _ in timeout.cancel() }
        dialer.dial(repository.target, on: eventLoop).hop(to: eventLoop).whenComplete { result in
            switch result {
            case .failure(let error):
                promise.fail(error)
            case .success(let channel):
                promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
                let handler = AnswerHandler(promise: promise, consume: consume, finish: finish)
                do {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(leftOverBytesStrategy: .dropBytes)
                    try channel.pipeline.syncOperations.addHandler(handler)
                } catch {
                    promise.fail(AncestryFailure("cannot set up the connection to the upstream"))
                    return
                }
                channel.write(HTTPClientRequestPart.head(head), promise: nil)
                if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            }
        }
        return promise.futureResult
    }
}

/// Reads one upstream response for `AncestryClient`: a `200` whose body goes to `consume`
/// and `finish`; anything else fails the promise with the cause.
private final class AnswerHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<Void>
    private let consume: (ByteBuffer) throws -> Bool
    private let finish: () throws -> Void
    private var done = false

    init(promise: EventLoopPromise<Void>, consume: @escaping (ByteBuffer) throws -> Bool, finish: @escaping () throws -> Void) {
        self.promise = promise
        self.consume = consume
        self.finish = finish
        promise.futureResult.whenComplete { [weak self] _ in self?.done = true }
    }

    private func fail(_ error: Error) {
        guard !done else { return }
        done = true
        promise.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard head.status == .ok else {
                return fail(AncestryFailure("the upstream answered HTTP \(head.status.code)"))
            }
        case .body(let buffer):
            do {
                if try consume(buffer) {
                    done = true
                    promise.succeed(())
                }
            } catch {
                fail(error)
            }
        case .end:
            do {
                try finish()
                done = true
                promise.succeed(())
            } catch {
                fail(error)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(AncestryFailure("the upstream closed the connection before its answer ended"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if case NIOSSLError.uncleanShutdown = error {
            fail(AncestryFailure("the upstream closed the connection before its answer ended"))
        } else if error is HTTPParserError {
            fail(AncestryFailure("the upstream's answer is not valid HTTP"))
        } else {
            fail(AncestryFailure("the connection to the upstream failed (\(error))"))
        }
        context.close(promise: nil)
    }
}
