#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Synchronization
import Logging

/// Holds the current policy of one sandbox and replaces it when its files change.
///
/// Readers take `current` (a lock and a copy of a value whose storage is shared). A reload
/// parses every file of the set (`PolicyFiles`) first and swaps only when all parsed; a
/// bad file keeps the old
/// policy, so a typo never opens or closes the sandbox by accident. Every reload attempt
/// is audited as `policy_reload` with `ok` and, on failure, the reason.
package final class PolicyStore: @unchecked Sendable {
    // @unchecked: `policy` and `fileStamp` are guarded by `lock`; the watch sources are
    // touched only under `lock` too. Everything else is immutable.
    private let lock = Mutex(())
    /// Serialises whole reloads, so an older read never replaces a newer one.
    private let reloadLock = Mutex(())
    private var policy: Policy
    private var fileStamp: [FileStamp?]
    /// A changed stamp seen on the last poll, waiting to hold still.
    private var pendingStamp: [FileStamp?]?
    private var sources: [DispatchSourceProtocol] = []
    private var observers: [@Sendable (Policy) -> Void] = []
    private let files: PolicyFiles?
    private let check: (@Sendable (String) -> String?)?
    private let extra: Policy?
    private let audit: AuditLog
    private let logger: Logger?
    private let pollInterval: Double
    private let queue = DispatchQueue(label: "airlock.policy-store")

    /// - Parameters:
    ///   - initial: the policy in force now (already merged with `extra`).
    ///   - files: the policy files to re-read on reload; nil when the policy came from flags only.
    ///   - check: vets each path of the set before a reload reads it (see `PolicyFiles.load`);
    ///     a refusal fails the reload like a bad line.
    ///   - extra: rules from command-line flags, merged into every reloaded file.
    ///   - audit: where `policy_reload` events go.
    ///   - logger: where reload outcomes are logged, if anywhere.
    ///   - pollInterval: seconds between checks of the files' identity and modification time.
    package init(
        initial: Policy, files: PolicyFiles?, check: (@Sendable (String) -> String?)? = nil, extra: Policy?, audit: AuditLog,
        logger: Logger? = nil, pollInterval: Double = 1
    ) {
        self.policy = initial
        self.files = files
        self.check = check
        self.extra = extra
        self.audit = audit
        self.logger = logger
        self.pollInterval = pollInterval
        self.fileStamp = files?.stamp() ?? []
    }

    /// A store that re-reads one file (`--policy FILE`).
    package convenience init(initial: Policy, path: String?, extra: Policy?, audit: AuditLog, logger: Logger? = nil, pollInterval: Double = 1) {
        self.init(initial: initial, files: path.map(PolicyFiles.init(file:)), extra: extra, audit: audit, logger: logger, pollInterval: pollInterval)
    }

    deinit {
        for source in sources { source.cancel() }
    }

    /// The policy in force.
    package var current: Policy {
        lock.withLock { _ in policy }
    }

    /// Calls `body` with every policy a reload takes, once it is in force, on the thread
    /// that reloaded. Reloads are serialised, and so are the calls.
    package func onReload(_ body: @escaping @Sendable (Policy) -> Void) {
        lock.withLock { _ in observers.append(body) }
    }

    /// Re-reads the files and swaps the policy if they parse. Without files, does nothing
    /// and returns true.
    /// - Returns: whether the new policy was taken.
    @discardableResult
    package func reload() -> Bool {
        reloadRefusal() == nil
    }

    /// Re-reads the files as `reload` does.
    /// - Returns: nil when the new policy was taken (or there are no files), else why not
    ///   (one line, ending "; keeping the previous policy").
    package func reloadRefusal() -> String? {
        guard let files else { return nil }
        return reloadLock.withLock { _ in reload(files: files) }
    }

    private func reload(files: PolicyFiles) -> String? {
        let stamp = files.stamp()
        let path = files.description
        do {
            var fresh = try files.load(check: check).policy
            if let extra { fresh = fresh.adding(rulesFrom: extra) }
            try fresh.checkListenerPorts()
            let observers = lock.withLock { _ in
                policy = fresh
                fileStamp = stamp
                return self.observers
            }
            audit.record(AuditEvent(.policyReload, ok: true, file: path))
            logger?.info("policy reloaded", metadata: ["file": "\(path)", "rules": "\(fresh.ruleCount)"])
            for observer in observers { observer(fresh) }
            return nil
        } catch {
            lock.withLock { _ in fileStamp = stamp }
            let reason = "\(error); keeping the previous policy"
            audit.record(AuditEvent(.policyReload, reason: reason, ok: false, file: path))
            logger?.error("policy reload failed", metadata: ["file": "\(path)", "reason": "\(reason)"])
            return reason
        }
    }

    /// Reloads on SIGHUP and when a file of the set changes, appears or disappears (checked
    /// every `pollInterval` seconds: device, inode, size and modification times of each file
    /// and of the drop-in directory, so editors that replace a file and drop-ins added or
    /// removed are seen too; a change is taken once it held still for one interval). Idempotent. SIGHUP's default action is replaced by "ignore" for the
    /// process.
    package func startWatching() {
        lock.withLock { _ in
            guard sources.isEmpty else { return }
            signal(SIGHUP, SIG_IGN)
            let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: queue)
            hangup.setEventHandler { [weak self] in self?.reload() }
            hangup.resume()
            sources.append(hangup)
            guard files != nil else { return }
            let timer = DispatchSource.makeTimerSource(queue: queue)
            let interval = DispatchTimeInterval.milliseconds(max(10, Int(pollInterval * 1000)))
            timer.schedule(deadline: .now() + interval, repeating: interval)
            timer.setEventHandler { [weak self] in self?.reloadIfChanged() }
            timer.resume()
            sources.append(timer)
        }
    }

    /// Stops watching for SIGHUP and file changes. Idempotent.
    package func stopWatching() {
        let stopped: [DispatchSourceProtocol] = lock.withLock { _ in
            defer { sources = [] }
            return sources
        }
        for source in stopped { source.cancel() }
    }

    /// One poll (the watch timer's): reloads once a change has held still for one poll, so
    /// a file caught half-written (truncated, then filled) is not taken or audited as broken.
    package func reloadIfChanged() {
        guard let files else { return }
        let now = files.stamp()
        let settled: Bool = lock.withLock { _ in
            guard now != fileStamp else {
                pendingStamp = nil
                return false
            }
            if pendingStamp == .some(now) { return true }
            pendingStamp = .some(now)
            return false
        }
        if settled { reload() }
    }
}
