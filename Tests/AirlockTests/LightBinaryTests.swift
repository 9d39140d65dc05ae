import TestSupport
import XCTest

@testable import airlock

/// What keeps every airlock process's start light (docs/architecture.md, "Decisions": a
/// lighter process).
final class LightBinaryTests: XCTestCase {
    /// The executable exports none of its own symbols: `--static-swift-stdlib` links with
    /// `-export-dynamic`, which put all of airlock's 25,000 Swift symbols in the dynamic
    /// symbol table (2.5 MB mapped at every start, searched by the runtime's start-up
    /// `dladdr`). Package.swift links with `--no-export-dynamic`. A debug build (dynamic
    /// standard library) exports nothing either way; the release build is the one this
    /// guards: `AIRLOCK_BINARY=.build/release/airlock swift test --filter LightBinaryTests`.
    /// `airlock --version` answers before the command tree is built (the parser's
    /// reflection over it was a quarter of the start), with the line the parser would print.
    func testVersionIsTheParsersLineWithoutTheParser() throws {
        let version = try Run.airlock(["--version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertEqual(version.stdout, Airlock.configuration.version + "\n")
        XCTAssertEqual(version.stdout, AirlockVersion.description + "\n")
        XCTAssertEqual(version.stderr, "")
        // With anything after it, the parser answers, and says the same.
        let parsed = try Run.airlock(["--version", "run"])
        XCTAssertEqual(parsed.stdout, version.stdout, "\(parsed)")
    }

    func testTheBinaryExportsNoSymbolsOfItsOwn() throws {
        let binary = TestPaths.airlock
        let symbols = try Run.process(["readelf", "--dyn-syms", "-W", binary])
        try Precondition.require(symbols.status == 0, "readelf (binutils) reads \(binary): \(symbols)")
        let defined = symbols.stdout.split(separator: "\n").filter { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return fields.count >= 8 && fields[0].hasSuffix(":") && fields[6] != "UND"
        }
        let swift = defined.filter { $0.contains(" $s") }
        XCTAssertEqual(swift.count, 0, "\(binary) exports Swift symbols, e.g. \(swift.prefix(3))")
        XCTAssertLessThan(defined.count, 50, "\(binary) exports \(defined.count) symbols")
    }
}
