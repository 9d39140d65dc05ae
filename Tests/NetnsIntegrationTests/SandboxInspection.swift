import Foundation
import Netns
import XCTest

/// What a namespace looks like over netlink, read back for assertions.
struct NamespaceView {
    var links: [Link]
    var addresses: [InterfaceAddress]
    var routes: [Route]
    var ipv6Routes: [Route]

    /// The routes `ip route` would show (main table).
    var mainRoutes: [Route] { routes.filter(\.isMainTable) }

    func link(_ name: String) -> Link? { links.first { $0.name == name } }

    /// Reads the namespace pinned at `path`.
    static func read(pin path: String) throws -> NamespaceView {
        let namespace = try NetworkNamespace.open(path: path)
        return try read(namespace)
    }

    /// Reads the namespace `namespace`.
    static func read(_ namespace: borrowing NetworkNamespace) throws -> NamespaceView {
        try namespace.withNamespace {
            let socket = try RouteSocket()
            return NamespaceView(links: try socket.links(), addresses: try socket.addresses(),
                                 routes: try socket.routes(), ipv6Routes: try socket.routes(ipv6: true))
        }
    }
}

/// Reads `/proc/sys/<key>` inside `namespace`.
func sysctl(_ key: String, in namespace: borrowing NetworkNamespace) throws -> String? {
    try namespace.withNamespace {
        (try? String(contentsOfFile: "/proc/sys/" + key, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A name unique to this test run.
func uniqueName(_ prefix: String) throws -> NamespaceName {
    try NamespaceName("\(prefix)\(UInt32.random(in: 0..<100_000))")
}

/// The entries of a directory, empty if it does not exist.
func entries(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { !$0.hasPrefix(".airlock") }.sorted()
}
