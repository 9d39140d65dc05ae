/// Allowlist presets shipped with airlock: the hosts package managers and GitHub really
/// use, redirect and CDN hosts included.
///
/// Sources are in docs/policy.md. Some hosts are shared hosting (`storage.googleapis.com`,
/// `*.githubusercontent.com`): allowing them allows other tenants' content too.
package enum Presets {
    /// Preset name (without `@`) → rule lines, in the policy file syntax: the host presets
    /// and the credential-route presets (`RoutePreset`).
    package static let all: [String: [String]] = hosts.merging(RoutePreset.lines) { host, _ in host }

    /// Host presets: preset name (without `@`) → host rule lines.
    package static let hosts: [String: [String]] = [
        // pip and uv: the index and JSON API, wheels and sdists, the legacy redirect, get-pip.
        "pypi": [
            "pypi.org",
            "files.pythonhosted.org",
            "pypi.python.org",
            "bootstrap.pypa.io",
        ],
        // npm and yarn (classic and berry): registries, Yarn releases, Node headers for
        // native builds.
        "npm": [
            "registry.npmjs.org",
            "registry.npmjs.com",
            "registry.yarnpkg.com",
            "repo.yarnpkg.com",
            "nodejs.org",
        ],
        // cargo: the sparse index, crate downloads (crates.io redirects there), the API.
        "cargo": [
            "index.crates.io",
            "static.crates.io",
            "crates.io",
        ],
        // Go modules: the module proxy, the checksum database, and GCS, where the proxy
        // redirects .zip downloads (shared hosting).
        "go": [
            "proxy.golang.org",
            "sum.golang.org",
            "storage.googleapis.com",
        ],
        // RubyGems and Bundler: gems and API, the compact index.
        "rubygems": [
            "rubygems.org",
            "index.rubygems.org",
            "api.rubygems.org",
        ],
        // Maven Central and Gradle: the wrapper, distributions, the plugin portal.
        "maven": [
            "repo.maven.apache.org",
            "repo1.maven.org",
            "services.gradle.org",
            "downloads.gradle.org",
            "downloads.gradle-dn.com",
            "plugins.gradle.org",
            "plugins-artifacts.gradle.org",
        ],
        // Debian apt: plain HTTP on port 80 by default, which host rules allow.
        "debian": [
            "deb.debian.org",
            "security.debian.org",
        ],
        // GitHub: git over HTTPS, the API, raw content, archives (codeload) and release
        // assets reached by redirect (shared hosting on githubusercontent.com).
        "github": [
            "github.com",
            "api.github.com",
            "raw.githubusercontent.com",
            "codeload.github.com",
            "release-assets.githubusercontent.com",
            "objects.githubusercontent.com",
        ],
    ]
}
