import Foundation

/// A fixture a root-tier test class builds once (in `class func setUp`) and its tests
/// share: made only as root inside the throwaway namespace; its failure to build is what
/// every test of the class then reports.
public final class SharedRig<Rig>: @unchecked Sendable {
    private var rig: Rig?
    private var error: Error?
    private let name: String

    /// `name` says which rig in the message when it is missing.
    public init(_ name: String) {
        self.name = name
    }

    /// Builds the rig, when this is the root tier.
    public func setUp(_ make: () throws -> Rig) {
        guard getuid() == 0, ProcessInfo.processInfo.environment["AIRLOCK_THROWAWAY_NS"] == "1" else { return }
        do { rig = try make() } catch { self.error = error }
    }

    /// Releases the rig (its directories and servers go with it).
    public func tearDown() {
        rig = nil
    }

    /// The rig for one test.
    /// - Throws: `RootTier.require`'s skip or failure, the error that stopped the build, or
    ///   an unmet precondition when it was never built.
    public func get(file: StaticString = #filePath, line: UInt = #line) throws -> Rig {
        try RootTier.require(file: file, line: line)
        if let error { throw error }
        guard let rig else { throw Precondition.unmet("\(name) not set up", file: file, line: line) }
        return rig
    }
}

/// How `airlock run` is started in the end-to-end tests: as root for an ordinary account,
/// or rootless as that account.
public enum RunMode: CaseIterable, CustomStringConvertible, Sendable {
    case root, rootless
    public var description: String { self == .root ? "root" : "rootless" }
}
