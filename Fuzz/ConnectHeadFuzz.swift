import Gateway
import NIOCore
import NIOEmbedded
import NIOHTTP1

/// `ConnectHead.read`, the socket loop's own `CONNECT` reader, against the full path.
///
/// Invariants: whatever the reader takes, NIO's `HTTPRequestDecoder` (as the gateway
/// configures it) reads from the same bytes a `CONNECT` with the same target and version,
/// and `RequestValidation` accepts it; the head's length ends at its empty line, and no
/// shorter prefix of the input is taken.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let head = ConnectHead.read(bytes, maxLength: 4096) else { return 0 }
    invariant(head.length >= 4 && head.length <= size, "a length of \(head.length) for \(size) bytes")
    invariant(bytes[head.length - 4] == 0x0D && bytes[head.length - 3] == 0x0A && bytes[head.length - 2] == 0x0D && bytes[head.length - 1] == 0x0A,
              "the head does not end with an empty line")
    invariant(ConnectHead.read(UnsafeRawBufferPointer(rebasing: bytes[..<(head.length - 1)]), maxLength: 4096) == nil,
              "a prefix of the head was taken")

    let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
    defer { _ = try? channel.finish() }
    var decoded: HTTPRequestHead?
    do {
        try channel.writeInbound(ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: bytes[..<head.length])))
        if case .head(let read)? = try channel.readInbound(as: HTTPServerRequestPart.self) { decoded = read }
    } catch {
        invariant(false, "the decoder refused a head the loop takes: \(error)")
    }
    guard let decoded else {
        invariant(false, "the decoder read no head from a head the loop takes")
        return 0
    }
    invariant(decoded.method == .CONNECT, "the decoder read \(decoded.method)")
    invariant(decoded.uri == head.target, "the decoder read target \(decoded.uri), the loop \(head.target)")
    invariant(decoded.version == (head.minorVersion == 0 ? .http1_0 : .http1_1), "the versions differ")
    invariant(RequestValidation.problem(in: decoded) == nil, "validation refuses a head the loop takes: \(decoded)")
    return 0
}
