import XCTest
@testable import Gateway
@testable import GatewayCore

/// `Secret`: every way Swift prints a value shows `<redacted>`, never the value, also when
/// the secret is a field of something printed.
final class SecretTests: XCTestCase {
    let value = "ghp_SECRETvalue_0123456789abcdef"

    struct Holder {
        var name = "session"
        var token: Secret
    }

    func testEveryPrintedFormIsRedacted() {
        let secret = Secret(value)
        var dumped = ""
        dump(secret, to: &dumped)
        var dumpedHolder = ""
        dump(Holder(token: secret), to: &dumpedHolder)
        let forms = [
            "description": secret.description,
            "debugDescription": secret.debugDescription,
            "interpolation": "\(secret)",
            "String(describing:)": String(describing: secret),
            "String(reflecting:)": String(reflecting: secret),
            "dump": dumped,
            "holder": String(describing: Holder(token: secret)),
            "holder reflecting": String(reflecting: Holder(token: secret)),
            "holder dump": dumpedHolder,
            "array": "\([secret])",
            "optional": String(describing: Optional(secret)),
        ]
        for (form, text) in forms {
            XCTAssertFalse(text.contains(value), "\(form) shows the value: \(text)")
            XCTAssertFalse(text.contains("SECRETvalue"), "\(form) shows part of the value: \(text)")
        }
        XCTAssertEqual(secret.description, "<redacted>")
        XCTAssertEqual(secret.debugDescription, "<redacted>")
        XCTAssertTrue(Mirror(reflecting: secret).children.isEmpty, "reflection sees no stored value")
        XCTAssertEqual(secret.withRevealed { $0 }, value, "the value is there, behind withRevealed")
    }
}
