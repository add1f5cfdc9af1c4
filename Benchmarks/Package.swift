// swift-tools-version: 6.0
// A standalone package, separate from the main Vigil package: it exists only to
// build the SwiftNIO comparison server used by docs/benchmarks.md.
import PackageDescription

let package = Package(
    name: "VigilBenchmarks",
    products: [
        .executable(name: "nio-ping-server", targets: ["nio-ping-server"]),
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
    ]
)
