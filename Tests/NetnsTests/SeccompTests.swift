@testable import Netns
import TestSupport
import XCTest

/// The seccomp programs a sandbox loads on x86-64 were compiled ahead of time from the rules
/// in `seccomp.c` (`scripts/seccomp-programs`): a run no longer spends a tenth of its
/// instructions compiling them. They must be exactly what libseccomp compiles from those
/// rules now, or a change to the rules would silently not apply. What the programs refuse
/// is tested by running commands under them (`ContainmentTests`, `SpawnTests`).
final class SeccompTests: XCTestCase {
    func testTheProgramsLoadedAreWhatLibseccompCompilesFromTheRulesNow() throws {
        try Precondition.require(SeccompFilter.isAvailable, "this kernel loads seccomp filters")
        #if arch(x86_64)
        let generatedWith = try XCTUnwrap(SeccompFilter.precompiledWith, "x86-64 builds carry the compiled programs")
        let linked = SeccompFilter.libseccompVersion
        // Another libseccomp may lay out the same rules differently (what the programs refuse
        // is still tested by the containment tests); the same one must give the same bytes.
        try Precondition.require(
            generatedWith == linked,
            "the programs were compiled with libseccomp \(generatedWith) and this build links \(linked): "
                + "run scripts/seccomp-programs to compare them")
        for nested in [false, true] {
            let loaded = try SeccompFilter(allowNestedNamespaces: nested).bytes
            let compiled = try SeccompFilter.compiledNow(allowNestedNamespaces: nested).bytes
            XCTAssertGreaterThan(compiled.count, 8 * 20, "a program of a few instructions is not the filter")
            if loaded != compiled {
                let first = zip(loaded, compiled).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                    ?? min(loaded.count, compiled.count)
                XCTFail(
                    "allow_nested_namespaces=\(nested): Sources/CNetlink/seccomp_programs.h is not what the rules in seccomp.c "
                        + "compile to (\(loaded.count / 8) instructions against \(compiled.count / 8), the first difference in "
                        + "instruction \(first / 8)); run scripts/seccomp-programs and commit the header")
            }
        }
        // The two programs differ by the user-namespace rules, and each is loaded for its flag.
        XCTAssertNotEqual(
            try SeccompFilter(allowNestedNamespaces: false).bytes, try SeccompFilter(allowNestedNamespaces: true).bytes)
        #else
        XCTAssertNil(SeccompFilter.precompiledWith, "only x86-64 builds carry compiled programs")
        #endif
    }
}
