// The mesh end to end on loopback: real listeners, real backends, real clients.

import Foundation
import Synchronization
import Testing

@testable import ShoalMesh
@testable import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

func meshYAML(
    port: UInt16, endpoints: [UInt16], revision: Int = 1, options: String = "", extraPorts: String = "",
    endpointOptions: String = ""
) -> String {
    var y =
        "revision: \(revision)\nlisten: 127.0.0.1\nreactors: 1\ncontrol: /tmp/shoal-mesh-test-\(getpid())-\(port).sock\n"
    y += "ports:\n  - port: \(port)\n"
    for line in options.split(separator: "\n") { y += "    \(line)\n" }
    y += "    endpoints:\n"
    for e in endpoints { y += "      - {address: \"127.0.0.1:\(e)\"\(endpointOptions)}\n" }
    return y + extraPorts
}

@Suite(.serialized) struct MeshRelayTests {
    @Test func roundRobinAcrossTasksWithEcho() throws {
        let (a, b) = try Backend.pair()
        defer { Backend.stop(a, b) }
        let port = Kit.freePort()
        let mesh = try Kit.mesh(meshYAML(port: port, endpoints: [a.port, b.port]))
        defer { mesh.shutdown(drainMs: 0) }
        var seen: [String] = []
        for i in 0..<4 {
            let fd = try #require(Kit.connect(port))
            Kit.send(fd, "ping\(i)\n")
            let got = Kit.text(Kit.read(fd, count: 8))
            seen.append(String(got.prefix(1)))
            #expect(got.hasSuffix("ping\(i)\n"))
            close(fd)
        }
        #expect(seen == ["A", "B", "A", "B"])
        #expect(Kit.eventually { mesh.table.ports[0].runtime.active.load(ordering: .relaxed) == 0 })
        #expect(Kit.counter(mesh, port, .accepted) == 4)
        #expect(Kit.counter(mesh, port, .bytesIn) == 24)
    }

    @Test func twoReactorsShareThePortAndBothTakeTheNewTable() throws {
        let (a, b) = try Backend.pair()
        defer { Backend.stop(a, b) }
        let port = Kit.freePort()
        let yaml = meshYAML(port: port, endpoints: [a.port]).replacingOccurrences(
            of: "reactors: 1", with: "reactors: 2")
        let mesh = try Kit.mesh(yaml)
        defer { mesh.shutdown(drainMs: 0) }
        #expect(mesh.reactors.count == 2)
        for _ in 0..<40 {
            let fd = try #require(Kit.connect(port))
            #expect(Kit.read(fd, count: 2) == Array("A\n".utf8))
            close(fd)
        }
        let revision2 = meshYAML(port: port, endpoints: [b.port], revision: 2)
            .replacingOccurrences(of: "reactors: 1", with: "reactors: 2")
        try mesh.apply(Kit.spec(revision2))
        #expect(mesh.reactors.allSatisfy { $0.servedRevision == 2 })
        for _ in 0..<40 {
            let fd = try #require(Kit.connect(port))
            #expect(Kit.read(fd, count: 2) == Array("B\n".utf8))
            close(fd)
        }
        #expect(Kit.counter(mesh, port, .accepted) == 80)
    }

