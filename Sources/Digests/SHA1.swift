import CDigests

/// An incremental SHA-1 (FIPS 180-4), for git object ids in SHA-1 repositories.
///
/// On CPUs with the x86 SHA extensions the block function runs there (`CDigests`); the
/// Swift block function below is the reference and the fallback.
///
/// Not for anything where collisions matter against an attacker: git names objects with it,
/// so the pack reader must compute it to check a pack's ids and trailer.
///
///     var h = SHA1()
///     h.update(bytes)
///     let digest = h.finalize()   // 20 bytes
package struct SHA1: Sendable {
    /// The digest's length in bytes.
    package static let byteCount = 20

    private var state: (UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
    private var pending = BlockBuffer()
    private var length: UInt64 = 0
    private let accelerated: Bool

    /// Whether this CPU runs SHA-1's block function in hardware (the x86 SHA extensions).
    package static let hardwareAvailable = airlock_sha1_accelerated() == 1

    package init() {
        accelerated = Self.hardwareAvailable
    }

    /// A hash that uses the Swift block function even where the hardware one exists, so
    /// the tests can hold each against the other.
    init(portable: Bool) {
        accelerated = portable ? false : Self.hardwareAvailable
    }

    /// The SHA-1 of `bytes`.
    package static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var h = SHA1()
        h.update(bytes)
        return h.finalize()
    }

    /// Adds `bytes` to the message.
    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        length &+= UInt64(bytes.count)
        var s = state
        if accelerated {
            pending.feed(bytes, blocks: { start, count in Self.compressInHardware(&s, start, blocks: count) })
        } else {
            pending.feed(bytes) { block in Self.compress(&s, block) }
        }
        state = s
    }

    /// Adds `bytes` to the message.
    package mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest of everything added so far (the hash itself is left as it was).
    package func finalize() -> [UInt8] {
        var copy = self
        var out: [UInt8] = []
        out.reserveCapacity(Self.byteCount)
        var s = state
        if accelerated {
            copy.pending.pad(messageLength: length) { block in Self.compressInHardware(&s, block, blocks: 1) }
        } else {
            copy.pending.pad(messageLength: length) { block in Self.compress(&s, block) }
        }
        for word in [s.0, s.1, s.2, s.3, s.4] {
            out.appendBigEndian(word)
        }
        return out
    }

    @inline(__always)
    private static func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << n) | (x >> (32 &- n)) }

    /// `blocks` 64-byte blocks from `start`, on the SHA extensions.
    @inline(__always)
    private static func compressInHardware(_ state: inout (UInt32, UInt32, UInt32, UInt32, UInt32), _ start: UnsafeRawPointer, blocks: Int) {
        withUnsafeMutableBytes(of: &state) { words in
            airlock_sha1_blocks(words.baseAddress!.assumingMemoryBound(to: UInt32.self), start.assumingMemoryBound(to: UInt8.self), blocks)
        }
    }

    /// One 64-byte block.
    private static func compress(_ state: inout (UInt32, UInt32, UInt32, UInt32, UInt32), _ block: UnsafeRawPointer) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 80) { w in
            for t in 0..<16 {
                w[t] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: t &* 4, as: UInt32.self))
            }
            for t in 16..<80 {
                w[t] = rotl(w[t &- 3] ^ w[t &- 8] ^ w[t &- 14] ^ w[t &- 16], 1)
            }
            var (a, b, c, d, e) = state
            for t in 0..<20 {
                let f = (b & c) | (~b & d)
                let temp = rotl(a, 5) &+ f &+ e &+ 0x5A82_7999 &+ w[t]
                e = d; d = c; c = rotl(b, 30); b = a; a = temp
            }
            for t in 20..<40 {
                let temp = rotl(a, 5) &+ (b ^ c ^ d) &+ e &+ 0x6ED9_EBA1 &+ w[t]
                e = d; d = c; c = rotl(b, 30); b = a; a = temp
            }
            for t in 40..<60 {
                let f = (b & c) | (b & d) | (c & d)
                let temp = rotl(a, 5) &+ f &+ e &+ 0x8F1B_BCDC &+ w[t]
                e = d; d = c; c = rotl(b, 30); b = a; a = temp
            }
            for t in 60..<80 {
                let temp = rotl(a, 5) &+ (b ^ c ^ d) &+ e &+ 0xCA62_C1D6 &+ w[t]
                e = d; d = c; c = rotl(b, 30); b = a; a = temp
            }
            state.0 &+= a; state.1 &+= b; state.2 &+= c; state.3 &+= d; state.4 &+= e
        }
    }
}
