#if canImport(Glibc)
import Glibc
#endif
import SystemCalls

/// Runs work on a fresh thread that exists only for that work.
///
/// `setns` and `unshare(CLONE_NEWNET)` change the calling thread only; doing them on a
/// thread made for the purpose, which ends afterwards, means no shared or async thread
/// ever runs in the wrong namespace.
enum DedicatedThread {
    /// Runs `body` on a new thread and waits for it.
    /// - Throws: whatever `body` throws, or `SystemCallError` if no thread can be made.
    static func run<R>(_ body: () throws -> R) throws -> R {
        try withoutActuallyEscaping(body) { body in
            var result: Result<R, Error>?
            let thread = try ThreadWork.start { result = Result { try body() } }.get()
            pthread_join(thread, nil)
            guard let result else { throw SystemCallError("pthread_join", code: EINTR) }
            return try result.get()
        }
    }
}

extension DedicatedThread {
    /// Runs `first` and `second` on two new threads at once and waits for both: work of
    /// two namespaces that does not depend on each other (making S and G) overlaps.
    /// - Returns: how each ended, so the caller can free what one made when the other failed.
    /// - Throws: `SystemCallError` if no thread can be made (then neither ran).
    static func runBoth<A, B>(_ first: () throws -> A, _ second: () throws -> B) throws -> (Result<A, Error>, Result<B, Error>) {
        try withoutActuallyEscaping(first) { first in
            try withoutActuallyEscaping(second) { second in
                var firstResult: Result<A, Error>?
                var secondResult: Result<B, Error>?
                let firstThread = try ThreadWork.start { firstResult = Result { try first() } }.get()
                let secondThread: pthread_t
                switch ThreadWork.start({ secondResult = Result { try second() } }) {
                case let .success(thread):
                    secondThread = thread
                case let .failure(error):
                    pthread_join(firstThread, nil)
                    // What the first made is freed by the caller's error path: hand it back.
                    if case .success = firstResult { return (firstResult!, .failure(error)) }
                    throw error
                }
                pthread_join(firstThread, nil)
                pthread_join(secondThread, nil)
                guard let firstResult, let secondResult else { throw SystemCallError("pthread_join", code: EINTR) }
                return (firstResult, secondResult)
            }
        }
    }
}

/// A thread of its own for work that outlives the caller (a connection's request, a
/// signal forwarder).
package enum DetachedThread {
    /// Starts `body` on a new, detached thread; false when none can be made.
    package static func start(_ body: @escaping () -> Void) -> Bool {
        guard case let .success(thread) = ThreadWork.start(body) else { return false }
        pthread_detach(thread)
        return true
    }
}

/// One closure on a new thread: what both kinds of thread above start.
private final class ThreadWork {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }

    static func start(_ body: @escaping () -> Void) -> Result<pthread_t, SystemCallError> {
        let argument = Unmanaged.passRetained(ThreadWork(body)).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { argument in
            Unmanaged<ThreadWork>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, argument)
        guard created == 0 else {
            Unmanaged<ThreadWork>.fromOpaque(argument).release()
            return .failure(SystemCallError("pthread_create", code: created))
        }
        return .success(thread)
    }
}