    @Test func bulkTransferIsExactAndHalfCloseIsPassedOn() throws {
        let backend = try Backend(name: "R", behaviour: .replyAfterEOF, greet: false)
        defer { backend.stop() }
        let port = Kit.freePort()
        let mesh = try Kit.mesh(meshYAML(port: port, endpoints: [backend.port]))
        defer { mesh.shutdown(drainMs: 0) }
        var payload = [UInt8](repeating: 0, count: 8 << 20)
        var rng = SplitMix64(seed: 42)
        for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: rng.next()) }
        let fd = try #require(Kit.connect(port, timeout: 20))
        defer { close(fd) }
        let sent = payload
        // The backend answers only after our FIN: the mesh must pass the half-close on and keep
        // the other direction open.
        let writer = Thread {
            Kit.sendBytes(fd, sent)
            shutdown(fd, Int32(SHUT_WR))
        }
        writer.start()
        let (got, eof) = Kit.readAll(fd)
        #expect(eof)
        #expect(got.count == payload.count)
        #expect(got == payload.reversed())
    }

    @Test func failedConnectRetriesAnotherTaskAndEjects() throws {
        let good = try Backend(name: "G")
        defer { good.stop() }
        let dead = Kit.freePort()  // nothing listens: connection refused
        let port = Kit.freePort()
        let mesh = try Kit.mesh(
            meshYAML(
                port: port, endpoints: [dead, good.port], options: "passiveEjection: {failures: 2, ejectMs: 60000}"))
        defer { mesh.shutdown(drainMs: 0) }
        for _ in 0..<6 {
            let fd = try #require(Kit.connect(port))
            #expect(Kit.text(Kit.read(fd, count: 2)) == "G\n")
            close(fd)
        }
        #expect(Kit.counter(mesh, port, .connectRefused) == 2)
        #expect(Kit.counter(mesh, port, .retries) == 2)
        let t = mesh.table.ports[0]
        #expect(t.endpoints[0].ejections.load(ordering: .relaxed) == 1)
        #expect(!t.eligible(0, nowMs: shoal_now_ms_for_tests()))
    }

    @Test func refusesCleanlyWithoutHealthyTasksAndAtMaxConnections() throws {
        let backend = try Backend(name: "M")
        defer { backend.stop() }
        let port = Kit.freePort()
        let other = Kit.freePort()
        let extra = "  - port: \(other)\n    endpoints: [{address: \"127.0.0.1:\(backend.port)\", healthy: false}]\n"
        let mesh = try Kit.mesh(
            meshYAML(port: port, endpoints: [backend.port], options: "maxConnections: 2", extraPorts: extra))
        defer { mesh.shutdown(drainMs: 0) }
        let c1 = try #require(Kit.connect(port))
        let c2 = try #require(Kit.connect(port))
        #expect(Kit.read(c1, count: 2) == Array("M\n".utf8))
        #expect(Kit.read(c2, count: 2) == Array("M\n".utf8))
        let c3 = try #require(Kit.connect(port))
        let (b3, eof3) = Kit.readAll(c3)
        #expect(b3.isEmpty && !eof3)  // reset, not a clean close
        #expect(Kit.counter(mesh, port, .refusedMaxConnections) == 1)
        let d = try #require(Kit.connect(other))
        let (bd, eofd) = Kit.readAll(d)
        #expect(bd.isEmpty && !eofd)
        #expect(Kit.counter(mesh, other, .refusedNoHealthyTask) == 1)
        for fd in [c1, c2, c3, d] { close(fd) }
    }

    @Test func applySwapsTablesWithoutDroppingConnections() throws {
        let (a, b) = try Backend.pair()
        defer { Backend.stop(a, b) }
        let port = Kit.freePort()
        let port2 = Kit.freePort()
        let mesh = try Kit.mesh(meshYAML(port: port, endpoints: [a.port]))
        defer { mesh.shutdown(drainMs: 0) }
        let long = try #require(Kit.connect(port))
        defer { close(long) }
        #expect(Kit.read(long, count: 2) == Array("A\n".utf8))
        // Revision 2: A leaves (its connection drains), B serves, a second port opens.
        let extra = "  - port: \(port2)\n    endpoints: [{address: \"127.0.0.1:\(b.port)\"}]\n"
        try mesh.apply(Kit.spec(meshYAML(port: port, endpoints: [b.port], revision: 2, extraPorts: extra)))
        #expect(mesh.reactors.allSatisfy { $0.servedRevision == 2 })
        let fresh = try #require(Kit.connect(port))
        #expect(Kit.read(fresh, count: 2) == Array("B\n".utf8))
        let second = try #require(Kit.connect(port2))
        #expect(Kit.read(second, count: 2) == Array("B\n".utf8))
        Kit.send(long, "still here\n")
        #expect(Kit.text(Kit.read(long, count: 11)) == "still here\n")
        // A malformed table is refused whole; revision 2 keeps serving.
        #expect(throws: (any Error).self) { try mesh.apply(Kit.spec("revision: 3\nports: [{port: 0, endpoints: []}]")) }
        #expect(mesh.table.revision == 2)
        // Revision 3 removes the second port: its listener closes.
        try mesh.apply(Kit.spec(meshYAML(port: port, endpoints: [b.port], revision: 3)))
        #expect(Kit.connect(port2) == nil)
        Kit.send(second, "drain\n")
        #expect(Kit.text(Kit.read(second, count: 6)) == "drain\n")
        for fd in [fresh, second] { close(fd) }
    }

    @Test func drainTimeoutEndsConnectionsOfATaskThatLeft() throws {
        let (a, b) = try Backend.pair()
        defer { Backend.stop(a, b) }
        let port = Kit.freePort()
        let mesh = try Kit.mesh(meshYAML(port: port, endpoints: [a.port], options: "drainTimeoutMs: 300"))
        defer { mesh.shutdown(drainMs: 0) }
        let fd = try #require(Kit.connect(port))
        defer { close(fd) }
        #expect(Kit.read(fd, count: 2) == Array("A\n".utf8))
        try mesh.apply(Kit.spec(meshYAML(port: port, endpoints: [b.port], revision: 2, options: "drainTimeoutMs: 300")))
        let start = Date()
        let (_, eof) = Kit.readAll(fd)
        let waited = Date().timeIntervalSince(start)
        #expect(!eof)  // reset at the drain deadline
        #expect(waited > 0.2 && waited < 3)
        #expect(Kit.counter(mesh, port, .drainClosed) == 1)
    }

    @Test func idleTimeoutClosesSilentConnections() throws {
        let a = try Backend(name: "A")
        defer { a.stop() }
        let port = Kit.freePort()
        let mesh = try Kit.mesh(meshYAML(port: port, endpoints: [a.port], options: "idleTimeoutMs: 200"))
        defer { mesh.shutdown(drainMs: 0) }
        let fd = try #require(Kit.connect(port))
        defer { close(fd) }
        #expect(Kit.read(fd, count: 2) == Array("A\n".utf8))
        let (_, eof) = Kit.readAll(fd)
        #expect(eof)
        #expect(Kit.counter(mesh, port, .idleTimeouts) == 1)
    }

    @Test func activeHealthChecksTakeATaskOutAndBringItBack() throws {
        let a = try Backend(name: "A")
        let bPort = Kit.freePort()
        defer { a.stop() }
        let port = Kit.freePort()
        let mesh = try Kit.mesh(
            meshYAML(
                port: port, endpoints: [a.port, bPort],
                options: "healthCheck: {intervalMs: 50, timeoutMs: 40, rise: 2, fall: 2}"))
        defer { mesh.shutdown(drainMs: 0) }
        let t = mesh.table.ports[0]
        #expect(Kit.eventually { !t.endpoints[1].checkHealthy.load(ordering: .relaxed) })
        #expect(t.endpoints[0].checkHealthy.load(ordering: .relaxed) == true)
        let b = try Backend(name: "B", port: bPort)
        defer { b.stop() }
        #expect(Kit.eventually { t.endpoints[1].checkHealthy.load(ordering: .relaxed) })
    }

    @Test func sigtermStyleShutdownDrainsThenStops() throws {
        let a = try Backend(name: "A")
        defer { a.stop() }
        let port = Kit.freePort()
        let mesh = try Kit.mesh(meshYAML(port: port, endpoints: [a.port]))
        let fd = try #require(Kit.connect(port))
        defer { close(fd) }
        #expect(Kit.read(fd, count: 2) == Array("A\n".utf8))
        let stopped = Atomic<Bool>(false)
        let t = Thread {
            mesh.shutdown(drainMs: 5_000)
            stopped.store(true, ordering: .relaxed)
        }
        t.start()
        // No new connections (one that raced the stop is closed by us at once).
        #expect(
            Kit.eventually(2) {
                guard let fd = Kit.connect(port) else { return true }
                close(fd)
                return false
            })
        Kit.send(fd, "last\n")
        #expect(Kit.text(Kit.read(fd, count: 5)) == "last\n")  // the old one still works
        let early = stopped.load(ordering: .relaxed)
        #expect(!early)
        shutdown(fd, Int32(SHUT_WR))
        #expect(Kit.eventually { stopped.load(ordering: .relaxed) })
    }
}

