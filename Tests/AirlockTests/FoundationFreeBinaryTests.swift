import Foundation
import TestSupport
import XCTest
@testable import airlock

/// The airlock binary starts without Foundation: it links neither Foundation nor its ICU
/// data (what made the process weigh 28 MB idle and start in 5.5 ms; docs/benchmarks.md).
final class FoundationFreeBinaryTests: XCTestCase {
    /// With a dynamic standard library (debug builds) a module that imports Foundation makes
    /// the binary need libFoundation.so; with a static one (release) ICU's data is copied
    /// in, and its table of contents names every entry `icudtNNl/…`.
    func testTheBinaryNeedsNeitherFoundationNorICU() throws {
        let binary = TestPaths.airlock
        try Precondition.require(FileManager.default.isExecutableFile(atPath: binary), "the airlock binary is built at \(binary)")
        let dynamic = try Run.process(["readelf", "-d", binary])
        try Precondition.require(dynamic.status == 0, "readelf (binutils) reads \(binary): \(dynamic)")
        let needed = dynamic.stdout.split(separator: "\n").filter { $0.contains("(NEEDED)") }
        XCTAssertFalse(needed.isEmpty, dynamic.stdout)
        for line in needed {
            for library in ["libFoundation.so", "libFoundationInternationalization.so", "lib_FoundationICU.so",
                            "libFoundationNetworking.so", "libFoundationXML.so"] {
                XCTAssertFalse(line.contains("[\(library)]"), "\(binary) needs \(library)")
            }
        }
        let contents = try Data(contentsOf: URL(fileURLWithPath: binary), options: .alwaysMapped)
        XCTAssertNil(contents.range(of: Data("icudt".utf8)), "\(binary) holds ICU's data")
    }

    func testSessionTimesArePrintedAsBefore() {
        XCTAssertEqual(SessionCommand.format(epoch: 1_700_000_000), "2023-11-14 22:13 UTC")
        XCTAssertEqual(SessionCommand.format(epoch: 0), "1970-01-01 00:00 UTC")
        XCTAssertEqual(SessionCommand.format(epoch: 1_893_456_000 + 59), "2030-01-01 00:00 UTC")
    }
}
