import XCTest
@testable import Netns

final class SpawnUserTests: XCTestCase {
    func testRootIsFoundByNameAndByUID() throws {
        let byName = try Users.lookup("root")
        XCTAssertEqual(byName.uid, 0)
        XCTAssertEqual(byName.gid, 0)
        XCTAssertEqual(byName.name, "root")
        XCTAssertTrue(byName.groups.contains(0))
        XCTAssertEqual(try Users.lookup("0"), byName)
        XCTAssertEqual(try Users.lookup(uid: 0), byName)
    }

    func testUnknownNameIsAnErrorNamingIt() {
        XCTAssertThrowsError(try Users.lookup("no-such-airlock-user")) { error in
            XCTAssertEqual(error as? Users.LookupError, .unknownUser("no-such-airlock-user"))
            XCTAssertEqual(String(describing: error), "unknown user 'no-such-airlock-user'")
        }
    }

    func testUnknownUIDIsAnErrorNamingIt() {
        XCTAssertThrowsError(try Users.lookup("4000000001")) { error in
            XCTAssertEqual(error as? Users.LookupError, .unknownUser("4000000001"))
        }
    }

    func testMalformedNamesAreRefused() {
        for name in ["", "a/b", "a:b", "a\0b"] {
            XCTAssertThrowsError(try Users.lookup(name), "name \(name.debugDescription)") { error in
                XCTAssertEqual(error as? Users.LookupError, .invalidName(name))
            }
        }
    }
}
