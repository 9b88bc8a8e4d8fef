// swift-tools-version: 6.2
import PackageDescription

/// Cairn: a privacy-focused federated exchange.
///
/// The folder tree under `Sources/` follows the architecture, bottom up:
/// `CSodium` (libsodium, wrapped once) → `CairnWire` (canonical encodings) → `CairnCrypto`
/// → `CairnSIMD` (averaging core) → `CairnSecAgg` (secure aggregation state machines),
/// `CairnAudit` (Merkle audit log), `CairnModels` (trainers), `CairnLicensing`
/// → `CairnBroker`, `CairnNode` → `CairnCLI` (command trees) → three thin executables.
let package = Package(
    name: "Cairn",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cairn-broker", targets: ["cairn-broker"]),
        .executable(name: "cairn-node", targets: ["cairn-node"]),
        .executable(name: "cairn-audit", targets: ["cairn-audit"]),
        .executable(name: "cairn-bench", targets: ["cairn-bench"]),
        .library(name: "CairnCrypto", targets: ["CairnCrypto"]),
        .library(name: "CairnWire", targets: ["CairnWire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
    ],
    targets: [
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .systemLibrary(name: "CMalloc"),
        .target(name: "CairnWire"),
        .target(name: "CairnCrypto", dependencies: ["CSodium", "CairnWire"]),
        .target(name: "CairnSIMD", dependencies: ["CairnCrypto", "CairnWire"]),
        .target(name: "CairnSecAgg", dependencies: ["CairnCrypto", "CairnWire", "CairnSIMD"]),
        .target(
            name: "CairnAudit",
            dependencies: ["CairnCrypto", "CairnWire", "CairnExchange", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .target(name: "CairnModels", dependencies: ["CairnSIMD", "CairnCrypto", "CairnWire"]),
        .target(name: "CairnLicensing", dependencies: ["CairnCrypto", "CairnWire"]),
        .target(name: "CairnExchange", dependencies: ["CairnCrypto", "CairnWire", "CairnSecAgg", "CairnModels"]),
        .target(
            name: "CairnBroker",
            dependencies: [
                "CairnCrypto", "CairnWire", "CairnSIMD", "CairnSecAgg", "CairnAudit", "CairnModels",
                "CairnLicensing", "CairnExchange", "CMalloc",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "CairnNode",
            dependencies: [
                "CairnCrypto", "CairnWire", "CairnSIMD", "CairnSecAgg", "CairnModels", "CairnLicensing",
                "CairnExchange", "CairnAudit",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "CairnCLI",
            dependencies: [
                "CairnCrypto", "CairnWire", "CairnBroker", "CairnNode", "CairnAudit", "CairnModels",
                "CairnExchange", "CairnLicensing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "CairnFuzzing",
            dependencies: [
                "CairnCrypto", "CairnWire", "CairnModels", "CairnAudit", "CairnSecAgg", "CairnLicensing",
                "CairnExchange",
            ]
        ),
        .executableTarget(name: "cairn-broker", dependencies: ["CairnCLI"]),
        .executableTarget(name: "cairn-node", dependencies: ["CairnCLI"]),
        .executableTarget(name: "cairn-audit", dependencies: ["CairnCLI"]),
        .executableTarget(
            name: "cairn-bench",
            dependencies: [
                "CairnCrypto", "CairnWire", "CairnSIMD", "CairnModels", "CairnAudit", "CairnSecAgg",
                "CairnExchange", "CairnBroker", "CairnNode", "CairnLicensing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "CairnWireTests", dependencies: ["CairnWire", "CairnFuzzing"]),
        .testTarget(name: "CairnCryptoTests", dependencies: ["CairnCrypto", "CairnWire"]),
        .testTarget(name: "CairnSIMDTests", dependencies: ["CairnSIMD", "CairnCrypto", "CairnWire"]),
        .testTarget(
            name: "CairnSecAggTests",
            dependencies: ["CairnSecAgg", "CairnCrypto", "CairnWire", "CairnSIMD"]
        ),
        .testTarget(
            name: "CairnExchangeTests",
            dependencies: [
                "CairnExchange", "CairnBroker", "CairnNode", "CairnCrypto", "CairnWire", "CairnSecAgg",
                "CairnAudit", "CairnModels",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "CairnLicensingTests", dependencies: ["CairnLicensing", "CairnCrypto", "CairnWire"]),
        .testTarget(name: "CairnModelsTests", dependencies: ["CairnModels", "CairnWire"]),
        .testTarget(
            name: "CairnAuditTests",
            dependencies: [
                "CairnAudit", "CairnCrypto", "CairnWire", "CairnExchange",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .testTarget(
            name: "CairnCLITests",
            dependencies: [
                "CairnCLI", "CairnCrypto", "CairnWire", "CairnNode", "CairnBroker", "CairnAudit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            exclude: ["Golden"]
        ),
    ]
)

// The libFuzzer target exists only for `FuzzTesting/run`, which builds with `--sanitize fuzzer`
// (libFuzzer supplies `main`); an ordinary build never sees it.
if Context.environment["CAIRN_FUZZ"] == "1" {
    package.targets.append(
        .executableTarget(
            name: "cairn-fuzz",
            dependencies: ["CairnFuzzing"],
            path: "FuzzTesting/cairn-fuzz",
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    )
    package.products.append(.executable(name: "cairn-fuzz", targets: ["cairn-fuzz"]))
}

// One set of language settings for every Swift target (swift-log's manifest does the same).
for target in package.targets where [.executable, .test, .regular].contains(target.type) {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))
    // Every warning is an error, here and in CI: a warning left alone is a bug postponed.
    settings.append(.treatAllWarnings(as: .error))
    target.swiftSettings = settings
}
