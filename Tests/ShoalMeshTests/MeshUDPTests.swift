import Foundation
import Synchronization
import Testing

@testable import ShoalMesh
@testable import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

/// A UDP backend on 127.0.0.1 answering each datagram with "<name>:<datagram>".
final class UDPBackend: @unchecked Sendable {
    let port: UInt16
    private let fd: CInt
    private let stopped = Atomic<Bool>(false)

    init(name: String) throws {
        port = Kit.freePort(udp: true)
        let s = try Socket.bindUDP(SocketAddress(ip: .v4(0x7F00_0001), port: port))
        fd = s.release()
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let raw = fd
        let prefix = Array((name + ":").utf8)
        Thread { [self] in
            var buf = [UInt8](repeating: 0, count: 65_536)
            var from = sockaddr_storage()
            while !stopped.load(ordering: .relaxed) {
                var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = buf.withUnsafeMutableBytes { b in
                    withUnsafeMutablePointer(to: &from) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            recvfrom(raw, b.baseAddress, b.count, 0, $0, &len)
                        }
                    }
                }
                if n <= 0 { continue }
                let reply = prefix + buf[0..<n]
                _ = reply.withUnsafeBytes { r in
                    withUnsafePointer(to: &from) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(raw, r.baseAddress, r.count, 0, $0, len)
                        }
                    }
                }
            }
        }.start()
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        usleep(150_000)
        close(fd)
    }
}

/// A client socket connected to the mesh's UDP port: it only accepts datagrams from there.
func udpClient(_ port: UInt16, to ip: UInt32 = 0x7F00_0001) -> CInt {
    let fd = socket(AF_INET, CInt(SOCK_DGRAM.rawValue), 0)
    var tv = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    // From 127.0.0.1 explicitly (the kernel would otherwise pick the destination as source).
    var local = sockaddr_storage()
    let localLen = SocketAddress(ip: .v4(0x7F00_0001), port: 0).write(to: &local)
    _ = withUnsafePointer(to: &local) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, localLen) }
    }
    var ss = sockaddr_storage()
    let len = SocketAddress(ip: .v4(ip), port: port).write(to: &ss)
    _ = withUnsafePointer(to: &ss) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) }
    }
    return fd
}

func udpExchange(_ fd: CInt, _ text: String) -> String? {
    Kit.send(fd, text)
    var buf = [UInt8](repeating: 0, count: 2_048)
    let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    return n > 0 ? Kit.text(Array(buf[0..<n])) : nil
}

@Suite(.serialized) struct MeshUDPTests {
    func yaml(_ port: UInt16, _ endpoints: [UInt16], revision: Int = 1, flowMs: Int = 30_000) -> String {
        meshYAML(
            port: port, endpoints: endpoints, revision: revision, options: "protocol: udp\nflowTimeoutMs: \(flowMs)")
    }

    @Test func flowsStickRepliesComeFromThePublishedPortAndMoveWhenTheTaskLeaves() throws {
        let (a, b) = (try UDPBackend(name: "A"), try UDPBackend(name: "B"))
        defer { [a, b].forEach { $0.stop() } }
        let port = Kit.freePort(udp: true)
        let mesh = try Kit.mesh(yaml(port, [a.port, b.port]))
        defer { mesh.shutdown(drainMs: 0) }
        let c1 = udpClient(port)
        let c2 = udpClient(port)
        defer {
            close(c1)
            close(c2)
        }
        // Connected client sockets accept replies only from the published port.
        let first = try #require(udpExchange(c1, "one"))
        #expect(udpExchange(c1, "two") == String(first.prefix(2)) + "two")  // same flow, same task
        let other = try #require(udpExchange(c2, "x"))
        #expect(first.prefix(1) != other.prefix(1))  // round robin across flows
        #expect(Kit.counter(mesh, port, .udpFlowsCreated, udp: true) == 2)
        // The task of c1 leaves the table: its next datagram goes to the other task at once.
        let keep = first.hasPrefix("A") ? b.port : a.port
        try mesh.apply(Kit.spec(yaml(port, [keep], revision: 2)))
        let moved = try #require(udpExchange(c1, "three"))
        #expect(moved.prefix(1) != first.prefix(1) && moved.hasSuffix("three"))
        #expect(Kit.counter(mesh, port, .udpFlowsMoved, udp: true) >= 1)
    }

    @Test func aWildcardListenerRepliesFromTheAddressTheClientUsed() throws {
        let a = try UDPBackend(name: "A")
        defer { a.stop() }
        let port = Kit.freePort(udp: true)
        let mesh = try Kit.mesh(
            yaml(port, [a.port]).replacingOccurrences(of: "listen: 127.0.0.1", with: "listen: 0.0.0.0"))
        defer { mesh.shutdown(drainMs: 0) }
        // The client talks to 127.0.0.2 from 127.0.0.1: a reply from any other source address
        // is dropped by its connected socket.
        let c = udpClient(port, to: 0x7F00_0002)
        defer { close(c) }
        #expect(udpExchange(c, "where") == "A:where")
        #expect(udpExchange(c, "again") == "A:again")
    }

    @Test func idleFlowsExpire() throws {
        let a = try UDPBackend(name: "A")
        defer { a.stop() }
        let port = Kit.freePort(udp: true)
        let mesh = try Kit.mesh(yaml(port, [a.port], flowMs: 150))
        defer { mesh.shutdown(drainMs: 0) }
        let c = udpClient(port)
        defer { close(c) }
        #expect(udpExchange(c, "hi") == "A:hi")
        #expect(Kit.eventually(3) { Kit.counter(mesh, port, .udpFlowsExpired, udp: true) == 1 })
        #expect(udpExchange(c, "again") == "A:again")
        #expect(Kit.counter(mesh, port, .udpFlowsCreated, udp: true) == 2)
    }
}
