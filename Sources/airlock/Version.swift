import CBuildInfo

/// What `airlock --version` prints.
enum AirlockVersion {
    /// The release this source tree is.
    static let release = "0.5.0"

    /// The commit the binary was built from, when the build said (`scripts/install`,
    /// `scripts/package` set `AIRLOCK_COMMIT`); `nil` for a plain `swift build`.
    static var commit: String? {
        let commit = String(cString: airlock_build_commit())
        return commit.isEmpty ? nil : commit
    }

    /// `0.5.0 (commit 1c5998f)` or `0.5.0 (development build)`.
    static var description: String {
        "\(release) (\(commit.map { "commit \($0)" } ?? "development build"))"
    }
}
