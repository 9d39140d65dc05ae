import FoundationEssentials
import Netns
import XCTest

/// State files' dates: written as Foundation's `.iso8601` strategy wrote them (so older
/// state files still read, and newer ones read in older airlock), and refused when malformed.
final class StateDateTests: XCTestCase {
    private struct Stamp: Codable, Equatable {
        var at: Date
    }

    private func foundationJSON(_ date: Date) throws -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(Stamp(at: date)), as: UTF8.self)
    }

    private func ownJSON(_ date: Date) throws -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom(StateDate.encode)
        return String(decoding: try encoder.encode(Stamp(at: date)), as: UTF8.self)
    }

    private func decode(_ json: String, own: Bool) throws -> Date {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = own ? .custom(StateDate.decode) : .iso8601
        return try decoder.decode(Stamp.self, from: Data(json.utf8)).at
    }

    func testItWritesWhatFoundationWritesAndReadsItBack() throws {
        XCTAssertEqual(StateDate.format(Date(timeIntervalSince1970: 1_796_473_620)), "2026-12-05T12:27:00Z")
        XCTAssertEqual(StateDate.format(Date(timeIntervalSince1970: 0)), "1970-01-01T00:00:00Z")
        XCTAssertEqual(StateDate.format(Date(timeIntervalSince1970: -1)), "1969-12-31T23:59:59Z")
        XCTAssertEqual(StateDate.format(Date(timeIntervalSince1970: 951_825_600)), "2000-02-29T12:00:00Z")
        // Leap days, century years, ends of months and years, both sides of the epoch.
        var seconds: Int64 = -2_208_988_800  // 1900-01-01
        var checked = 0
        while seconds < 4_102_444_800 {  // 2100-01-01
            let date = Date(timeIntervalSince1970: Double(seconds))
            XCTAssertEqual(try ownJSON(date), try foundationJSON(date), "at \(seconds)")
            XCTAssertEqual(try decode(try foundationJSON(date), own: true), date, "at \(seconds)")
            XCTAssertEqual(try decode(try ownJSON(date), own: false), date, "at \(seconds)")
            seconds += 86_400 * 3 + 3_601 * 7 + 13
            checked += 1
        }
        XCTAssertGreaterThan(checked, 10_000)
    }

    func testItDropsFractionsOfASecond() {
        XCTAssertEqual(StateDate.format(Date(timeIntervalSince1970: 1_796_473_620.999)), "2026-12-05T12:27:00Z")
        XCTAssertEqual(StateDate.format(Date(timeIntervalSince1970: -0.5)), "1969-12-31T23:59:59Z")
    }

    func testDatesOutsideFourDigitYearsAreWrittenAsTheNearestOneInside() {
        XCTAssertEqual(StateDate.format(Date(timeIntervalSince1970: .infinity)), "9999-12-31T23:59:59Z")
        XCTAssertEqual(StateDate.format(Date(timeIntervalSince1970: -.infinity)), "0000-01-01T00:00:00Z")
        XCTAssertEqual(StateDate.format(Date(timeIntervalSince1970: 1e15)), "9999-12-31T23:59:59Z")
        XCTAssertEqual(StateDate.parse(StateDate.format(.distantFuture)), .distantFuture)
        XCTAssertEqual(StateDate.parse("0000-01-01T00:00:00Z"), Date(timeIntervalSince1970: -62_167_219_200))
    }

    func testItReadsOffsets() {
        XCTAssertEqual(StateDate.parse("2026-12-05T13:27:00+01:00"), Date(timeIntervalSince1970: 1_796_473_620))
        XCTAssertEqual(StateDate.parse("2026-12-05T07:57:00-04:30"), Date(timeIntervalSince1970: 1_796_473_620))
    }

    func testItRefusesWhatIsNotADate() throws {
        for bad in ["", "2026-12-05", "2026-12-05T12:27:00", "2026-12-05T12:27:00z", "2026-12-05 12:27:00Z",
                    "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
                    "2026-04-31T00:00:00Z", "2026-12-00T00:00:00Z", "2026-12-05T24:00:00Z", "2026-12-05T12:60:00Z",
                    "2026-12-05T12:27:60Z", "2026-12-05T12:27:00.5Z", "2026-12-05T12:27:00Z ", "+026-12-05T12:27:00Z",
                    "2026-12-05T12:27:00+24:00", "2026-12-05T12:27:00+01-00", "２026-12-05T12:27:00Z"] {
            XCTAssertNil(StateDate.parse(bad), bad)
        }
        XCTAssertNotNil(StateDate.parse("2024-02-29T00:00:00Z"))
        XCTAssertNotNil(StateDate.parse("2000-02-29T00:00:00Z"))
        XCTAssertThrowsError(try decode(#"{"at": "2026-02-30T00:00:00Z"}"#, own: true)) { error in
            XCTAssertTrue(String(describing: error).contains("Expected date string to be ISO8601-formatted."), "\(error)")
        }
    }
}
