import Gateway
import NIOCore
import NIOEmbedded
import NIOHTTP1

/// The HTTP request head path as the gateway configures it: `RequestHeadGuard`, NIO's
/// `HTTPRequestDecoder` (`leftOverBytesStrategy: .forwardBytes`), `RequestHeadGuard.DecodedParts`
/// and `RequestValidation`, fed the input in reads of a size the first byte picks.
///
/// Invariants: no head larger than the guard's limit reaches the handler after the
/// decoder (the router's side); nothing reaches it once the guard has answered; a head
/// `RequestValidation` accepts has at most one Content-Length of digits, not with
/// Transfer-Encoding, a request target and headers without control bytes; a refusal is
/// one line.
private let maxBytes = 1024

private final class Router: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    let headGuard: RequestHeadGuard
    init(_ headGuard: RequestHeadGuard) { self.headGuard = headGuard }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        invariant(!headGuard.hasAnswered, "a request part reached the router after the guard answered")
        let head: HTTPRequestHead
        switch unwrapInboundIn(data) {
        case .head(let decoded): head = decoded
        case .body: return
        case .end: headGuard.awaitNextHead(); return
        }
        headGuard.headReceived()
        // The decoder writes U+FFFD (3 bytes) for each byte that is not UTF-8: count those as
        // the one byte they were on the wire, a lower bound of what the client sent.
        func wireBytes(_ text: String) -> Int {
            text.utf8.count - 2 * text.unicodeScalars.reduce(0) { $0 + ($1 == "\u{FFFD}" ? 1 : 0) }
        }
        let size = wireBytes(head.uri) + head.headers.reduce(0) { $0 + wireBytes($1.name) + wireBytes($1.value) }
        invariant(size <= maxBytes, "a head of \(size) bytes passed a \(maxBytes)-byte limit")
        if let problem = RequestValidation.problem(in: head) {
            invariant(problem.hasPrefix("malformed request: ") && !problem.contains("\n") && !problem.contains("\r"),
                      "refusal not one line: \(problem)")
            return
        }
        let lengths = head.headers[canonicalForm: "content-length"]
        invariant(lengths.count <= 1, "more than one Content-Length accepted")
        invariant(lengths.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }, "a bad Content-Length accepted")
        invariant(lengths.isEmpty || head.headers[canonicalForm: "transfer-encoding"].isEmpty, "Content-Length with Transfer-Encoding accepted")
        invariant(!head.uri.isEmpty && !head.uri.utf8.contains { $0 <= 0x20 || $0 >= 0x7F }, "a bad request target accepted")
        for (name, value) in head.headers {
            invariant(!name.utf8.contains { $0 <= 0x20 || $0 == 0x3A || $0 >= 0x7F }, "a bad header name accepted")
            invariant(!value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 }, "a header value with CR, LF or NUL accepted")
            invariant(!value.unicodeScalars.contains("\u{FFFD}"), "a header value with bytes that are not UTF-8 accepted")
        }
        invariant(head.version.major == 1, "HTTP/\(head.version.major) accepted")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let step = max(Int(bytes[0]) * 4, 1)
    let channel = EmbeddedChannel()
    let headGuard = RequestHeadGuard(maxBytes: maxBytes, timeout: .seconds(10))
    var encoderConfiguration = HTTPResponseEncoder.Configuration()
    encoderConfiguration.automaticallySetFramingHeaders = false
    try! channel.pipeline.syncOperations.addHandlers([
        headGuard,
        HTTPResponseEncoder(configuration: encoderConfiguration),
        ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)),
        RequestHeadGuard.DecodedParts(headGuard),
        Router(headGuard),
    ])
    try! channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
    var offset = 1
    while offset < size && channel.isActive {
        let end = min(offset + step, size)
        var buffer = channel.allocator.buffer(capacity: end - offset)
        buffer.writeBytes(UnsafeBufferPointer(rebasing: bytes[offset..<end]))
        do {
            try channel.writeInbound(buffer)
        } catch {
            let line = RequestValidation.describe(error)
            invariant(!line.contains("\n") && line.utf8.count <= 80, "an error description that is not one short line")
            break
        }
        offset = end
    }
    _ = try? channel.finish()
    // The guard's deadlines are scheduled tasks; on a real event loop they fire (and find the
    // connection gone) within the header timeout. The embedded loop's clock stands still, so
    // let it pass, or a task still queued keeps its promise and its loop alive and reads as a leak.
    channel.embeddedEventLoop.advanceTime(by: .hours(1))
    return 0
}
