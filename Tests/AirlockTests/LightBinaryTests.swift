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

    /// Each shared library costs every airlock start an open, five mappings, its relocations
    /// and its symbol lookups, and a run is three starts. libstdc++, libgcc, zlib, libcap and
    /// libseccomp are linked in from their archives (Package.swift, `lightStartLinking`;
    /// scripts/setup collects them), relative relocations are packed (`.relr.dyn`), and the
    /// binary looks for libraries in the system's directories only: a run path of `$ORIGIN`
    /// (SwiftPM's default, dropped by `--disable-local-rpath` in the scripts' builds) costs
    /// a dozen failed opens per library, and would load a library planted beside the binary
    /// into every root airlock.
    func testTheBinaryLoadsOnlyTheSharedLibrariesItCannotCarry() throws {
        let binary = TestPaths.airlock
        let dynamic = try Run.process(["readelf", "--dynamic", "-W", binary])
        try Precondition.require(dynamic.status == 0, "readelf (binutils) reads \(binary): \(dynamic)")
        let needed = dynamic.stdout.split(separator: "\n").compactMap { line -> String? in
            guard line.contains("(NEEDED)"), let open = line.firstIndex(of: "["), let close = line.lastIndex(of: "]")
            else { return nil }
            return String(line[line.index(after: open)..<close])
        }
        XCTAssertTrue(needed.contains("libmnl.so.0"), "\(needed)")
        for carried in ["libstdc++.so.6", "libgcc_s.so.1", "libz.so.1", "libcap.so.2", "libseccomp.so.2"] {
            XCTAssertFalse(needed.contains(carried), "\(binary) loads \(carried) at every start; run scripts/setup "
                           + "(it collects the archives into .build/static-libs) and build again")
        }
        let runPath = dynamic.stdout.split(separator: "\n").filter { $0.contains("(RUNPATH)") || $0.contains("(RPATH)") }
        XCTAssertFalse(runPath.contains { $0.contains("$ORIGIN") },
                       "\(binary) searches its own directory for libraries: \(runPath); build with --disable-local-rpath")
        let sections = try Run.process(["readelf", "--section-headers", "-W", binary])
        XCTAssertTrue(sections.stdout.contains(".relr.dyn"), "\(binary) has no packed relative relocations")
    }
}
