// The VTEP in process (STYLE.md §9, levels one and two): fake TAPs (SOCK_SEQPACKET socket
// pairs: one frame per read, like a TAP) and real UDP sockets on loopback (127.0.0.1 and
// 127.0.0.2), driven by calling pumpTap / pumpUDP directly.

import Foundation
import Testing

@testable import ShoalOverlay

#if canImport(Glibc)
    import Glibc
#endif

private let macA: [UInt8] = [0x02, 0, 0xC6, 0x13, 0, 1]
private let macB: [UInt8] = [0x02, 0, 0xC6, 0x13, 0, 2]

/// Two VTEPs a (127.0.0.1) and b (127.0.0.2) on one network, each with a fake TAP.
private final class Pair {
    let a: VTEP
    let b: VTEP
    /// The test's ends of the fake TAPs.
    let tapA: CInt
    let tapB: CInt
    private var fds: [CInt] = []

    init(encrypted: Bool) throws {
        let port = 20000 + Int(getpid() % 20000) + (encrypted ? 1 : 0)
        func config(_ node: String, _ address: String) -> OverlayConfig {
            OverlayConfig(
                node: node, underlay: .init(address: address, mtu: 1500, vxlanPort: port, espPort: port + 2),
                networks: [
                    .init(
                        name: "t", vni: 77, subnet: "198.19.0.0/24", mtu: nil, encrypted: encrypted,
                        fdb: [
                            .init(mac: "02:00:c6:13:00:01", ip: "198.19.0.1", node: "a", underlay: "127.0.0.1"),
                            .init(mac: "02:00:c6:13:00:02", ip: "198.19.0.2", node: "b", underlay: "127.0.0.2"),
                        ])
                ],
                keyRing: KeyRing(epochs: [KeyEpoch(id: 1, key: String(repeating: "5a", count: 16), state: .tx)]))
        }
        var pairA: [CInt] = [0, 0]
        var pairB: [CInt] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pairA) == 0,
            socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pairB) == 0
        else { throw OverlayLabError(description: "socketpair failed") }
        fds = pairA + pairB
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        let planA = try config("a", "127.0.0.1").validate()
        let planB = try config("b", "127.0.0.2").validate()
        let sealerA = encrypted ? try ESPEngine(localNode: "a", keyRing: planA.keyRing!, peers: ["b"]) : nil
        let sealerB = encrypted ? try ESPEngine(localNode: "b", keyRing: planB.keyRing!, peers: ["a"]) : nil
        a = try VTEP(plan: planA, tapFDs: [pairA[0]], sealer: sealerA)
        b = try VTEP(plan: planB, tapFDs: [pairB[0]], sealer: sealerB)
        tapA = pairA[1]
        tapB = pairB[1]
    }

    deinit { for fd in fds { close(fd) } }

    /// Reads every frame b's VTEP wrote to its TAP (virtio_net_hdr included).
    func drainB() -> [[UInt8]] {
        var out: [[UInt8]] = []
        var buf = [UInt8](repeating: 0, count: 70000)
        while true {
            let n = buf.withUnsafeMutableBytes { read(tapB, $0.baseAddress, $0.count) }
            if n <= 0 { return out }
            out.append(Array(buf[0..<n]))
        }
    }
}

/// An Ethernet + IPv4 + TCP frame from a to b (checksums left for the VTEP when `partial`).
private func tcpFrame(payload: [UInt8], seq: UInt32) -> [UInt8] {
    var f = macB + macA + [0x08, 0x00]
    let total = 20 + 20 + payload.count
    f += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0x12, 0x34, 0x40, 0, 64, 6, 0, 0]
    f += [198, 19, 0, 1, 198, 19, 0, 2]
    f += [0x9C, 0x40, 0x14, 0x51]  // ports 40000 → 5201
    f += withUnsafeBytes(of: seq.bigEndian, Array.init)
    f += [0, 0, 0, 1, 0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]
    return f + payload
}

