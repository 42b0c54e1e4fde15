// Hot-path microbenchmarks of the wire codecs: the PROXY protocol header a mesh connection
// parses on accept and writes on connect. The committed thresholds (bench/thresholds) hold
// mallocCountTotal at 0: an allocation per connection fails `scripts/bench-allocs.sh`.

import Benchmark
import ShoalWire

let zeroAllocations: [BenchmarkMetric] = [.mallocCountTotal, .throughput, .wallClock]

/// A connection's first read: a header and the start of its payload, in a pooled buffer.
final class ReadBuffer {
    let base: UnsafeMutableRawBufferPointer
    let count: Int
    init(_ bytes: [UInt8]) {
        base = .allocate(byteCount: 4096, alignment: 64)
        base.copyBytes(from: bytes)
        count = bytes.count
    }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: base[..<count]) }
    deinit { base.deallocate() }
}

let client6 = ProxyAddresses.ipv6(
    source: IPv6Bits(hi: 0x2001_0db8_0000_0000, lo: 0x0000_0000_c612_0709),
    destination: IPv6Bits(hi: 0x2001_0db8_0000_0000, lo: 1), sourcePort: 54321, destinationPort: 443)
let client4 = ProxyAddresses.ipv4(
    source: 0xC612_0709, destination: 0xC612_0001, sourcePort: 54321, destinationPort: 443)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: zeroAllocations, maxDuration: .seconds(2), maxIterations: 200_000)

    let request = Array("GET / HTTP/1.1\r\nHost: example\r\n\r\n".utf8)
    let headers: [(String, [UInt8])] = [
        ("v1-tcp6", Array("PROXY TCP6 2001:db8::c612:709 2001:db8::1 54321 443\r\n".utf8) + request),
        ("v1-tcp4", Array("PROXY TCP4 198.18.7.9 198.18.0.1 54321 443\r\n".utf8) + request),
        (
            "v2-tcp6-tlvs",
            [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x21, 0x00, 0x2C]
                + [UInt8](repeating: 0x20, count: 36) + [0x04, 0x00, 0x05, 1, 2, 3, 4, 5] + request
        ),
    ]
    for (name, bytes) in headers {
        Benchmark("PROXY.parse.\(name)") { benchmark in
            let buffer = ReadBuffer(bytes)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                guard case .header = ProxyProtocol.parse(buffer.bytes) else { fatalError("not a header") }
            }
        }
    }
    Benchmark("PROXY.encode.v1-v2") { benchmark in
        let buffer = ReadBuffer([])
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(ProxyProtocol.encodeV1(client4, into: buffer.base))
            blackHole(ProxyProtocol.encodeV2(client4, stream: true, into: buffer.base))
            blackHole(ProxyProtocol.encodeV1(client6, into: buffer.base))
            blackHole(ProxyProtocol.encodeV2(client6, stream: true, into: buffer.base))
        }
    }
}
