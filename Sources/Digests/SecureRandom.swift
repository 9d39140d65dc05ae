/// Bytes from the system's cryptographic random source: the standard library's
/// `SystemRandomNumberGenerator`, which on Linux reads `getrandom(2)` and stops the process
/// rather than return weak bytes.
package enum SecureRandom {
    /// `count` random bytes.
    package static func bytes(count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var out: [UInt8] = []
        out.reserveCapacity(count + 7)
        while out.count < count {
            let word = generator.next() as UInt64
            for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        out.removeLast(out.count - count)
        return out
    }
}
