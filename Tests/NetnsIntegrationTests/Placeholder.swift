import XCTest
final class NetnsIntegrationTestsPlaceholder: XCTestCase { func testNothing() {} }
