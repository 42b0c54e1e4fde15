// The mesh's per-connection and per-datagram paths under the malloc counter: a real mesh (one
// reactor thread) on loopback between a blocking client and a blocking backend, both written
// with raw syscalls on preallocated buffers so that every malloc counted is the mesh's. The
// committed thresholds (bench/thresholds) hold mallocCountTotal at 0 per connection (accept,
// pick, connect, relay both ways, half-close, close) and per UDP datagram round trip.

import Benchmark
import Foundation
import ShoalMesh
import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

let metrics: [BenchmarkMetric] = [.mallocCountTotal, .throughput, .wallClock]

func loopback(_ port: UInt16) -> sockaddr_in {
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = port.bigEndian
    sin.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
    return sin
}

func boundSocket(_ type: CInt, port: UInt16 = 0) -> (CInt, UInt16) {
    let fd = socket(AF_INET, type, 0)
    var one: CInt = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
    var sin = loopback(port)
    _ = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return (fd, UInt16(bigEndian: sin.sin_port))
}

func freePort(_ type: CInt) -> UInt16 {
    let (fd, port) = boundSocket(type)
    close(fd)
    return port
}

/// TCP backend: one connection at a time, read a request, answer it, close first.
func startTCPBackend() -> UInt16 {
    let (fd, port) = boundSocket(CInt(SOCK_STREAM.rawValue))
    listen(fd, 1024)
    Thread {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 64)
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { continue }
            let n = recv(c, buf, 4096, 0)
            if n > 0 { _ = send(c, buf, n, CInt(MSG_NOSIGNAL)) }
            close(c)
        }
    }.start()
    return port
}

/// UDP backend: echo every datagram.
func startUDPBackend() -> UInt16 {
    let (fd, port) = boundSocket(CInt(SOCK_DGRAM.rawValue))
    Thread {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 65_536, alignment: 64)
        var from = sockaddr_storage()
        while true {
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, buf, 65_536, 0, $0, &len) }
            }
            if n <= 0 { continue }
            _ = withUnsafePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, buf, n, 0, $0, len) }
            }
        }
    }.start()
    return port
}

func startMesh(_ yaml: String) -> Mesh {
    do {
        return try Mesh(try MeshConfig.parse(yaml))
    } catch {
        fatalError("mesh: \(error)")
    }
}

/// One client connection through the mesh: connect, 64-byte request, read the answer to EOF.
@inline(never)
func oneConnection(_ port: UInt16, _ buf: UnsafeMutableRawPointer) {
    let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue), 0)
    var sin = loopback(port)
    let r = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    precondition(r == 0, "connect to the mesh failed")
    _ = send(fd, buf, 64, CInt(MSG_NOSIGNAL))
    var got = 0
    while true {
        let n = recv(fd, buf + 64, 4096, 0)
        if n <= 0 { break }
        got += n
    }
    precondition(got == 64, "short answer through the mesh: \(got)")
    close(fd)
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: metrics, maxDuration: .seconds(2), maxIterations: 4_000)
    harnessCheck
    Benchmark("Mesh.tcp.connection-64B") { benchmark in
        let backend = startTCPBackend()
        let port = freePort(CInt(SOCK_STREAM.rawValue))
        let mesh = startMesh(
            """
            revision: 1
            listen: 127.0.0.1
            reactors: 1
            control: /tmp/shoal-meshbench-\(getpid()).sock
            ports:
              - port: \(port)
                endpoints: [{address: "127.0.0.1:\(backend)"}]
            """)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 64)
        buf.initializeMemory(as: UInt8.self, repeating: 0x61, count: 8192)
        for _ in 0..<200 { oneConnection(port, buf) }  // warm: slots, pipes, lazy runtime state
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { oneConnection(port, buf) }
        benchmark.stopMeasurement()
        mesh.shutdown(drainMs: 0)
    }

    Benchmark("Mesh.udp.datagram-roundtrip-512B") { benchmark in
        let backend = startUDPBackend()
        let port = freePort(CInt(SOCK_DGRAM.rawValue))
        let mesh = startMesh(
            """
            revision: 1
            listen: 127.0.0.1
            reactors: 1
            control: /tmp/shoal-meshbench-udp-\(getpid()).sock
            ports:
              - port: \(port)
                protocol: udp
                endpoints: [{address: "127.0.0.1:\(backend)"}]
            """)
        let fd = socket(AF_INET, CInt(SOCK_DGRAM.rawValue), 0)
        var sin = loopback(port)
        _ = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 64)
        func roundTrip() {
            _ = send(fd, buf, 512, 0)
            let n = recv(fd, buf, 2048, 0)
            precondition(n == 512, "short datagram through the mesh")
        }
        for _ in 0..<200 { roundTrip() }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { roundTrip() }
        benchmark.stopMeasurement()
        close(fd)
        mesh.shutdown(drainMs: 0)
    }
}
/// The harness's own check: one allocation on another thread per iteration must read 1, so the
/// zeros above are the mesh's and not a counter that misses the reactor thread.
let harnessCheck: () = {
    Benchmark("Harness.counts-other-threads") { benchmark in
        let done = DispatchSemaphore(value: 0)
        let go = DispatchSemaphore(value: 0)
        Thread {
            while true {
                go.wait()
                UnsafeMutableRawPointer.allocate(byteCount: 48, alignment: 16).deallocate()
                done.signal()
            }
        }.start()
        usleep(10_000)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            go.signal()
            done.wait()
        }
    }
}()
