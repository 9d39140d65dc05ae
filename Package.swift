// swift-tools-version:6.0
import PackageDescription

// airlock: a network sandbox for untrusted code. See docs/architecture.md.
//
// Swift 5 language mode keeps the NIO handlers readable (they are confined to their
// event loops, which the Swift 6 checker cannot see); cross-thread state is Sendable
// by hand and reviewed. See docs/architecture.md, "Concurrency".
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v5),
]

// How the airlock binary is linked, for a light start: every airlock command is a process
// start, and a run is three (docs/architecture.md, "Decisions": a lighter process).
// - `--static-swift-stdlib` links with `-export-dynamic`, which put all 25,000 symbols of
//   airlock's own modules in the dynamic symbol table: 2.5 MB the loader maps and the
//   runtime's `dladdr` at start-up searches. Nothing looks them up.
// - libstdc++, libgcc, zlib, libcap and libseccomp are linked in from their archives, which
//   scripts/setup links into .build/static-libs (a directory searched before the system's,
//   holding only archives). Each shared library costs every start an open, five mappings,
//   its relocations and its symbol lookups: 0.55 ms of `airlock --version`'s 1.85 ms of CPU.
//   Without that directory they link as shared libraries, as before. libmnl ships no
//   archive on Debian and stays shared, with libc and libm.
// - lld, with relative relocations packed (`.relr.dyn`, 14 KB in place of the 1.7 MB of
//   `.rela.dyn` the loader read at every start); its layout also maps 2.6 MB less of the
//   executable into an idle gateway than gold's. lld ships with Swift's Linux toolchains.
let lightStartLinking = [
    "-Xlinker", "--no-export-dynamic",
    "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
    "-Xclang-linker", "-static-libgcc",
    "-L", Context.packageDirectory + "/.build/static-libs",
    // The functions airlock's common paths run, laid out together (scripts/order-file made
    // the list; release builds compile each function into its own section so the order
    // applies to each). Names the binary no longer has are skipped. The functions the
    // compiler names only with local labels, which no order file can name, are gathered
    // beside them by link/local-functions.ld. An idle gateway maps 4.5 MB of code; 9.2 MB
    // with the order file alone, 11.5 with neither (docs/benchmarks.md, "Functions without
    // a symbol").
    "-Xlinker", "--symbol-ordering-file=" + Context.packageDirectory + "/link/airlock.order",
    "-Xlinker", "--no-warn-symbol-ordering",
    "-Xlinker", "-T", "-Xlinker", Context.packageDirectory + "/link/local-functions.ld",
]

let package = Package(
    name: "airlock",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "airlock", targets: ["airlock"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // C for the netns layer: rtnetlink builders over libmnl, the async-signal-safe
        // child setup between fork and exec, libcap calls, and the seccomp filter (libseccomp).
        .target(
            name: "CNetlink",
            linkerSettings: [.linkedLibrary("mnl"), .linkedLibrary("cap"), .linkedLibrary("seccomp")]
        ),
        // The system-call error type and the EINTR retry, shared by Netns and the gateway.
        .target(name: "SystemCalls", swiftSettings: swiftSettings),
        // Namespaces, links, addresses, routes, the sandbox topology, spawning inside S.
        // The only Swift module that imports CNetlink.
        .target(
            name: "Netns",
            dependencies: [
                "CNetlink",
                "SystemCalls",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        // The GNU-only calls of the gateway's socket loop (splice, pipe2, accept4), which
        // Swift's Glibc module does not import.
        .target(name: "CSplice"),
        // zlib's inflate, for the objects of a pushed pack (`inflateInit` is a macro).
        .target(name: "CZlib", linkerSettings: [.linkedLibrary("z")]),
        // SHA-1 and SHA-256 (git object ids, session token digests) and secure random bytes,
        // in Swift: see docs/architecture.md, "Decisions worth knowing".
        .target(name: "Digests", dependencies: ["CDigests"], swiftSettings: swiftSettings),
        // SHA-1's block function on the x86 SHA extensions, used when the CPU has them.
        .target(name: "CDigests"),
        // What the gateway decides and records, without networking: policy, sessions, audit,
        // git repositories and push policy, route definitions. No NIO here, so the seam holds:
        // these are plain values and locks, testable and reusable without an event loop.
        .target(
            name: "GatewayCore",
            dependencies: [
                "SystemCalls",
                "Digests",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        // Proxies, DNS, git gateway, credential routes, control socket, listeners: the
        // networking around GatewayCore.
        .target(
            name: "Gateway",
            dependencies: [
                "GatewayCore",
                "CSplice",
                "CZlib",
                "SystemCalls",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                "Digests",
            ],
            swiftSettings: swiftSettings
        ),
        // The commit a release binary was built from, for --version: scripts/install sets
        // AIRLOCK_COMMIT, which reaches this one C file only (a new commit rebuilds nothing else).
        .target(
            name: "CBuildInfo",
            cSettings: Context.environment["AIRLOCK_COMMIT"].map { commit in
                [.define("AIRLOCK_COMMIT", to: "\"\(commit.filter { $0.isLetter || $0.isNumber || $0 == "-" })\"")]
            } ?? []
        ),
        // The executable: argument parsing and wiring only.
        .executableTarget(
            name: "airlock",
            dependencies: [
                "Netns",
                "Gateway",
                "SystemCalls",
                "CBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: [.unsafeFlags(lightStartLinking)]
        ),
        // Helpers shared by the test targets: the built binary, processes, fixture servers,
        // and the guard that keeps root-tier tests inside a throwaway namespace.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "NetnsTests", dependencies: ["Netns", "CNetlink", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "NetnsIntegrationTests", dependencies: ["Netns", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway",
                "GatewayCore",
                "Digests",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                "TestSupport",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "EndToEndTests", dependencies: ["TestSupport"], swiftSettings: swiftSettings),
        // The executable's own logic, in process (`@testable import airlock`): the run plan.
        .testTarget(name: "AirlockTests", dependencies: ["airlock", "Netns", "Gateway", "GatewayCore", "TestSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")], swiftSettings: swiftSettings),
    ]
)
