import Gateway
import NIOCore
import NIOPosix
import XCTest

/// The name lookup threads start with the first lookup, run every lookup off the event
/// loop, and refuse lookups once stopped instead of leaving them waiting.
final class LookupThreadsTests: XCTestCase {
    func testTheFirstLookupStartsTheThreadsAndRunsOffTheEventLoop() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let lookups = LookupThreads(numberOfThreads: 2)
        defer { lookups.shutdown() }
        XCTAssertFalse(lookups.started, "nothing starts before a lookup")
        let loop = group.next()
        let results = try EventLoopFuture.whenAllSucceed((0..<8).map { index in
            lookups.run(on: loop) { () -> (Int, Bool) in (index, loop.inEventLoop) }
        }, on: loop).wait()
        XCTAssertTrue(lookups.started)
        XCTAssertEqual(results.map(\.0), Array(0..<8))
        XCTAssertEqual(results.map(\.1), Array(repeating: false, count: 8), "a lookup never blocks the event loop")
    }

    func testALookupAfterShutdownFailsAtOnce() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        for startedFirst in [false, true] {
            let lookups = LookupThreads(numberOfThreads: 1)
            if startedFirst { lookups.start() }
            lookups.shutdown()
            XCTAssertThrowsError(try lookups.run(on: group.next()) { 1 }.wait(), "started first: \(startedFirst)") { error in
                XCTAssertTrue(error is NIOThreadPoolError.ThreadPoolInactive, "\(error)")
            }
        }
    }
}
