#if canImport(Glibc)
import Glibc
#endif

/// The settings of a masked `~/.npmrc` that are not credentials, for the notice that says
/// npm inside will not see them.
///
/// `~/.npmrc` is masked as a whole because npm keeps registry tokens there; the same file
/// usually also names the registry (`registry=`, `@scope:registry=`), and a user who does
/// not know it was hidden sees npm go to the public registry instead. Only setting names
/// are ever shown, never values.
enum NpmrcSettings {
    /// Keys (or the last `:`-part of `//host/:key`) that hold credentials.
    static let credentialKeys: Set<String> = [
        "_authtoken", "_auth", "_password", "password", "username", "email", "certfile", "keyfile", "cert", "key",
        "otp", "token",
    ]

    /// The names of the settings in `text` that are not credentials, in file order, once each.
    static func nonCredentialNames(in text: String) -> [String] {
        var names: [String] = []
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = raw.drop { $0 == " " || $0 == "\t" }
            guard let first = line.first, first != "#", first != ";", let equals = line.firstIndex(of: "=") else { continue }
            let name = String(line[..<equals]).trimmingCharacters(in: " \t")
            guard !name.isEmpty else { continue }
            let last = name.split(separator: ":").last.map { String($0).lowercased() } ?? ""
            if credentialKeys.contains(last) || name.hasPrefix("//") && last.isEmpty { continue }
            // A name is shown as it is only when it is plain text of a sane length.
            guard name.utf8.count <= 100, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { continue }
            if !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// The notice for a masked `.npmrc` at `path` (read as the caller, at most 64 KiB), or
    /// nil when it holds nothing but credentials or cannot be read.
    static func notice(forMasked path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        var bytes = [UInt8](repeating: 0, count: 64 << 10)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        let names = nonCredentialNames(in: String(decoding: bytes[..<count], as: UTF8.self))
        guard !names.isEmpty else { return nil }
        return "airlock: \(path) is masked (npm keeps tokens there), so npm inside does not see its "
            + "\(names.joined(separator: ", ")); put those lines in the project's .npmrc, or pass "
            + "npm_config_registry=URL in the environment"
    }
}

private extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        var slice = self[...]
        while let first = slice.first, characters.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, characters.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
