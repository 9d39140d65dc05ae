import Gateway

/// pkt-line framing and the receive-pack command section (`PktLine`, `ReceivePackCommands`).
///
/// Invariants: a data line's `next` is its offset plus its declared length and within the
/// bytes, and re-encoding the payload reads back to the same line; a complete command
/// section reports a length within the bytes, parses the same from exactly those bytes
/// and from those bytes plus anything after them, and every shorter prefix needs more.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))

    var offset = 0
    while case .line(let line, let next) = PktLine.read(bytes, at: offset) {
        invariant(next > offset && next <= bytes.count, "pkt-line next \(next) outside \(offset)...\(bytes.count)")
        if case .data(let payload) = line {
            invariant(next == offset + 4 + payload.count, "pkt-line length does not match its payload")
            invariant(PktLine.read(PktLine.encode(payload), at: 0) == .line(.data(payload), next: payload.count + 4),
                      "re-encoded pkt-line reads back differently")
        }
        offset = next
    }

    let parsed = ReceivePackCommands.parse(bytes)
    if case .complete(let updates, _, let length) = parsed {
        invariant(length > 0 && length <= bytes.count, "command section length \(length) outside the body")
        let section = Array(bytes[..<length])
        invariant(ReceivePackCommands.parse(section) == parsed, "the section alone parses differently")
        invariant(ReceivePackCommands.parse(bytes + Array("0032garbage after the section\n".utf8)) == parsed,
                  "bytes after the section change it")
        let cut = Int(bytes.first ?? 0) % length
        invariant(ReceivePackCommands.parse(Array(bytes[..<cut])) == .needMore, "a prefix of a complete section did not need more")
        for update in updates {
            invariant(!update.ref.isEmpty && !update.ref.contains("\n"), "a ref name that is empty or spans lines")
            invariant(update.old.utf8.count == update.new.utf8.count, "old and new object ids of different lengths")
        }
    } else if case .malformed(let why) = parsed {
        invariant(!why.isEmpty && !why.contains("\n"), "a refusal that is not one line")
    }
    return 0
}
