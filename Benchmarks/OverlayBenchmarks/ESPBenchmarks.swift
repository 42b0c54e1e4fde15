// Hot-path microbenchmarks of the overlay: ESP seal and open of one 1400-byte frame in a
// pooled buffer. The committed thresholds (bench/thresholds) hold mallocCountTotal at 0:
// a per-packet allocation fails `scripts/bench-allocs.sh`.

import Benchmark
import ShoalOverlay
import ShoalWire

let frameBytes = 1400

/// A buffer as the VTEP lays it out: headroom, VXLAN header, frame, tailroom.
final class PacketBuffer {
    let base: UnsafeMutableRawBufferPointer
    let payload: Range<Int>
    init() {
        let count = ESPEngine.headroom + VXLAN.headerBytes + frameBytes + ESPEngine.tailroom
        base = .allocate(byteCount: count, alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0x5A)
        payload = ESPEngine.headroom..<(ESPEngine.headroom + VXLAN.headerBytes + frameBytes)
        VXLAN.write(vni: 42, into: base, at: ESPEngine.headroom)
    }
    deinit { base.deallocate() }
}

func engines(_ cipher: String) -> (ESPEngine, ESPEngine) {
    let ring = KeyRing(
        cipher: cipher == "aes-256-gcm" ? .aes256 : .aes128,
        epochs: [KeyEpoch(id: 1, key: String(repeating: "42", count: cipher == "aes-256-gcm" ? 32 : 16), state: .tx)])
    let peers = ["node-a", "node-b"]
    return (
        try! ESPEngine(localNode: "node-a", keyRing: ring, peers: peers),
        try! ESPEngine(localNode: "node-b", keyRing: ring, peers: peers)
    )
}

let zeroAllocations: [BenchmarkMetric] = [.mallocCountTotal, .throughput, .wallClock]

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: zeroAllocations, maxDuration: .seconds(2), maxIterations: 200_000)

    for cipher in ["aes-128-gcm", "aes-256-gcm"] {
        Benchmark("ESP.seal-open.1400B.\(cipher)") { benchmark in
            let (a, b) = engines(cipher)
            let buffer = PacketBuffer()
            let peer = a.peerIndex("node-b")!
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                guard let sealed = a.seal(buffer.base, payload: buffer.payload, peer: peer) else { fatalError("no SA") }
                guard case .vxlan = b.open(buffer.base, datagram: sealed) else { fatalError("open failed") }
            }
        }
    }
}
