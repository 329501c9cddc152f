// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "trail",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "trail", targets: ["TrailCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        // MARK: System libraries
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        // MARK: Domain (no I/O, no third-party dependencies)
        .target(name: "TrailCore", swiftSettings: swiftSettings),
        .target(name: "TrailCompression", dependencies: ["CZstd", "CZlib"], swiftSettings: swiftSettings),

        // MARK: Parsers for real systems' formats
        .target(
            name: "TrailFormats",
            dependencies: [
                "TrailCore",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Correlation (pure)
        .target(name: "TrailCorrelator", dependencies: ["TrailCore"], swiftSettings: swiftSettings),

        // MARK: Store
        .target(
            name: "TrailStore",
            dependencies: [
                "TrailCore", "TrailCorrelator", "TrailCompression",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: HTTP server (TLS, mTLS, HTTP/1.1 and HTTP/2) shared by the ingest service
        .target(
            name: "TrailServer",
            dependencies: [
                "TrailCore", "TrailCompression", "TrailFormats",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Live ingestion (`trail serve`)
        .target(
            name: "TrailIngest",
            dependencies: ["TrailCore", "TrailFormats", "TrailStore", "TrailServer", "TrailCompression"],
            swiftSettings: swiftSettings
        ),

        // MARK: Mesh (`trail ca`, `trail sidecar`)
        .target(
            name: "TrailMesh",
            dependencies: [
                "TrailCore", "TrailFormats", "TrailServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Gateway (`trail gateway`): configuration, routing, edge authentication, ACL, rate limits, Kong log
        .target(
            name: "TrailGateway",
            dependencies: [
                "TrailCore", "TrailMesh",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: `trail demo`: the estate's supervisor, sample services and traffic
        .target(
            name: "TrailDemo",
            dependencies: [
                "TrailCore", "TrailMesh",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Incident reports (model built from the store, one renderer per format)
        .target(
            name: "TrailReport",
            dependencies: ["TrailCore", "TrailStore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),

        // MARK: Command line
        .executableTarget(
            name: "TrailCLI",
            dependencies: [
                "TrailCore", "TrailFormats", "TrailCorrelator", "TrailStore", "TrailCompression", "TrailServer",
                "TrailIngest", "TrailMesh", "TrailReport", "TrailGateway", "TrailDemo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: libFuzzer targets (`.ci/fuzz`). Built normally it replays files: `TRAIL_FUZZ_TARGET=kong TrailFuzz FILE...`
        .target(name: "CTrailFuzz"),
        .executableTarget(
            name: "TrailFuzz",
            dependencies: ["CTrailFuzz", "TrailCore", "TrailFormats", "TrailMesh", "TrailGateway", "TrailStore"],
            swiftSettings: swiftSettings
        ),

        // MARK: Tests
        .testTarget(name: "TrailCoreTests", dependencies: ["TrailCore"], swiftSettings: swiftSettings),
        .testTarget(name: "TrailFormatsTests", dependencies: ["TrailFormats", "TrailCompression"], swiftSettings: swiftSettings),
        .testTarget(name: "TrailCorrelatorTests", dependencies: ["TrailCorrelator", "TrailFormats"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TrailStoreTests",
            dependencies: ["TrailStore", "TrailFormats", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TrailCLITests",
            dependencies: ["TrailCore", "TrailStore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TrailServerTests",
            dependencies: [
                "TrailServer", "TrailCore",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TrailMeshTests",
            dependencies: [
                "TrailMesh", "TrailServer", "TrailFormats", "TrailCore",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TrailReportTests",
            dependencies: ["TrailReport", "TrailStore", "TrailCore", "TrailCompression", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TrailGatewayTests",
            dependencies: [
                "TrailGateway", "TrailFormats", "TrailCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TrailIngestTests",
            dependencies: ["TrailIngest", "TrailServer", "TrailStore", "TrailFormats", "TrailCore"],
            swiftSettings: swiftSettings
        ),
    ]
)
