#if canImport(Glibc)
import Glibc
#endif

/// Forking Swift code: the child may go on running it only when the parent had one thread.
enum ForkSafety {
    /// fork copies only the calling thread: nothing may run on another one. Threads used
    /// before (the namespace builders' dedicated threads) have been joined; the kernel
    /// may take a moment to remove them from /proc/self/task (tens of microseconds: a
    /// joined thread is released just after it wakes the joiner), so the checks are
    /// 50 µs apart, for at most about 200 ms.
    static func waitUntilSingleThreaded(toStart what: String) throws {
        var threads = 0
        for _ in 0..<4000 {
            threads = taskCount()
            if threads == 1 { return }
            usleep(50)
        }
        throw CLIError("start \(what): airlock runs \(threads) threads, and fork copies only one")
    }

    private static func taskCount() -> Int {
        guard let directory = opendir("/proc/self/task") else { return -1 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { count += 1 }
        }
        return count
    }
}
