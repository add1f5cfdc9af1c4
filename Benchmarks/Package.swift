// swift-tools-version: 6.0
// A standalone package, separate from the main Vigil package: it builds the
// comparison programs used by docs/benchmarks.md, so that their dependencies
// (SwiftNIO, SQLite) stay out of the main package.
import PackageDescription

let package = Package(
    name: "VigilBenchmarks",
    products: [
        .executable(name: "nio-ping-server", targets: ["nio-ping-server"]),
        .executable(name: "sqlite-turn-bench", targets: ["sqlite-turn-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
    ],
    targets: [
        .executableTarget(
            name: "nio-ping-server",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The system's libsqlite3 (Debian: libsqlite3-dev).
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .executableTarget(
            name: "sqlite-turn-bench",
            dependencies: ["CSQLite"]
        ),
    ]
)
