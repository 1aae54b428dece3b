// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "runfeed",
    products: [
        .executable(name: "runfeed", targets: ["runfeed"]),
        .executable(name: "runfeed-load", targets: ["runfeed-load"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // 2.4.1: `# HELP` lines (metrics created on the registry with a help text).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C shims: thin system-library targets, one per C library.
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .systemLibrary(name: "CFastCGI", path: "Sources/CFastCGI", pkgConfig: "fcgi",
                       providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis", pkgConfig: "hiredis",
                       providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CPostgres", path: "Sources/CPostgres", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CCrypto", path: "Sources/CCrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CTLS", path: "Sources/CTLS", pkgConfig: "libssl",
                       providers: [.apt(["libssl-dev"])]),

        // The source revision baked in at build time (scripts/build-info.sh writes revision.h).
        .target(name: "CBuildInfo", path: "Sources/CBuildInfo"),

        // Pure core: protocol, encoding, auth, parsing, caches, feed decisions. No I/O.
        .target(name: "RunfeedCore", dependencies: ["CCrypto"]),

        // I/O adapters: event loop, FastCGI, Redis (TCP/TLS, cluster), Postgres, /proc.
        .target(name: "RunfeedIO", dependencies: ["CLinux", "CFastCGI", "CHiredis", "CPostgres", "CCurl", "CTLS", "CBuildInfo", "RunfeedCore"]),

        // The server: feeds wired to the adapters.
        .target(name: "RunfeedServer", dependencies: [
            "RunfeedCore", "RunfeedIO",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),

        // Command-line wiring.
        .executableTarget(name: "runfeed", dependencies: [
            "RunfeedServer", "RunfeedIO", "RunfeedCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Benchmark load generator (bench/README.md): held long-polls, request rates, naive polling.
        .target(name: "RunfeedLoadCore", path: "bench/load/Core"),
        .executableTarget(name: "runfeed-load", dependencies: [
            "RunfeedLoadCore", "RunfeedIO", "RunfeedCore", "CPostgres",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "bench/load/Tool"),

        // The server's wiring in process: real registries and loop, fake store, runsets, views and subscriber.
        .testTarget(name: "RunfeedServerTests", dependencies: ["RunfeedServer", "RunfeedIO", "RunfeedCore"]),
        .testTarget(name: "RunfeedCoreTests", dependencies: ["RunfeedCore"]),
        .testTarget(name: "RunfeedLoadCoreTests", dependencies: ["RunfeedLoadCore"]),
        // The blocking pool and the loop hand-over, with real threads and a real event loop (no sockets).
        .testTarget(name: "RunfeedIOTests", dependencies: ["RunfeedIO", "RunfeedCore"]),
    ],
    swiftLanguageModes: [.v6]
)