@Suite(.serialized) struct VTEPLoopbackTests {
    /// A TSO superframe read from the TAP leaves as MSS-sized VXLAN datagrams (one UDP GSO
    /// send) and arrives on the other side coalesced into one superframe with the same bytes.
    @Test(arguments: [false, true]) func superframeCrossesSegmentedAndCoalesces(encrypted: Bool) throws {
        let p = try Pair(encrypted: encrypted)
        let payload = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let mss = 1_360
        var header = [UInt8](repeating: 0, count: 10)
        header[0] = 1  // NEEDS_CSUM (left partial: the VTEP's segments carry their own)
        header[1] = 1  // GSO TCPv4
        header[2] = 54
        header[4] = UInt8(mss & 0xFF)
        header[5] = UInt8(mss >> 8)
        header[6] = 34
        header[8] = 16
        let frame = header + tcpFrame(payload: payload, seq: 1000)
        #expect(frame.withUnsafeBytes { write(p.tapA, $0.baseAddress, $0.count) } == frame.count)
        #expect(p.a.pumpTap(0) == 1)
        #expect(p.a.counters.udpDatagramsOut == 1)  // one GSO message
        #expect(p.a.peerCounters[0].txPackets == UInt64((payload.count + mss - 1) / mss))
        usleep(20_000)
        while p.b.pumpUDP(encrypted: encrypted) > 0 {}
        let got = p.drainB()
        #expect(p.b.counters.tapFramesOut == UInt64((payload.count + mss - 1) / mss))
        #expect(got.count == 1, "frames written to b's TAP: \(got.map(\.count))")
        guard let g = got.first, g.count == 10 + 54 + payload.count else { return }
        #expect(g[1] == 1 && Int(g[4]) | Int(g[5]) << 8 == mss)  // GSO TCPv4 with the MSS
        #expect(Array(g[(10 + 54)...]) == payload)
        #expect(Array(g[10..<22]) == macB + macA)
    }

    /// Frames with no route, broadcasts and bad datagrams are dropped and counted.
    @Test func dropsAreCounted() throws {
        let p = try Pair(encrypted: false)
        let header = [UInt8](repeating: 0, count: 10)
        let toNobody = header + [0x02, 0, 0, 0, 0, 9] + macA + [0x08, 0] + [UInt8](repeating: 0, count: 50)
        let broadcast =
            header + [UInt8](repeating: 0xFF, count: 6) + macA + [0x86, 0xDD] + [UInt8](repeating: 0, count: 50)
        let arp =
            header + [UInt8](repeating: 0xFF, count: 6) + macA + [0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1] + macA
            + [198, 19, 0, 1] + [0, 0, 0, 0, 0, 0] + [198, 19, 0, 2]
        for f in [toNobody, broadcast, arp] {
            _ = f.withUnsafeBytes { write(p.tapA, $0.baseAddress, $0.count) }
        }
        p.a.pumpTap(0)
        #expect(p.a.counters.dropNoRoute == 1)
        #expect(p.a.counters.dropFloodSuppressed == 1)
        #expect(p.a.counters.arpReplies == 1)
        var reply = [UInt8](repeating: 0, count: 100)
        let n = reply.withUnsafeMutableBytes { read(p.tapA, $0.baseAddress, $0.count) }
        #expect(n == 10 + 42 && Array(reply[16..<22]) == macB)  // "198.19.0.2 is at b's MAC"

        let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(s) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = UInt16(p.b.plan.vxlanPort).bigEndian
        to.sin_addr.s_addr = UInt32(0x7F00_0002).bigEndian
        for d: [UInt8] in [
            [1, 2, 3], [0, 0, 0, 0, 0, 0, 77, 0] + [UInt8](repeating: 0, count: 20),
            [8, 0, 0, 0, 0, 0, 78, 0] + [UInt8](repeating: 0, count: 20),
        ] {
            _ = d.withUnsafeBytes { raw in
                withUnsafePointer(to: &to) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(s, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
        }
        usleep(20_000)
        while p.b.pumpUDP(encrypted: false) > 0 {}
        #expect(p.b.counters.dropMalformed == 2)  // too short; I flag clear
        #expect(p.b.counters.dropUnknownVNI == 1)
        #expect(p.drainB().isEmpty)
    }
}