func shoal_now_ms_for_tests() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000 + UInt64(ts.tv_nsec) / 1_000_000
}

@Suite struct ListenerInheritanceTests {
    /// The mesh sets TCP_NODELAY and keepalive once on each listener and relies on Linux copying
    /// them into accepted sockets: check that platform behaviour.
    @Test func acceptedSocketsInheritNoDelayAndKeepalive() throws {
        let port = Kit.freePort()
        let spec = try Kit.spec(
            "revision: 1\nports:\n  - port: \(port)\n    keepalive: {idleS: 77, intervalS: 7, count: 4}\n    endpoints: []"
        )
        let listener = try Socket.listenTCP(SocketAddress(ip: .v4(0x7F00_0001), port: port))
        tuneListener(listener.rawValue, spec.ports[0])
        let client = try #require(Kit.connect(port))
        defer { close(client) }
        let fd = accept(listener.rawValue, nil, nil)
        #expect(fd >= 0)
        defer { close(fd) }
        func option(_ level: CInt, _ name: CInt) -> CInt {
            var v: CInt = -1
            var len = socklen_t(MemoryLayout<CInt>.size)
            getsockopt(fd, level, name, &v, &len)
            return v
        }
        #expect(option(CInt(IPPROTO_TCP), TCP_NODELAY) != 0)
        #expect(option(SOL_SOCKET, SO_KEEPALIVE) != 0)
        #expect(option(CInt(IPPROTO_TCP), TCP_KEEPIDLE) == 77)
        #expect(option(CInt(IPPROTO_TCP), TCP_KEEPINTVL) == 7)
        #expect(option(CInt(IPPROTO_TCP), TCP_KEEPCNT) == 4)
    }
}
