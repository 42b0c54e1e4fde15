// swift-tools-version:6.1
// Shoal: routing mesh and encrypted VXLAN overlay for container clusters.
// Swift 6 language mode (the default for tools version 6.x) with strict concurrency.
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "Shoal",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "shoal", targets: ["shoal"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // MARK: C: system libraries and the shim for what Glibc does not import.
        .target(name: "CShoal", path: "Sources/CShoal"),
        .systemLibrary(
            name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),
        .systemLibrary(
            name: "CNetlink", path: "Sources/CNetlink", pkgConfig: "libnl-route-3.0",
            providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]),
        .systemLibrary(
            name: "CPcap", path: "Sources/CPcap", pkgConfig: "libpcap",
            providers: [.apt(["libpcap-dev"])]),

        // MARK: Swift modules, split by concern.
        /// Wire formats: pure encoders/decoders (Ethernet, ARP, IPv4/6, ICMP, VXLAN, ESP, PROXY protocol).
        .target(name: "ShoalWire", swiftSettings: strict),
        /// OS layer: typed syscalls, sockets, epoll, TAP, netlink, namespaces.
        .target(name: "ShoalSystem", dependencies: ["CShoal", "CNetlink", "CPcap"], swiftSettings: strict),
        /// Crypto: in-place AES-GCM (OpenSSL EVP), HKDF, anti-replay window.
        .target(name: "ShoalCrypto", dependencies: ["COpenSSL"], swiftSettings: strict),
        /// Overlay data plane: VTEP, FDB, SAs and key epochs.
        .target(
            name: "ShoalOverlay",
            dependencies: ["ShoalWire", "ShoalSystem", "ShoalCrypto", "ShoalConfig"],
            swiftSettings: strict),
        /// Routing mesh: L4 ingress proxy on published ports.
        .target(
            name: "ShoalMesh",
            dependencies: ["ShoalWire", "ShoalSystem", "ShoalConfig"],
            swiftSettings: strict),
        /// Raft consensus core (pure state machine) and its driver.
        .target(name: "ShoalRaft", dependencies: ["ShoalStorage", "ShoalSystem"], swiftSettings: strict),
        /// Durable, encrypted write-ahead log and snapshots.
        .target(name: "ShoalStorage", dependencies: ["ShoalCrypto"], swiftSettings: strict),
        /// Config files (JSON or YAML) decoding with field-naming errors.
        .target(
            name: "ShoalConfig", dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: strict),
        /// Test fixtures shared by tests and scripts: namespace hosts joined by veth.
        .target(name: "ShoalTestSupport", dependencies: ["ShoalSystem"], swiftSettings: strict),
        .executableTarget(
            name: "shoal",
            dependencies: [
                "ShoalOverlay", "ShoalMesh", "ShoalRaft", "ShoalTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),

        // MARK: libFuzzer targets. A normal build makes corpus replayers (run by the tests);
        // `scripts/fuzz.sh` builds them with -sanitize=fuzzer and -DSHOAL_FUZZ.
        .target(name: "FuzzSupport", path: "Fuzz/FuzzSupport"),
        .executableTarget(name: "fuzz-vxlan", dependencies: ["ShoalWire", "FuzzSupport"], path: "Fuzz/fuzz-vxlan"),
        .executableTarget(name: "fuzz-esp", dependencies: ["ShoalOverlay", "FuzzSupport"], path: "Fuzz/fuzz-esp"),
        .executableTarget(name: "fuzz-proxy", dependencies: ["ShoalWire", "FuzzSupport"], path: "Fuzz/fuzz-proxy"),
        .executableTarget(
            name: "fuzz-meshtable", dependencies: ["ShoalMesh", "FuzzSupport"], path: "Fuzz/fuzz-meshtable"),

        // MARK: Microbenchmarks (ordo-one/benchmark) with committed malloc thresholds in
        // bench/thresholds: `scripts/bench-allocs.sh` fails when a hot path allocates.
        .executableTarget(
            name: "OverlayBenchmarks",
            dependencies: ["ShoalOverlay", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/OverlayBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        .executableTarget(
            name: "WireBenchmarks",
            dependencies: ["ShoalWire", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/WireBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        .executableTarget(
            name: "MeshBenchmarks",
            dependencies: ["ShoalMesh", "ShoalSystem", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/MeshBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),

        // MARK: Tests.
        .testTarget(name: "ShoalWireTests", dependencies: ["ShoalWire"], swiftSettings: strict),
        .testTarget(name: "ShoalCryptoTests", dependencies: ["ShoalCrypto"], swiftSettings: strict),
        .testTarget(
            name: "ShoalSystemTests", dependencies: ["ShoalSystem", "ShoalTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "ShoalOverlayTests", dependencies: ["ShoalOverlay", "ShoalTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "ShoalRaftTests", dependencies: ["ShoalRaft"], exclude: ["testdata"],
            swiftSettings: strict),
        .testTarget(
            name: "ShoalMeshTests", dependencies: ["ShoalMesh", "ShoalSystem", "ShoalWire", "ShoalTestSupport"],
            swiftSettings: strict),
        .testTarget(name: "ShoalStorageTests", dependencies: ["ShoalStorage"], swiftSettings: strict),
        .testTarget(name: "FormatTests", dependencies: [], swiftSettings: strict),
    ]
)
