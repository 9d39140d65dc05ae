/// The question airlock asks the upstream when a pushed pack does not prove a
/// fast-forward by itself: is the ref's current commit (`old`) an ancestor of the commits
/// where the walk through the pack stopped (`boundaries`)?
///
/// It is asked as a fetch any upload-pack server answers: `want` each boundary, `have`
/// old, `done` (and `filter tree:0` when the server offers filters, so the answer holds
/// commits only). The server leaves out every object reachable from old, so in the pack it
/// sends, a walk from a boundary reaches old exactly when old is its ancestor: every commit
/// on a path from the boundary down to old descends from old and is sent. A walk that ends
/// anywhere else proves nothing.
package struct AncestryQuestion: Equatable, Sendable {
    /// The ref's current commit on the upstream.
    package var old: String
    /// Where the walk through the pushed pack stopped: parents the pack does not hold, or
    /// the new id itself when the pack lacks it.
    package var boundaries: [String]

    /// The most boundaries one question names; an update with more is refused.
    package static let maximumBoundaries = 64

    package init(old: String, boundaries: [String]) {
        self.old = old
        self.boundaries = boundaries
    }

    /// The ids' object format; nil when an id is not a lowercase hexadecimal object id of
    /// the same length as `old`.
    package var format: ObjectFormat? {
        guard let format = ObjectFormat(hexLength: old.utf8.count),
              ([old] + boundaries).allSatisfy({ Self.isObjectID($0, length: old.utf8.count) }) else { return nil }
        return format
    }

    static func isObjectID(_ text: String, length: Int) -> Bool {
        text.utf8.count == length && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// What the upstream's `info/refs?service=git-upload-pack` advertisement says about how to
/// ask it: the protocol it speaks and whether it filters.
package struct UploadPackAdvertisement: Equatable, Sendable {
    /// Protocol v2 (`version 2`), else v0.
    package var version2: Bool
    /// The server accepts `filter` (v2: a `filter` feature of `fetch`; v0: the capability).
    package var filter: Bool
    /// v0: the server multiplexes its answer (`side-band-64k` or `side-band`).
    package var sideBand: Bool
    /// The object format the server names, `sha1` when it names none.
    package var objectFormat: String

    package init(version2: Bool, filter: Bool, sideBand: Bool = true, objectFormat: String = "sha1") {
        self.version2 = version2
        self.filter = filter
        self.sideBand = sideBand
        self.objectFormat = objectFormat
    }

    /// The most advertisement read: v2's is a few lines; v0's first line holds everything
    /// needed, however many refs follow.
    package static let maximumLength = 1 << 20

    /// Reads the advertisement from its start; `nil` while more is needed.
    /// - Throws: `AncestryFailure` when the bytes are not an upload-pack advertisement.
    package static func parse(_ bytes: [UInt8], ended: Bool) throws -> UploadPackAdvertisement? {
        var offset = 0
        var lines: [String] = []
        var sawServiceHeader = false
        var serviceEnded = false
        while true {
            switch PktLine.read(bytes, at: offset) {
            case .needMore:
                guard !ended else { throw AncestryFailure("the upstream's advertisement ends early") }
                guard bytes.count <= maximumLength else { throw AncestryFailure("the upstream's advertisement is too long") }
                return nil
            case .malformed(let why):
                throw AncestryFailure("the upstream's advertisement is malformed (\(why))")
            case .line(let line, let next):
                offset = next
                switch line {
                case .data(let payload):
                    var text = String(decoding: payload, as: UTF8.self)
                    if text.hasSuffix("\n") { text.removeLast() }
                    if lines.isEmpty && !sawServiceHeader && text.hasPrefix("# service=") {
                        sawServiceHeader = true
                        continue
                    }
                    if lines.isEmpty && text != "version 2" {
                        return v0(payload)
                    }
                    lines.append(text)
                case .flush:
                    if sawServiceHeader && !serviceEnded && lines.isEmpty {
                        serviceEnded = true
                        continue
                    }
                    guard !lines.isEmpty else {
                        throw AncestryFailure("the upstream's repository is empty")
                    }
                    return v2(lines)
                case .delimiter, .responseEnd:
                    throw AncestryFailure("the upstream's advertisement is malformed")
                }
            }
        }
    }

    private static func v2(_ lines: [String]) -> UploadPackAdvertisement {
        var result = UploadPackAdvertisement(version2: true, filter: false)
        for line in lines {
            if line.hasPrefix("fetch=") {
                result.filter = line.dropFirst(6).split(separator: " ").contains("filter")
            } else if line.hasPrefix("object-format=") {
                result.objectFormat = String(line.dropFirst(14))
            }
        }
        return result
    }

    private static func v0(_ firstLine: [UInt8]) -> UploadPackAdvertisement {
        var capabilities: [Substring] = []
        if let nul = firstLine.firstIndex(of: 0) {
            var text = String(decoding: firstLine[(nul + 1)...], as: UTF8.self)
            if text.hasSuffix("\n") { text.removeLast() }
            capabilities = text.split(separator: " ")
        }
        var result = UploadPackAdvertisement(version2: false, filter: capabilities.contains("filter"),
                                             sideBand: capabilities.contains("side-band-64k") || capabilities.contains("side-band"))
        if let format = capabilities.first(where: { $0.hasPrefix("object-format=") }) {
            result.objectFormat = String(format.dropFirst(14))
        }
        return result
    }

    /// The body of the `POST git-upload-pack` that asks `question`.
    /// - Throws: `AncestryFailure` when the ids are not object ids of the server's format,
    ///   or the server cannot answer in a form airlock reads.
    package func request(for question: AncestryQuestion) throws -> [UInt8] {
        guard let format = question.format, !question.boundaries.isEmpty else { throw AncestryFailure("the question names invalid object ids") }
        let formatName = format == .sha256 ? "sha256" : "sha1"
        guard formatName == objectFormat else {
            throw AncestryFailure("the upstream's object format is \(UploadPackAdvertisement.printable(objectFormat)), the push's is \(formatName)")
        }
        func line(_ text: String) -> [UInt8] { PktLine.encode(Array((text + "\n").utf8)) }
        var body: [UInt8] = []
        if version2 {
            body += line("command=fetch")
            if format == .sha256 { body += line("object-format=sha256") }
            body += Array("0001".utf8)
            body += line("no-progress")
            body += line("ofs-delta")
            if filter { body += line("filter tree:0") }
            for boundary in question.boundaries { body += line("want \(boundary)") }
            body += line("have \(question.old)")
            body += line("done")
            body += PktLine.flushBytes
        } else {
            guard sideBand else { throw AncestryFailure("the upstream offers no side-band") }
            var capabilities = "side-band-64k ofs-delta no-progress"
            if filter { capabilities += " filter" }
            if format == .sha256 { capabilities += " object-format=sha256" }
            for (index, boundary) in question.boundaries.enumerated() {
                body += line(index == 0 ? "want \(boundary) \(capabilities)" : "want \(boundary)")
            }
            if filter { body += line("filter tree:0") }
            body += PktLine.flushBytes
            body += line("have \(question.old)")
            body += line("done")
        }
        return body
    }

    /// `text` with anything but printable ASCII replaced, at most 80 characters: for
    /// messages quoting what an upstream said.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.prefix(80).map { (0x20..<0x7F).contains($0.value) ? $0 : "?" }))
    }
}

/// Why the upstream's answer to an `AncestryQuestion` could not be had or read; one line
/// naming the cause.
package struct AncestryFailure: Error, Equatable, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// Reads the upstream's answer to an `AncestryQuestion` (the `git-upload-pack` result) as
/// it streams: pkt-lines (v2: the `packfile` section; v0: `ACK`/`NAK`), side band 1 into a
/// `PackReader` that keeps commit ids and parents only, side band 3 as the server's error.
/// Bounded: the bytes read, the commits kept (`Limits`).
package final class AncestryAnswer {
    /// How much of an answer is read.
    package struct Limits: Equatable, Sendable {
        /// The most bytes of the answer.
        package var bytes: Int
        /// The most commits in the answer (each one walked at most once).
        package var commits: Int
        /// The most time for the advertisement and the answer together.
        package var seconds: Int

        package init(bytes: Int = 64 << 20, commits: Int = 100_000, seconds: Int = 30) {
            self.bytes = bytes
            self.commits = commits
            self.seconds = seconds
        }
    }

    private enum State {
        /// v0: `ACK`/`NAK` lines before the pack; v2: section headers before `packfile`.
        case preamble
        /// Side-band pkt-lines carrying the pack.
        case pack
        case done
    }

    private let version2: Bool
    private let limits: Limits
    private let reader: PackReader
    private var state = State.preamble
    private var pending: [UInt8] = []
    private var bytesRead = 0

    /// - Parameters:
    ///   - version2: the answer is protocol v2's.
    ///   - format: the repository's object format.
    ///   - limits: the bounds.
    package init(version2: Bool, format: ObjectFormat, limits: Limits = Limits()) {
        self.version2 = version2
        self.limits = limits
        reader = PackReader(format: format, limits: PackReader.Limits(objects: 1 << 22, commitBytes: 1 << 20, keptBytes: 32 << 20))
    }

    /// The answer's commits by id; complete once `finish()` returns.
    package var commits: [String: PackReader.Commit] { reader.commits }

    /// Reads the next bytes of the answer.
    /// - Throws: `AncestryFailure` naming what is wrong.
    package func consume(_ bytes: [UInt8]) throws {
        bytesRead += bytes.count
        guard bytesRead <= limits.bytes else {
            throw AncestryFailure("the upstream's answer is larger than \(PackReader.size(limits.bytes))")
        }
        pending += bytes
        var offset = 0
        defer { pending.removeFirst(offset) }
        while state != .done {
            switch PktLine.read(pending, at: offset) {
            case .needMore:
                return
            case .malformed(let why):
                throw AncestryFailure("the upstream's answer is malformed (\(why))")
            case .line(let line, let next):
                offset = next
                try take(line)
            }
        }
        if offset < pending.count { throw AncestryFailure("the upstream's answer has data after its end") }
    }

    /// The answer has ended.
    /// - Throws: `AncestryFailure` when it ended early.
    package func finish() throws {
        guard state == .done, pending.isEmpty else { throw AncestryFailure("the upstream's answer ends early") }
    }

    private func take(_ line: PktLine) throws {
        switch (state, line) {
        case (.preamble, .data(let payload)):
            var text = String(decoding: payload, as: UTF8.self)
            if text.hasSuffix("\n") { text.removeLast() }
            if text.hasPrefix("ERR ") {
                throw AncestryFailure("the upstream refused the question: \(UploadPackAdvertisement.printable(String(text.dropFirst(4))))")
            }
            if version2 {
                guard text == "packfile" else {
                    throw AncestryFailure("the upstream's answer has an unexpected section \(UploadPackAdvertisement.printable(text))")
                }
                state = .pack
            } else if text == "NAK" || text.hasPrefix("ACK ") {
                // The common commits, then the pack follows.
                state = .pack
            } else {
                throw AncestryFailure("the upstream's answer is malformed (\(UploadPackAdvertisement.printable(text)))")
            }
        case (.pack, .data(let payload)):
            guard let band = payload.first else { throw AncestryFailure("the upstream's answer is malformed (an empty side-band line)") }
            switch band {
            case 1:
                do {
                    try payload.withUnsafeBytes { try reader.consume(UnsafeRawBufferPointer(rebasing: $0[1...])) }
                } catch let failure as PackReader.Failure {
                    throw AncestryFailure("the upstream's pack cannot be read: \(failure)")
                }
                guard reader.commits.count <= limits.commits else {
                    throw AncestryFailure("the upstream's answer holds more than \(limits.commits) commits")
                }
            case 2:
                break
            case 3:
                var message = Substring(String(decoding: payload.dropFirst(), as: UTF8.self))
                while let last = message.last, last.isWhitespace { message.removeLast() }
                throw AncestryFailure("the upstream failed: \(UploadPackAdvertisement.printable(String(message)))")
            default:
                throw AncestryFailure("the upstream's answer is malformed (side band \(band))")
            }
        case (.pack, .flush), (.pack, .responseEnd):
            do {
                try reader.finish()
            } catch let failure as PackReader.Failure {
                throw AncestryFailure("the upstream's pack cannot be read: \(failure)")
            }
            state = .done
        default:
            throw AncestryFailure("the upstream's answer is malformed (an unexpected \(line.kind))")
        }
    }

    /// Whether the answer proves `question`: a walk from a boundary through the answer's
    /// commits reaches `old`.
    package func proves(_ question: AncestryQuestion) -> Bool {
        let commits = reader.commits
        return question.boundaries.contains { PushHistory.reaches(question.old, from: $0, through: commits) }
    }
}

extension PktLine {
    /// The line's kind, for messages.
    var kind: String {
        switch self {
        case .data: "line"
        case .flush: "flush"
        case .delimiter: "delimiter"
        case .responseEnd: "response end"
        }
    }
}
