// swift-tools-version: 6.0
// Vigil: a Linux daemon toolkit whose stop sequence survives SIGKILL.
// Layers (each module depends only on those below it):
//   CVigil (CShims/), VigilSystem (syscall funnel) → VigilReactor
//     → VigilDurable → VigilLifecycle
//     → VigilSystemd → VigilDaemon (the entry point) / VigilGateway
//     → VigilSupervisor (`vigil run`: a program under the entry point)
//     → vigild, vigil, vigilctl, vigil-bench, line-worker (Examples/)
// VigilSystemd (sd_notify, watchdog, socket activation, journald, the unit's
// stop timeout, the fd store) sits between the lifecycle and the entry point.
import PackageDescription

let swift5: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
    name: "Vigil",
    products: [
        .library(name: "VigilReactor", targets: ["VigilReactor"]),
        .library(name: "VigilDurable", targets: ["VigilDurable"]),
        .library(name: "VigilLifecycle", targets: ["VigilLifecycle"]),
        .library(name: "VigilSystemd", targets: ["VigilSystemd"]),
        .library(name: "VigilDaemon", targets: ["VigilDaemon"]),
        // Test doubles for embedders' tests: never linked into a daemon.
        .library(name: "VigilTesting", targets: ["VigilTesting"]),
        .library(name: "VigilGateway", targets: ["VigilGateway"]),
        .library(name: "VigilSupervisor", targets: ["VigilSupervisor"]),
        .executable(name: "vigild", targets: ["vigild"]),
        .executable(name: "vigilctl", targets: ["vigilctl"]),
        .executable(name: "vigil", targets: ["vigil"]),
        .executable(name: "vigil-bench", targets: ["vigil-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        // `swift package generate-documentation` (DocC); a plugin only.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // Thin C shim: only what Swift cannot import cleanly (syscalls without
        // glibc wrappers, macros, accept4), plus the liburing/libsystemd headers.
        .target(
            name: "CVigil",
            path: "CShims",
            publicHeadersPath: "include",
            linkerSettings: [.linkedLibrary("uring"), .linkedLibrary("systemd")]
        ),
        // The syscall funnel (errno first, EINTR, write-all), the clock and
        // SignalInfo: below the reactor, so the record layer needs no loop.
        .target(
            name: "VigilSystem",
            dependencies: [
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "VigilReactor",
            dependencies: [
                "CVigil", "VigilSystem",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "VigilDurable",
            dependencies: [
                "VigilSystem", "VigilReactor",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Test doubles (the crash-simulating file system, the journal's I/O
        // on it): kept out of the production libraries.
        .target(
            name: "VigilTesting",
            dependencies: [
                "VigilReactor", "VigilDurable",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "VigilLifecycle",
            dependencies: [
                "VigilReactor", "VigilDurable",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "VigilSystemd",
            dependencies: [
                "CVigil", "VigilReactor",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The entry point for any daemon: the order-critical start and stop
        // wiring over the layers below (docs/embedding.md).
        .target(
            name: "VigilDaemon",
            dependencies: [
                "CVigil", "VigilReactor", "VigilDurable", "VigilLifecycle", "VigilSystemd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "VigilGateway",
            dependencies: [
                "VigilReactor", "VigilDurable",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `vigil run`: any program under the entry point, with the ledger
        // (docs/run.md). LineServer and the JSON scanner come from the gateway.
        .target(
            name: "VigilSupervisor",
            dependencies: [
                "CVigil", "VigilReactor", "VigilDurable", "VigilDaemon", "VigilGateway",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "vigil",
            dependencies: [
                "VigilDaemon", "VigilLifecycle", "VigilSupervisor", "VigilSystemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "vigild",
            dependencies: [
                "VigilReactor", "VigilDurable", "VigilLifecycle", "VigilSystemd", "VigilDaemon", "VigilGateway",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // docs/embedding.md quotes this file verbatim (a test compares them).
        .executableTarget(
            name: "line-worker",
            dependencies: [
                "VigilDaemon", "VigilGateway", "VigilLifecycle", "VigilReactor",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/line-worker"
        ),
        .executableTarget(
            name: "vigilctl",
            dependencies: [
                "VigilReactor", "VigilDurable", "VigilLifecycle", "VigilGateway",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "vigil-bench",
            dependencies: [
                "CVigil", "VigilReactor", "VigilDurable",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Tests drive the loop by hand and capture loop-confined state in its
        // callbacks; Swift 5 mode keeps that readable without weakening the
        // libraries, which build in Swift 6 mode.
        .testTarget(name: "VigilReactorTests", dependencies: ["VigilReactor", "CVigil"], swiftSettings: swift5),
        .testTarget(name: "VigilDurableTests", dependencies: ["VigilDurable", "VigilLifecycle", "VigilReactor", "VigilTesting"], swiftSettings: swift5),
        .testTarget(name: "VigilGatewayTests", dependencies: ["VigilGateway", "VigilDurable", "VigilReactor", "VigilTestSupport"], swiftSettings: swift5),
        // What the end-to-end test targets share: the built executables
        // started and polled (LoggedProcess), power cuts on a loop ext4
        // image, a seeded generator. Tests only; not a product.
        .target(name: "VigilTestSupport", path: "Tests/VigilTestSupport", swiftSettings: swift5),
        // Drives the `vigil` and `vigilctl` binaries (docs/run.md).
        .testTarget(name: "VigilRunTests", dependencies: ["VigilTestSupport"], swiftSettings: swift5),
        .testTarget(name: "VigildTests", dependencies: ["VigilReactor", "VigilDurable", "VigilTesting", "VigilTestSupport"], swiftSettings: swift5),
        .testTarget(name: "VigilDaemonTests", dependencies: ["VigilDaemon", "VigilGateway", "VigilDurable", "VigilSystemd"], swiftSettings: swift5),
    ]
)
