#if canImport(Glibc)
import Glibc
#endif

/// The sandbox's `/etc/resolv.conf` and `/etc/hosts`: their content, and where each goes.
package struct SandboxEtcFiles: Equatable, Sendable {
    /// `nameserver <gateway>`.
    package var resolvConf: String
    /// `localhost` and `airlock.internal`.
    package var hosts: String
    /// Where the file goes on the fresh `/run` when `/etc/resolv.conf` links into `/run`;
    /// nil: it is bound over `/etc/resolv.conf`.
    package var resolvConfTarget: String?
    /// Like `resolvConfTarget`, for `/etc/hosts`.
    package var hostsTarget: String?

    /// The files for a sandbox whose gateway is `gateway`, placed by reading the host's links.
    package init(gateway: String, etc: String = "/etc") {
        resolvConf = "nameserver \(gateway)\n"
        hosts = "127.0.0.1 localhost\n::1 localhost\n\(gateway) airlock.internal\n"
        resolvConfTarget = Self.runTarget(of: etc + "/resolv.conf")
        hostsTarget = Self.runTarget(of: etc + "/hosts")
    }

    /// The target of `path` when it is a symbolic link pointing under `/run` or `/var/run`
    /// (both are fresh tmpfs mounts in the sandbox); nil otherwise.
    package static func runTarget(of path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink(path, &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        let link = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let directory = path.split(separator: "/").dropLast().joined(separator: "/")
        return runTarget(link: link, directory: "/" + directory)
    }

    /// The absolute, normalised target of `link` found in `directory` when it lies under
    /// `/run` or `/var/run`; nil otherwise.
    package static func runTarget(link: String, directory: String) -> String? {
        let joined = link.hasPrefix("/") ? link : directory + "/" + link
        var parts: [Substring] = []
        for part in joined.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        let underRun = parts.count >= 2 && parts[0] == "run"
        let underVarRun = parts.count >= 3 && parts[0] == "var" && parts[1] == "run"
        guard underRun || underVarRun else { return nil }
        return "/" + parts.joined(separator: "/")
    }
}
