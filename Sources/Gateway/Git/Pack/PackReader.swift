import CZlib

/// Reads a git pack (gitformat-pack: `PACK`, version 2 or 3, the object count, the
/// objects, the checksum trailer) as it streams past, in chunks of any size, and keeps the
/// commit graph it holds: each commit's id and parents.
///
/// Every object is inflated, its size checked against its header, and dropped unless it is
/// a commit. Commits are kept (their content too, as delta bases), and so are deltas whose
/// base is a commit kept earlier (ofs-delta) or one kept by id (ref-delta); a delta whose
/// base is anything else (a tree, a blob, an object only the upstream has, as in a thin
/// pack) is inflated and dropped. Memory is bounded by `Limits`; anything malformed, over
/// a limit, or ending early throws `Failure`, and the caller refuses the push: a pack
/// airlock cannot read is a pack whose history it cannot check.
package final class PackReader {
    /// How much a pack may ask of the reader.
    package struct Limits: Sendable, Equatable {
        /// The most objects a pack may declare.
        package var objects: Int
        /// The largest commit (its content, inflated) and the largest delta that makes one.
        package var commitBytes: Int
        /// The most commit content kept at once, all commits together.
        package var keptBytes: Int

        package init(objects: Int = 1 << 24, commitBytes: Int = 1 << 20, keptBytes: Int = 64 << 20) {
            self.objects = objects
            self.commitBytes = commitBytes
            self.keptBytes = keptBytes
        }
    }

    /// Why a pack cannot be read.
    package struct Failure: Error, Equatable, CustomStringConvertible {
        package var description: String
        init(_ description: String) { self.description = description }
    }

    /// A commit of the pack: its parents, as hexadecimal ids.
    package struct Commit: Equatable, Sendable {
        package var parents: [String]
    }

    /// The pack's commits by hexadecimal id; complete once `finish()` returns.
    package private(set) var commits: [String: Commit] = [:]
    /// The number of objects the pack declares.
    package private(set) var declaredObjects: Int?

    private enum State {
        case header
        case objectHeader
        case data
        case trailer
        case done
    }

    private let format: ObjectFormat
    private let limits: Limits
    private var state = State.header
    private var hasher: ObjectHasher
    /// Bytes of the pack consumed so far (its offset).
    private var offset = 0
    /// The header, an object header or the trailer while it arrives.
    private var pending: [UInt8] = []
    private var objectsRead = 0

    // The object being inflated.
    private var objectStart = 0
    private var objectType = 0
    private var objectSize = 0
    private var inflated = 0
    /// The kept content (a commit) or delta, when this object is kept.
    private var kept: [UInt8]?
    /// The commit a kept delta applies to.
    private var deltaBase: [UInt8]?

    /// Kept commit content by raw id, for deltas; and kept commit ids by pack offset.
    private var contents: [[UInt8]: [UInt8]] = [:]
    private var idsAtOffset: [Int: [UInt8]] = [:]
    private var keptBytes = 0

    private let stream: UnsafeMutablePointer<z_stream>
    private var streamReady = false
    private let scratch: UnsafeMutableRawBufferPointer
    private static let scratchSize = 64 << 10

    /// - Parameters:
    ///   - format: the repository's object format (from the length of the push's ids).
    ///   - limits: the bounds; a pack over any of them fails.
    package init(format: ObjectFormat, limits: Limits = Limits()) {
        self.format = format
        self.limits = limits
        hasher = format.hasher()
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        scratch = .allocate(byteCount: Self.scratchSize, alignment: 1)
    }

    deinit {
        if streamReady { inflateEnd(stream) }
        stream.deinitialize(count: 1)
        stream.deallocate()
        scratch.deallocate()
    }

    /// Reads the next bytes of the pack.
    /// - Throws: `Failure` when the pack is malformed or over a limit.
    package func consume(_ bytes: UnsafeRawBufferPointer) throws {
        var index = 0
        while index < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[index...])
            let before = state
            let used: Int
            switch state {
            case .header: used = try readHeader(rest)
            case .objectHeader: used = try readObjectHeader(rest)
            case .data: used = try inflate(rest)
            case .trailer: used = try readTrailer(rest)
            case .done: throw Failure("the pack has data after its checksum")
            }
            // The checksum covers everything before itself.
            if used > 0 && before != .trailer {
                hasher.update(UnsafeRawBufferPointer(rebasing: rest[..<used]))
            }
            offset += used
            index += used
            if state == .objectHeader && before != .objectHeader { objectStart = offset }
        }
    }

    /// Reads the next bytes of the pack.
    package func consume(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try consume($0) }
    }

    /// The pack has ended.
    /// - Throws: `Failure` when it ended before its checksum.
    package func finish() throws {
        guard state == .done else {
            if state == .header && offset == 0 && pending.isEmpty { throw Failure("there is no pack") }
            throw Failure("the pack ends early (after \(objectsRead) of \(declaredObjects.map(String.init) ?? "?") objects)")
        }
    }

    // MARK: parts

    private func take(_ count: Int, from bytes: UnsafeRawBufferPointer) -> (used: Int, complete: Bool) {
        let used = min(count - pending.count, bytes.count)
        pending += bytes[..<used]
        return (used, pending.count == count)
    }

    private func readHeader(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let (used, complete) = take(12, from: bytes)
        guard complete else { return used }
        guard pending[0..<4].elementsEqual("PACK".utf8) else { throw Failure("the data is not a pack (no PACK signature)") }
        let version = Self.bigEndian(pending[4..<8])
        guard version == 2 || version == 3 else { throw Failure("pack version \(version) is not supported (2 and 3 are)") }
        let count = Self.bigEndian(pending[8..<12])
        guard count <= limits.objects else { throw Failure("the pack holds \(count) objects; airlock checks at most \(limits.objects)") }
        declaredObjects = count
        pending = []
        state = count == 0 ? .trailer : .objectHeader
        return used
    }

    private func readObjectHeader(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        // Byte by byte: the header ends where its varints and base id end.
        var used = 0
        while used < bytes.count {
            pending.append(bytes[used])
            used += 1
            guard pending.count <= 64 else { throw Failure("an object header in the pack is too long") }
            if try parseObjectHeader() {
                pending = []
                state = .data
                return used
            }
        }
        return used
    }

    /// Parses `pending` as an object header; false when more bytes are needed.
    private func parseObjectHeader() throws -> Bool {
        var i = 0
        var byte = pending[i]
        let type = Int(byte >> 4 & 7)
        var size = Int(byte & 0x0F)
        var shift = 4
        while byte & 0x80 != 0 {
            i += 1
            guard i < pending.count else { return false }
            byte = pending[i]
            guard shift <= 56 else { throw Failure("an object size in the pack is too large") }
            size |= Int(byte & 0x7F) << shift
            shift += 7
        }
        i += 1
        var base: [UInt8]?
        switch type {
        case 1, 2, 3, 4:
            break
        case 6:
            guard i < pending.count else { return false }
            byte = pending[i]
            var distance = Int(byte & 0x7F)
            while byte & 0x80 != 0 {
                i += 1
                guard i < pending.count else { return false }
                guard distance < 1 << 48 else { throw Failure("an ofs-delta offset in the pack is too large") }
                byte = pending[i]
                distance = (distance + 1) << 7 | Int(byte & 0x7F)
            }
            i += 1
            guard distance > 0, distance <= objectStart - 12 else { throw Failure("an ofs-delta in the pack points outside it") }
            base = idsAtOffset[objectStart - distance].flatMap { contents[$0] }
        case 7:
            guard pending.count - i >= format.byteCount else { return false }
            i += format.byteCount
            base = contents[Array(pending[(i - format.byteCount)..<i])]
        default:
            throw Failure("an object in the pack has the invalid type \(type)")
        }
        guard i == pending.count else { return false }
        objectType = type
        objectSize = size
        inflated = 0
        deltaBase = base
        if type == 1 {
            guard size <= limits.commitBytes else { throw Failure("a commit in the pack is larger than \(Self.size(limits.commitBytes))") }
            kept = []
            kept!.reserveCapacity(size)
        } else if base != nil {
            // A delta whose base is a commit makes a commit: bounded like one.
            guard size <= limits.commitBytes + 1024 else { throw Failure("a commit in the pack is larger than \(Self.size(limits.commitBytes))") }
            kept = []
            kept!.reserveCapacity(size)
        } else {
            kept = nil
        }
        if streamReady {
            guard inflateReset(stream) == Z_OK else { throw Failure("cannot reset zlib") }
        } else {
            guard airlock_inflate_init(stream) == Z_OK else { throw Failure("cannot start zlib") }
            streamReady = true
        }
        return true
    }

    private func inflate(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let input = UInt32(clamping: bytes.count)
        stream.pointee.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress!.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = input
        while true {
            stream.pointee.next_out = scratch.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = UInt32(Self.scratchSize)
            let status = CZlib.inflate(stream, Z_NO_FLUSH)
            let produced = Self.scratchSize - Int(stream.pointee.avail_out)
            inflated += produced
            guard inflated <= objectSize else { throw Failure("an object in the pack inflates to more than its header says") }
            if produced > 0, kept != nil {
                kept!.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[..<produced]))
            }
            let used = Int(input - stream.pointee.avail_in)
            switch status {
            case Z_STREAM_END:
                try objectEnded()
                return used
            case Z_OK, Z_BUF_ERROR:
                if stream.pointee.avail_in == 0 && produced < Self.scratchSize { return used }
                if status == Z_BUF_ERROR && produced == 0 { throw Failure("an object's compressed data in the pack is corrupt") }
            default:
                throw Failure("an object's compressed data in the pack is corrupt")
            }
        }
    }

    private func objectEnded() throws {
        guard inflated == objectSize else { throw Failure("an object in the pack inflates to less than its header says") }
        if var content = kept {
            if let base = deltaBase {
                content = try Self.applyDelta(content, to: base, limit: limits.commitBytes)
            }
            try keepCommit(content)
        }
        kept = nil
        deltaBase = nil
        objectsRead += 1
        state = objectsRead == declaredObjects ? .trailer : .objectHeader
    }

    private func keepCommit(_ content: [UInt8]) throws {
        keptBytes += content.count
        guard keptBytes <= limits.keptBytes else { throw Failure("the pack's commits exceed the \(Self.size(limits.keptBytes)) airlock keeps to check a push") }
        let id = format.objectID(type: "commit", content: content)
        guard let parents = Self.parents(of: content, format: format) else { throw Failure("a commit in the pack is malformed") }
        commits[ObjectID.hex(id)] = Commit(parents: parents)
        contents[id] = content
        idsAtOffset[objectStart] = id
    }

    private func readTrailer(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let (used, complete) = take(format.byteCount, from: bytes)
        guard complete else { return used }
        guard pending == hasher.finalize() else { throw Failure("the pack's checksum does not match its content") }
        pending = []
        state = .done
        return used
    }

    // MARK: formats

    /// `n` bytes, in MiB or KiB when it is a whole number of them.
    static func size(_ n: Int) -> String {
        if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
        if n >= 1 << 10 && n % (1 << 10) == 0 { return "\(n >> 10) KiB" }
        return "\(n) bytes"
    }

    private static func bigEndian(_ bytes: ArraySlice<UInt8>) -> Int {
        bytes.reduce(0) { $0 << 8 | Int($1) }
    }

    /// The parents of a commit as git reads them: a `tree` line first, then consecutive
    /// `parent` lines; nil when the header is not that.
    static func parents(of content: [UInt8], format: ObjectFormat) -> [String]? {
        let hexLength = format.byteCount * 2
        func line(_ prefix: String, at index: Int) -> String? {
            let p = Array(prefix.utf8)
            let end = index + p.count + hexLength
            guard end < content.count, content[end] == UInt8(ascii: "\n"), content[index..<(index + p.count)].elementsEqual(p) else { return nil }
            let hex = content[(index + p.count)..<end]
            guard hex.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
            return String(decoding: hex, as: UTF8.self)
        }
        guard line("tree ", at: 0) != nil else { return nil }
        var index = 5 + hexLength + 1
        var parents: [String] = []
        while let parent = line("parent ", at: index) {
            parents.append(parent)
            index += 7 + hexLength + 1
        }
        return parents
    }

    /// Applies a git delta (gitformat-pack, "Deltified representation") to `base`.
    static func applyDelta(_ delta: [UInt8], to base: [UInt8], limit: Int) throws -> [UInt8] {
        var i = 0
        func varint() throws -> Int {
            var value = 0
            var shift = 0
            while true {
                guard i < delta.count, shift <= 56 else { throw Failure("a delta in the pack is malformed") }
                let byte = delta[i]
                i += 1
                value |= Int(byte & 0x7F) << shift
                shift += 7
                if byte & 0x80 == 0 { return value }
            }
        }
        guard try varint() == base.count else { throw Failure("a delta in the pack does not fit its base") }
        let resultSize = try varint()
        guard resultSize <= limit else { throw Failure("a commit in the pack is larger than \(Self.size(limit))") }
        var result: [UInt8] = []
        result.reserveCapacity(resultSize)
        while i < delta.count {
            let command = delta[i]
            i += 1
            if command & 0x80 != 0 {
                var copyOffset = 0
                var copySize = 0
                for bit in 0..<4 where command & (1 << bit) != 0 {
                    guard i < delta.count else { throw Failure("a delta in the pack is malformed") }
                    copyOffset |= Int(delta[i]) << (8 * bit)
                    i += 1
                }
                for bit in 0..<3 where command & (0x10 << bit) != 0 {
                    guard i < delta.count else { throw Failure("a delta in the pack is malformed") }
                    copySize |= Int(delta[i]) << (8 * bit)
                    i += 1
                }
                if copySize == 0 { copySize = 0x10000 }
                guard copyOffset + copySize <= base.count, result.count + copySize <= resultSize else {
                    throw Failure("a delta in the pack copies outside its base")
                }
                result += base[copyOffset..<(copyOffset + copySize)]
            } else if command != 0 {
                let count = Int(command)
                guard i + count <= delta.count, result.count + count <= resultSize else { throw Failure("a delta in the pack is malformed") }
                result += delta[i..<(i + count)]
                i += count
            } else {
                throw Failure("a delta in the pack is malformed")
            }
        }
        guard result.count == resultSize else { throw Failure("a delta in the pack does not make the size it declares") }
        return result
    }
}
