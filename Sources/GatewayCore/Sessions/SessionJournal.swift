#if canImport(Glibc)
import Glibc
#endif
import SystemCalls

/// The session file of a persistent gateway (`/run/airlock/NAME/sessions`): one descriptor,
/// opened while the gateway is still root, that `SessionStore` appends its changes to.
///
/// The file is owned by root, mode 0600, on tmpfs (gone at reboot). It holds the digests of
/// session tokens, never the tokens, and the upstream token of each live session, which a
/// restored session needs to be served: no more than root could read from the gateway's
/// memory. Each change is one line (`SessionJournalRecord`) written with one `write(2)`, so a
/// crash leaves at most a torn last line, which `replay` ignores. A file not owned by the
/// expected account, or with any group or other permission bit, is not read: it is removed
/// and made anew. When a write fails the file is emptied and no longer written (its sessions
/// would be lost at the next start, never revived), with one warning.
///
/// Not thread-safe by itself: the owning store calls it under its lock only.
package final class SessionJournal: @unchecked Sendable {
    /// Where the session file of sandbox `name` lives: `/run/airlock/NAME/sessions`.
    package static func path(sandbox name: String, runDirectory: String = "/run/airlock") -> String {
        "\(runDirectory)/\(name)/sessions"
    }

    /// The longest line read back; longer ones make the file unreadable.
    package static let maximumLineBytes = 1 << 20
    /// Bytes appended after the last rewrite at least before the file is rewritten with
    /// the live sessions and tombstones only.
    package static let compactionThreshold = 4 << 20

    /// Why the file could not be read back; never names a value of it.
    package struct Unreadable: Error, CustomStringConvertible, Equatable {
        package var description: String
    }

    package let path: String
    private var descriptor: CInt
    private let warn: @Sendable (String) -> Void
    private var broken = false
    private var appendedSinceRewrite = 0
    private var rewrittenSize = 0

    /// Opens (or creates) the session file at `path`: `O_RDWR|O_APPEND|O_CREAT|O_CLOEXEC|O_NOFOLLOW`,
    /// mode 0600. A symbolic link, a file of another kind, one not owned by `owner` or one
    /// with group or other permission bits is refused (not read) with one warning, removed
    /// and made anew.
    /// - Parameters:
    ///   - owner: the account that must own the file (root for a gateway; tests, themselves).
    ///   - warn: where the one-line warnings go (standard error for a gateway); they never
    ///     contain anything of the file's content.
    /// - Throws: `SystemCallError` when the file cannot be opened or made.
    /// - Requires: write access to the directory (root for `/run/airlock/NAME`).
    package init(path: String, owner: uid_t = 0, warn: @escaping @Sendable (String) -> Void) throws {
        self.path = path
        self.warn = warn
        let flags = O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW
        var fd = retryingInterrupted { open(path, flags, 0o600) }
        var refusal: String?
        if fd < 0 {
            guard errno == ELOOP else { throw SystemCallError.last("open the session file \(path)") }
            refusal = "is a symbolic link"
        } else {
            var info = stat()
            guard fstat(fd, &info) == 0 else {
                let error = SystemCallError.last("stat the session file \(path)")
                close(fd)
                throw error
            }
            refusal = Self.refusal(info, owner: owner)
            if refusal != nil { close(fd) }
        }
        if let refusal {
            warn("airlock: the session file \(path) \(refusal); not read, its sessions are lost, replaced by an empty one")
            guard unlink(path) == 0 else { throw SystemCallError.last("remove the refused session file \(path)") }
            fd = retryingInterrupted { open(path, flags | O_EXCL, 0o600) }
            guard fd >= 0 else { throw SystemCallError.last("create the session file \(path)") }
        }
        descriptor = fd
        // The umask may only have taken bits away; set exactly 0600 on what was made.
        guard fchmod(fd, 0o600) == 0 else {
            let error = SystemCallError.last("chmod 0600 the session file \(path)")
            close(fd)
            throw error
        }
    }

    /// A session file opened (and vetted) by `init(path:owner:warn:)` in another process
    /// (the gateway daemon's opener, which may write `/run/airlock/NAME`); `descriptor` is
    /// owned from here on.
    package init(path: String, adopting descriptor: CInt, warn: @escaping @Sendable (String) -> Void) {
        self.path = path
        self.descriptor = descriptor
        self.warn = warn
    }

    /// The open file, for handing it to another process (the duplicate it gets stays
    /// valid when this journal closes its own).
    package var fileDescriptor: CInt { descriptor }

    deinit {
        close(descriptor)
    }

    /// Why a file with `info` is not read, or nil when it is a regular file owned by
    /// `owner` with no group or other permission bit.
    private static func refusal(_ info: stat, owner: uid_t) -> String? {
        if (info.st_mode & S_IFMT) != S_IFREG { return "is not a regular file" }
        if info.st_uid != owner || info.st_mode & 0o077 != 0 {
            let mode = String(info.st_mode & 0o7777, radix: 8)
            return "must be owned by uid \(owner) with mode 0600 (it has uid \(info.st_uid), mode 0\(mode))"
        }
        return nil
    }

    /// Reads every complete record from the start, in order, and hands each to `apply`.
    /// A last line without its newline (a write a crash cut short) is ignored.
    /// - Throws: `Unreadable` for a read error, an over-long or malformed line (which
    ///   record, and what is wrong, never its content), or whatever `apply` throws.
    package func replay(_ apply: (SessionJournalRecord) throws -> Void) throws {
        var offset: off_t = 0
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var lineNumber = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { buffer in
                retryingInterrupted { pread(descriptor, buffer.baseAddress, buffer.count, offset) }
            }
            if n < 0 { throw Unreadable(description: "read: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            offset += off_t(n)
            pending += chunk[0..<n]
            var start = pending.startIndex
            while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                lineNumber += 1
                do {
                    try apply(try SessionJournalRecord(parsing: pending[start..<newline]))
                } catch let error as SessionJournalRecord.Malformed {
                    throw Unreadable(description: "record \(lineNumber): \(error.description)")
                }
                start = newline + 1
            }
            pending.removeSubrange(..<start)
            guard pending.count <= Self.maximumLineBytes else {
                throw Unreadable(description: "record \(lineNumber + 1) is longer than \(Self.maximumLineBytes) bytes")
            }
        }
        rewrittenSize = Int(offset)
    }

    /// Appends one record with one `write(2)`.
    package func append(_ record: SessionJournalRecord) {
        let line = record.line
        if write(line) { appendedSinceRewrite += line.count }
    }

    /// Whether enough was appended since the last rewrite that the file should be rewritten.
    package var wantsRewrite: Bool {
        !broken && appendedSinceRewrite > max(Self.compactionThreshold, 2 * rewrittenSize)
    }

    /// Replaces the file's content with `records`: `ftruncate(fd, 0)`, then one `write(2)`.
    package func rewrite(_ records: [SessionJournalRecord]) {
        guard !broken else { return }
        guard retryingInterrupted({ ftruncate(descriptor, 0) }) == 0 else {
            fail("cannot empty it: \(String(cString: strerror(errno)))")
            return
        }
        let bytes = records.flatMap(\.line)
        if write(bytes) {
            appendedSinceRewrite = 0
            rewrittenSize = bytes.count
        }
    }

    /// Logs a warning of the store's (one line, no secret) through this file's sink.
    package func warning(_ line: String) {
        warn(line)
    }

    private func write(_ bytes: [UInt8]) -> Bool {
        guard !broken else { return false }
        guard !bytes.isEmpty else { return true }
        let n = bytes.withUnsafeBytes { buffer in
            retryingInterrupted { Glibc.write(descriptor, buffer.baseAddress, buffer.count) }
        }
        if n == bytes.count { return true }
        fail(n < 0 ? String(cString: strerror(errno)) : "short write")
        return false
    }

    /// Stops writing for good and empties the file, so no session of it can return at
    /// the next start that this process has since revoked.
    private func fail(_ why: String) {
        broken = true
        _ = retryingInterrupted { ftruncate(descriptor, 0) }
        warn("airlock: cannot write the session file \(path) (\(why)); emptied it, sessions from now on will not survive a restart")
    }
}
