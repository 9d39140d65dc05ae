import Gateway
import NIOCore

/// The ClientHello reader (`ClientHello.peek`), over records split anywhere.
///
/// Invariants: a server name is 1–253 printable ASCII bytes taken from the input; a refusal
/// is one line; every prefix of the bytes either needs more or already gives the answer
/// the whole gives (bytes arriving later never change a decision made earlier).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var buffer = ByteBuffer()
    buffer.writeBytes(bytes)
    let whole = ClientHello.peek(buffer)
    switch whole {
    case .serverName(let name):
        let utf8 = Array(name.utf8)
        invariant(!utf8.isEmpty && utf8.count <= 253 && utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F },
                  "server name \(utf8) is not a printable host name")
        invariant(contains(Array(bytes), utf8), "server name not taken from the input")
    case .invalid(let why):
        invariant(!why.isEmpty && !why.contains("\n"), "a refusal that is not one line")
    case .needMoreBytes, .noServerName:
        break
    }
    for cut in [size / 2, size * 3 / 4, size - 1, Int(bytes.first ?? 0) * 7 % max(size, 1)] where cut >= 0 && cut < size {
        var prefix = ByteBuffer()
        prefix.writeBytes(UnsafeBufferPointer(rebasing: bytes[..<cut]))
        let early = ClientHello.peek(prefix)
        invariant(early == .needMoreBytes || early == whole, "prefix of \(cut) bytes says \(early), the whole \(whole)")
    }
    return 0
}

private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard needle.count <= haystack.count else { return false }
    return (0...(haystack.count - needle.count)).contains { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
}
