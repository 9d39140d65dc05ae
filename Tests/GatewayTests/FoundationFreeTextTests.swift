import Foundation
import NIOCore
import XCTest
@testable import Gateway
@testable import GatewayCore

/// The product does its text, date and JSON work without Foundation (see
/// docs/architecture.md); these check the replacements against Foundation itself on the
/// inputs that differ most often: Unicode spaces, line breaks, time zones, odd JSON.
final class FoundationFreeTextTests: XCTestCase {
    let texts = [
        "", " ", "\t a b \t", "\n token \r\n", "\u{00A0}x\u{3000}", "\u{2028}x\u{2029}", " \u{0301}x ",
        "x\u{0085}", "\u{200B}x\u{200B}", "  airlock_s_abc\n", "a b", "\r\n\r\n",
    ]

    func testTrimmingAgreesWithFoundation() {
        for text in texts {
            XCTAssertEqual(text.trimmingWhitespace(), text.trimmingCharacters(in: .whitespaces), "\(text.debugDescription)")
            XCTAssertEqual(text.trimmingWhitespaceAndNewlines(), text.trimmingCharacters(in: .whitespacesAndNewlines),
                           "\(text.debugDescription)")
        }
    }

    /// Every scalar of the Basic Multilingual Plane (where Unicode's white space is) is
    /// trimmed exactly when Foundation's character sets hold it.
    func testTheTrimmedScalarsAreFoundationsSets() {
        for value in UInt32(0)...0xFFFF {
            guard let scalar = Unicode.Scalar(value) else { continue }
            let text = String(Character(scalar))
            XCTAssertEqual(text.trimmingWhitespace().isEmpty, CharacterSet.whitespaces.contains(scalar), "U+\(String(value, radix: 16))")
            XCTAssertEqual(text.trimmingWhitespaceAndNewlines().isEmpty, CharacterSet.whitespacesAndNewlines.contains(scalar),
                           "U+\(String(value, radix: 16))")
        }
    }

    func testReplacingAndPaddingAgreeWithFoundation() {
        for text in texts + ["a|b`c", "line\r\nnext|", "||"] {
            XCTAssertEqual(text.replacingASCII("\n", with: " "), text.replacingOccurrences(of: "\n", with: " "), "\(text.debugDescription)")
            XCTAssertEqual(text.replacingASCII("|", with: "\\|"), text.replacingOccurrences(of: "|", with: "\\|"))
        }
        for (text, length) in [("3m", 5), ("12345", 5), ("123456", 5), ("", 2), ("NAME", 7)] {
            XCTAssertEqual(text.padded(toLength: length), text.padding(toLength: length, withPad: " ", startingAt: 0))
        }
    }

    func testExpiresAtIsReadAsRFC3339LikeFoundation() {
        let formatter = ISO8601DateFormatter()
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for text in ["2023-11-14T22:15:20Z", "2023-11-14T23:15:20+01:00", "2023-11-14T20:45:20-01:30", "2024-02-29T00:00:00Z",
                     "1969-12-31T23:59:59Z", "2023-11-14T22:15:20.250Z", "2023-11-14T22:15:20.5+02:00", "2100-03-01T12:00:00Z"] {
            let foundation = formatter.date(from: text) ?? fractional.date(from: text)
            XCTAssertNotNil(foundation, text)
            XCTAssertEqual(LFSBatch.parseDate(text)?.timeIntervalSince1970, foundation?.timeIntervalSince1970, text)
        }
        for text in ["", "2023-11-14", "2023-11-14T22:15:20", "2023-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2023-11-14T24:00:00Z",
                     "2023-11-14T22:15:20Zjunk", "2023-11-14T22:15:20.Z", "tomorrow", "2023-11-14 22:15:20Z"] {
            XCTAssertNil(LFSBatch.parseDate(text), text)
        }
    }

    func testExpiresAtWithAnOffsetAndExpiresInAsAFraction() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        XCTAssertEqual(LFSBatch.lifetime(of: ["expires_at": "2023-11-14T23:15:20+01:00"], now: now), 120)
        XCTAssertEqual(LFSBatch.lifetime(of: ["expires_in": 90.9], now: now), 90)
        XCTAssertNil(LFSBatch.lifetime(of: ["expires_in": "60", "expires_at": 5], now: now))
    }

    /// Fields the gateway does not know pass through the rewrite as Foundation's
    /// JSONSerialization would have written them (sorted keys, numbers, nulls, nesting).
    func testRewriteKeepsUnknownFieldsAsFoundationWritesThem() throws {
        let body = """
        {"transfer":"basic","hash_algo":"sha256","extra":{"z":[1,2.5,null,true,"a/b"],"a":-7},
         "objects":[{"oid":"abab","size":12345678901,"note":null,"actions":{"download":{"href":"https://storage.example.net/o","expires_in":60}}},
                    {"oid":"cdcd","size":1,"error":{"code":404,"message":"Not found"}}]}
        """
        let result = LFSBatch.rewrite(ByteBuffer(string: body), operation: .download) { _, _, _, _ in
            (url: "http://airlock.internal/lfs/ID", expiresIn: 60)
        }
        guard case .success(let text) = result else { return XCTFail("\(result)") }
        var expected = try JSONSerialization.jsonObject(with: Data(body.utf8)) as! [String: Any]
        var objects = expected["objects"] as! [[String: Any]]
        objects[0]["actions"] = ["download": ["href": "http://airlock.internal/lfs/ID", "expires_in": 60]]
        objects[0]["authenticated"] = true
        expected["objects"] = objects
        let written = try JSONSerialization.data(withJSONObject: expected, options: [.sortedKeys])
        XCTAssertEqual(text, String(decoding: written, as: UTF8.self))
    }
}
