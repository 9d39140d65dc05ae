#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import SystemPackage
import SystemCalls

/// Two namespaces made together (`NetworkNamespace.createUnnamedPair`), with what was
/// prepared inside each.
package struct NamespacePair<A, B>: ~Copyable {
    package let first: NetworkNamespace
    package let firstPrepared: A
    package let second: NetworkNamespace
    package let secondPrepared: B
}

/// A network namespace held by an open file descriptor; closing it (or dropping the value)
/// frees the namespace unless a pin or a process still holds it.
///
/// Move-only: the descriptor has exactly one owner and is closed exactly once.
package struct NetworkNamespace: ~Copyable {
    /// The open namespace file (nsfs).
    package let descriptor: FileDescriptor

    /// Takes ownership of an open namespace descriptor.
    package init(adopting descriptor: FileDescriptor) { self.descriptor = descriptor }

    deinit { try? descriptor.close() }

    /// Closes the descriptor now.
    /// - Throws: `Errno` from close(2).
    package consuming func close() throws {
        let descriptor = self.descriptor
        discard self
        try descriptor.close()
    }

    /// Gives up ownership: the caller closes the returned descriptor.
    package consuming func release() -> FileDescriptor {
        let descriptor = self.descriptor
        discard self
        return descriptor
    }

    /// Makes a new, unnamed network namespace with only a `lo` (down) in it.
    ///
    /// Done on a dedicated thread (`unshare(CLONE_NEWNET)`, open
    /// `/proc/thread-self/ns/net`), so no other thread changes namespace. Nothing is left
    /// behind: the namespace lives as long as the returned value (or a pin of it).
    /// - Parameter prepare: runs inside the new namespace on the same thread before it is
    ///   returned (one thread start instead of a second `withNamespace`); if it throws, the
    ///   namespace is freed and the error rethrown.
    /// - Throws: `SystemCallError`, or what `prepare` throws.
    /// - Requires: CAP_SYS_ADMIN.
    package static func createUnnamed(prepare: () throws -> Void = {}) throws -> NetworkNamespace {
        let fd: Int32 = try DedicatedThread.run { try unshareNew(prepare).fd }
        return NetworkNamespace(adopting: FileDescriptor(rawValue: fd))
    }

    /// Makes two unnamed namespaces at once, each on a thread of its own (the kernel's work
    /// for each overlaps), and runs `prepareFirst` and `prepareSecond` inside them; what
    /// they return (a netlink socket opened there, which keeps its namespace) comes back
    /// with each. All or nothing: if either fails, both namespaces are freed.
    /// - Throws: `SystemCallError`, or what a `prepare` throws (the first's first).
    /// - Requires: CAP_SYS_ADMIN.
    package static func createUnnamedPair<A, B>(
        prepareFirst: () throws -> A, prepareSecond: () throws -> B
    ) throws -> NamespacePair<A, B> {
        let (first, second) = try DedicatedThread.runBoth({ try unshareNew(prepareFirst) }, { try unshareNew(prepareSecond) })
        switch (first, second) {
        case let (.success(a), .success(b)):
            return NamespacePair(first: NetworkNamespace(adopting: FileDescriptor(rawValue: a.fd)), firstPrepared: a.prepared,
                                 second: NetworkNamespace(adopting: FileDescriptor(rawValue: b.fd)), secondPrepared: b.prepared)
        case let (.failure(error), other):
            if case let .success(b) = other { Glibc.close(b.fd) }
            throw error
        case let (.success(a), .failure(error)):
            Glibc.close(a.fd)
            throw error
        }
    }

    /// On the calling (dedicated) thread: a new namespace, its descriptor, and `prepare`
    /// run inside it; the descriptor is closed if `prepare` throws.
    private static func unshareNew<T>(_ prepare: () throws -> T) throws -> (fd: Int32, prepared: T) {
        let unshared = cnl_unshare_net()
        guard unshared == 0 else { throw SystemCallError("unshare(CLONE_NEWNET)", code: -unshared) }
        let fd = Glibc.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError.last("open /proc/thread-self/ns/net") }
        do {
            return (fd, try prepare())
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Opens the namespace at `path` (a pin such as `/run/netns/NAME`, or `/proc/PID/ns/net`).
    /// - Throws: `SystemCallError`; `EINVAL` if the file is not a network namespace.
    package static func open(path: String) throws -> NetworkNamespace {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError.last("open \(path)") }
        guard Pinning.isNamespaceFile(fd: fd) else {
            Glibc.close(fd)
            throw SystemCallError("open \(path): not a network namespace", code: EINVAL)
        }
        return NetworkNamespace(adopting: FileDescriptor(rawValue: fd))
    }

    /// Runs `body` on a dedicated thread that has entered this namespace.
    /// - Throws: `SystemCallError` from setns, or what `body` throws.
    /// - Requires: CAP_SYS_ADMIN.
    package func withNamespace<R>(_ body: () throws -> R) throws -> R {
        try Self.withNamespace(descriptor, body)
    }

    /// Runs `body` on a dedicated thread that has entered the namespace `descriptor`.
    ///
    /// The thread ends afterwards, so no thread is ever left in the namespace and the
    /// caller's thread never changes namespace.
    /// - Throws: `SystemCallError` from setns, or what `body` throws.
    /// - Requires: CAP_SYS_ADMIN.
    package static func withNamespace<R>(_ descriptor: FileDescriptor, _ body: () throws -> R) throws -> R {
        try DedicatedThread.run {
            let entered = cnl_setns_net(descriptor.rawValue)
            guard entered == 0 else { throw SystemCallError("setns(CLONE_NEWNET)", code: -entered) }
            return try body()
        }
    }

    /// Pins the namespace at `path` (`/run/netns/NAME`) so it outlives this process.
    /// - Throws: `SystemCallError`; `EEXIST` if `path` exists.
    /// - Requires: CAP_SYS_ADMIN.
    package func pin(at path: String) throws {
        try Pinning.pin(descriptor, at: path)
    }
}
