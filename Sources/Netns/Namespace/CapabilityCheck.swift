#if canImport(Glibc)
import Glibc
#endif

/// The capabilities an operation needs, checked before it changes anything.
package struct MissingCapabilities: Error, CustomStringConvertible, Equatable {
    /// What was attempted, e.g. `airlock netns create`.
    package var operation: String
    /// The capabilities the operation needs.
    package var required: [String]
    /// Those the process lacks.
    package var missing: [String]

    package var description: String {
        "\(operation) needs \(required.joined(separator: " and ")) (run as root); missing: \(missing.joined(separator: ", "))"
    }
}

/// Checks the effective capability set of this process (`CapEff` in /proc/self/status).
package enum CapabilityCheck {
    /// CAP_NET_ADMIN's bit number.
    static let netAdmin = 12
    /// CAP_SYS_ADMIN's bit number.
    static let sysAdmin = 21

    /// Throws unless the process holds CAP_SYS_ADMIN and CAP_NET_ADMIN (what making,
    /// pinning and entering namespaces needs).
    /// - Throws: `MissingCapabilities` naming the missing ones.
    package static func requireNamespaceAdmin(for operation: String) throws {
        let effective = effectiveSet()
        var missing: [String] = []
        if effective & (1 << UInt64(sysAdmin)) == 0 { missing.append("CAP_SYS_ADMIN") }
        if effective & (1 << UInt64(netAdmin)) == 0 { missing.append("CAP_NET_ADMIN") }
        if !missing.isEmpty {
            throw MissingCapabilities(operation: operation, required: ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"], missing: missing)
        }
    }

    /// The effective capability set as a bit mask (0 if it cannot be read).
    package static func effectiveSet() -> UInt64 {
        guard let file = fopen("/proc/self/status", "r") else { return 0 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(cString: line)
            if text.hasPrefix("CapEff:") {
                let hex = text.dropFirst("CapEff:".count).trimmingCharacters(in: " \t\n")
                return UInt64(hex, radix: 16) ?? 0
            }
        }
        return 0
    }
}

private extension Substring {
    func trimmingCharacters(in set: String) -> String {
        String(drop(while: { set.contains($0) }).reversed().drop(while: { set.contains($0) }).reversed())
    }
}
