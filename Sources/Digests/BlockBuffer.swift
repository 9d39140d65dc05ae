/// The part of a message that does not yet fill a 64-byte block, shared by SHA-1 and
/// SHA-256 (both pad the same way: a 1 bit, zeros, the bit length big-endian). Stored
/// inline, so copying a hash in progress allocates nothing.
struct BlockBuffer: Sendable {
    private var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    private var count = 0

    /// Hands every complete block of the buffered bytes followed by `input` to `compress`
    /// and keeps the rest. Whole blocks of `input` are compressed in place, not copied.
    mutating func feed(_ input: UnsafeRawBufferPointer, _ compress: (UnsafeRawPointer) -> Void) {
        feed(input, blocks: { start, count in
            for block in 0..<count { compress(start + block &* 64) }
        })
    }

    /// As `feed(_:_:)`, handing `compress` runs of whole blocks (a start and a count of
    /// 64-byte blocks) rather than one block at a time.
    mutating func feed(_ input: UnsafeRawBufferPointer, blocks compress: (UnsafeRawPointer, Int) -> Void) {
        guard let base = input.baseAddress, !input.isEmpty else { return }
        var offset = 0
        if count > 0 {
            let take = min(64 - count, input.count)
            let start = count
            withUnsafeMutableBytes(of: &storage) { block in
                block.baseAddress!.advanced(by: start).copyMemory(from: base, byteCount: take)
            }
            count += take
            offset = take
            guard count == 64 else { return }
            withUnsafeBytes(of: storage) { compress($0.baseAddress!, 1) }
            count = 0
        }
        let whole = (input.count - offset) / 64
        if whole > 0 {
            compress(base + offset, whole)
            offset += whole &* 64
        }
        if offset < input.count {
            let rest = input.count - offset
            withUnsafeMutableBytes(of: &storage) { block in
                block.baseAddress!.copyMemory(from: base + offset, byteCount: rest)
            }
            count = rest
        }
    }

    /// Pads the message of `messageLength` bytes and compresses its last one or two blocks.
    mutating func pad(messageLength: UInt64, _ compress: (UnsafeRawPointer) -> Void) {
        var tail = withUnsafeBytes(of: storage) { Array($0.prefix(count)) }
        tail.append(0x80)
        while tail.count % 64 != 56 { tail.append(0) }
        let bits = messageLength &* 8
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        tail.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                compress(raw.baseAddress! + offset)
                offset += 64
            }
        }
        count = 0
    }
}

extension Array where Element == UInt8 {
    /// Appends `word` most significant byte first.
    mutating func appendBigEndian(_ word: UInt32) {
        append(UInt8(truncatingIfNeeded: word >> 24))
        append(UInt8(truncatingIfNeeded: word >> 16))
        append(UInt8(truncatingIfNeeded: word >> 8))
        append(UInt8(truncatingIfNeeded: word))
    }
}
