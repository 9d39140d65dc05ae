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
    private final class Work {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Runs `body` on a new thread and waits for it.
    /// - Throws: whatever `body` throws, or `SystemCallError` if no thread can be made.
    static func run<R>(_ body: () throws -> R) throws -> R {
        try withoutActuallyEscaping(body) { body in
            var result: Result<R, Error>?
            let work = Work { result = Result { try body() } }
            let argument = Unmanaged.passRetained(work).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { argument in
                Unmanaged<Work>.fromOpaque(argument!).takeRetainedValue().run()
                return nil
            }, argument)
            guard created == 0 else {
                Unmanaged<Work>.fromOpaque(argument).release()
                throw SystemCallError("pthread_create", code: created)
            }
            pthread_join(thread, nil)
            guard let result else { throw SystemCallError("pthread_join", code: EINTR) }
            return try result.get()
        }
    }
}
