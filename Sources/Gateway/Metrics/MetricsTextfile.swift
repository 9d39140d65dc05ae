#if canImport(Glibc)
import Glibc
#endif
import ServiceLifecycle
import GatewayCore

/// Writes the metrics to a file for node-exporter's textfile collector
/// (`gateway serve --metrics-textfile PATH`): to `PATH.tmp` in the same directory, then
/// renamed over `PATH`, so the collector never reads half a file. Written at start, every
/// `interval`, and once more at shutdown with the final counts. The gateway writes it as
/// its `--run-as` user, so the directory must be writable by that user.
package final class MetricsTextfile: Service {
    private let path: String
    private let metrics: GatewayMetrics
    private let interval: Duration

    /// A write failed; one line with the path and the system's reason.
    package struct Failure: Error, CustomStringConvertible {
        package let description: String
    }

    package init(path: String, metrics: GatewayMetrics, interval: Duration) {
        self.path = path
        self.metrics = metrics
        self.interval = interval
    }

    /// Writes the file now.
    /// - Throws: `Failure` naming the path and why it could not be written.
    package func write() throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw Failure(description: "cannot write metrics textfile \(temporary): \(String(cString: strerror(errno)))") }
        var text = metrics.exposition()
        let written = text.withUTF8 { buffer -> Bool in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
        let reason = String(cString: strerror(errno))
        close(fd)
        guard written else {
            unlink(temporary)
            throw Failure(description: "cannot write metrics textfile \(temporary): \(reason)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw Failure(description: "cannot rename metrics textfile to \(path): \(reason)")
        }
    }

    /// Writes every `interval` until graceful shutdown, then once more. A failed write is
    /// tried again at the next interval (the file keeps its last complete contents).
    package func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            try? write()
        }
        try? write()
    }
}
