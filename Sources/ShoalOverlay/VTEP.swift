// The VTEP: one thread moving frames between the TAPs of the overlay networks and the underlay.
//
//   TAP(vni) ──read×B──► classify ──┬─ ARP request for a remote address ──► reply written to the TAP
//                                   ├─ broadcast / unknown MAC ──► dropped, counted (no flooding)
//                                   ├─ too big ──► ICMP frag-needed to the TAP, counted
//                                   └─ unicast to a remote MAC ──► VXLAN header written in the
//                                      headroom ─┬─ plaintext ──► sendmmsg to peer:4789
//                                                └─ encrypted ──► sealed in place ──► sendmmsg to peer:4500
//   UDP 4789 ──recvmmsg×B──► VXLAN check ──► VNI → network ──► write to its TAP
//   UDP 4500 ──recvmmsg×B──► ESP open in place ──► VXLAN check ──► VNI → network ──► write to its TAP
//
// Ordering: frames of one TAP leave in the order read (one batch, one sendmmsg); datagrams are
// written to the TAPs in the order received. Contract: single-threaded, not Sendable; the
// driver (`OverlayNode`) owns it and calls `pumpTap`/`pumpUDP` when poll says readable. Memory:
// one arena of fixed-size slots allocated at start; no allocation per packet. Slot layout:
//
//   | ESP headroom (24) | VXLAN (8) | Ethernet frame (≤ 14 + MTU) | ESP tailroom (21) | spare |
//   0                   frameOffset-8  frameOffset

import ShoalSystem
import ShoalWire

#if canImport(Glibc)
    import Glibc
#endif

/// What the VTEP needs from the ESP engine; the engine conforms in `VTEP+ESP.swift`. Seal and
/// open work in place in a slot; failures are counted by the engine.
package protocol OverlaySealer: AnyObject {
    func sealVXLAN(_ buffer: UnsafeMutableRawBufferPointer, payload: Range<Int>, peer: Int) -> Range<Int>?
    func openVXLAN(_ buffer: UnsafeMutableRawBufferPointer, datagram: Range<Int>) -> (vxlan: Range<Int>, peer: Int)?
}

package final class VTEP {
    /// Frames read from one TAP (or datagrams received) per batch.
    package static let batchPackets = 64
    /// Offset of the Ethernet frame in a slot: room for the VXLAN header and ESP's headroom.
    package static let frameOffset = 64

    package struct Network {
        package var plan: NetworkPlan
        package var tapFD: CInt
        /// Destination MAC → peer index (−1: an endpoint on this node, reached through the bridge).
        package var macToPeer: [UInt64: Int]
        /// Overlay IPv4 (host order) → MAC, for remote endpoints only: the ARP answers.
        package var arp: [UInt32: UInt64]
    }

    package let plan: OverlayPlan
    package private(set) var networks: [Network]
    private var vniToNetwork: [UInt32: Int] = [:]
    private var peerByUnderlay: [UInt32: Int] = [:]
    private var peerVXLAN: [sockaddr_in] = []
    private var peerESP: [sockaddr_in] = []
    package var counters = OverlayCounters()
    package var peerCounters: [PeerCounters]
    package var sealer: (any OverlaySealer)?

    package let vxlan: BatchUDP
    package let esp: BatchUDP?

    private let slotBytes: Int
    private let arena: UnsafeMutableRawPointer
    private let scratch: UnsafeMutableRawBufferPointer

    /// `tapFDs[i]` is network i's TAP (owned by the caller); sockets are bound here.
    package init(plan: OverlayPlan, tapFDs: [CInt], sealer: (any OverlaySealer)?) throws(SystemError) {
        precondition(Self.frameOffset >= VXLAN.headerBytes + ESPEngine.headroom, "slot headroom too small for ESP")
        self.plan = plan
        self.sealer = sealer
        var nets: [Network] = []
        var peerIndex: [String: Int] = [:]
        for (i, p) in plan.peers.enumerated() { peerIndex[p.node] = i }
        for (i, n) in plan.networks.enumerated() {
            var macToPeer: [UInt64: Int] = [:]
            var arp: [UInt32: UInt64] = [:]
            for e in n.fdb {
                if e.node == plan.node {
                    macToPeer[e.mac.value] = -1
                } else {
                    macToPeer[e.mac.value] = peerIndex[e.node]!
                    arp[e.ip] = e.mac.value
                }
            }
            nets.append(Network(plan: n, tapFD: tapFDs[i], macToPeer: macToPeer, arp: arp))
            vniToNetwork[n.vni] = i
        }
        networks = nets
        for (i, p) in plan.peers.enumerated() {
            guard case .v4(let a) = p.underlay else { continue }
            peerByUnderlay[a] = i
            peerVXLAN.append(BatchUDP.sockaddr(a, port: plan.vxlanPort))
            peerESP.append(BatchUDP.sockaddr(a, port: plan.espPort))
        }
        peerCounters = Array(repeating: PeerCounters(), count: plan.peers.count)
        vxlan = try BatchUDP(
            bind: SocketAddress(ip: plan.underlayAddress, port: plan.vxlanPort), capacity: Self.batchPackets)
        if plan.networks.contains(where: { $0.encrypted }) {
            esp = try BatchUDP(
                bind: SocketAddress(ip: plan.underlayAddress, port: plan.espPort), capacity: Self.batchPackets)
        } else {
            esp = nil
        }
        // Slot: headroom + VXLAN + the largest datagram the underlay carries + tailroom, 64-aligned.
        slotBytes = (Self.frameOffset + plan.underlayMTU + 128 + 63) & ~63
        arena = .allocate(byteCount: slotBytes * (2 * Self.batchPackets + 1), alignment: 64)
        scratch = UnsafeMutableRawBufferPointer(
            start: arena + slotBytes * 2 * Self.batchPackets, count: slotBytes)
    }

    deinit { arena.deallocate() }

    @inline(__always)
    private func slot(_ i: Int) -> UnsafeMutableRawPointer { arena + i * slotBytes }

    // MARK: TAP → underlay

    /// Reads up to one batch of frames from network `n`'s TAP and sends what must go out.
    /// Returns the number of frames read (0: the TAP is drained).
    @discardableResult
    package func pumpTap(_ n: Int) -> Int {
        let net = networks[n]
        let maxFrame = Encapsulation.ethernetHeaderBytes + net.plan.mtu
        var plain = 0
        var sealed = 0
        var read = 0
        while read < Self.batchPackets {
            let base = slot(plain + sealed)
            let room = UnsafeMutableRawBufferPointer(
                start: base + Self.frameOffset, count: slotBytes - Self.frameOffset - 64)
            guard case .success(let len) = Glibc.read(net.tapFD, room.baseAddress, room.count).asResult,
                len > 0
            else { break }
            read += 1
            counters.tapFramesIn += 1
            let frame = UnsafeMutableRawBufferPointer(rebasing: room[0..<len])
            guard len >= Encapsulation.ethernetHeaderBytes else {
                counters.dropMalformed += 1
                continue
            }
            let dst = frame.mac(0)
            if dst & 0x0100_0000_0000 != 0 {
                answerBroadcast(frame, net)
                continue
            }
            guard let peer = net.macToPeer[dst], peer >= 0 else {
                counters.dropNoRoute += 1
                continue
            }
            if len > maxFrame {
                tooBig(frame, net)
                continue
            }
            // VXLAN header (RFC 7348 §5): flags 0x08 (valid VNI), 24 reserved bits, VNI, 8 reserved bits.
            let vx = base + Self.frameOffset - Encapsulation.vxlanHeaderBytes
            VXLAN.write(
                vni: net.plan.vni, into: UnsafeMutableRawBufferPointer(start: vx, count: VXLAN.headerBytes), at: 0)
            let vxLen = Encapsulation.vxlanHeaderBytes + len
            peerCounters[peer].txPackets += 1
            peerCounters[peer].txBytes += UInt64(vxLen)
            if net.plan.encrypted {
                guard let sealer, let esp else {
                    counters.dropNoTxSA += 1
                    continue
                }
                let off = Self.frameOffset - Encapsulation.vxlanHeaderBytes
                guard
                    let r = sealer.sealVXLAN(
                        UnsafeMutableRawBufferPointer(start: base, count: slotBytes), payload: off..<(off + vxLen),
                        peer: peer)
                else {
                    counters.dropNoTxSA += 1
                    continue
                }
                // Sealed datagrams use slots from the top of the send half, plaintext from the bottom.
                esp.setSlot(sealed, base: base + r.lowerBound, count: r.count)
                esp.setDestination(sealed, peerESP[peer])
                sealed += 1
            } else {
                vxlan.setSlot(plain, base: vx, count: vxLen)
                vxlan.setDestination(plain, peerVXLAN[peer])
                plain += 1
            }
        }
        flush(plain: plain, sealed: sealed)
        return read
    }

    private func flush(plain: Int, sealed: Int) {
        if plain > 0 {
            let r = vxlan.send(plain)
            counters.udpDatagramsOut += UInt64(plain - r.failed)
            if r.failed > 0 {
                counters.dropSendFailed += UInt64(r.failed)
                counters.lastSendErrno = r.error?.rawValue ?? 0
            }
        }
        if sealed > 0, let esp {
            let r = esp.send(sealed)
            counters.udpDatagramsOut += UInt64(sealed - r.failed)
            if r.failed > 0 {
                counters.dropSendFailed += UInt64(r.failed)
                counters.lastSendErrno = r.error?.rawValue ?? 0
            }
        }
    }

    private func answerBroadcast(_ frame: UnsafeMutableRawBufferPointer, _ net: Network) {
        guard let target = Frames.arpRequestTarget(frame), let mac = net.arp[target] else {
            counters.dropFloodSuppressed += 1
            return
        }
        let len = Frames.arpReply(frame, mac: mac)
        if Glibc.write(net.tapFD, frame.baseAddress, len) == len {
            counters.arpReplies += 1
        } else {
            counters.dropTapWriteFailed += 1
        }
    }

    private func tooBig(_ frame: UnsafeMutableRawBufferPointer, _ net: Network) {
        counters.dropMTU += 1
        guard Frames.isIPv4DontFragment(frame),
            let len = Frames.fragmentationNeeded(frame, mtu: net.plan.mtu, into: scratch)
        else { return }
        if Glibc.write(net.tapFD, scratch.baseAddress, len) == len {
            counters.icmpFragmentationNeededSent += 1
        } else {
            counters.dropTapWriteFailed += 1
        }
    }

    // MARK: underlay → TAP

    /// Receives up to one batch from the VXLAN socket (`encrypted == false`) or the ESP socket,
    /// and writes the frames to their TAPs. Returns the number of datagrams (0: drained).
    @discardableResult
    package func pumpUDP(encrypted: Bool) -> Int {
        guard let sock = encrypted ? esp : vxlan else { return 0 }
        let first = Self.batchPackets
        for i in 0..<Self.batchPackets { sock.setSlot(i, base: slot(first + i), count: slotBytes) }
        guard case .success(let n) = sock.receive(Self.batchPackets) else { return 0 }
        for i in 0..<n {
            counters.udpDatagramsIn += 1
            let buffer = UnsafeMutableRawBufferPointer(start: slot(first + i), count: slotBytes)
            let len = sock.length(i)
            if sock.truncated(i) {
                counters.dropMalformed += 1
                continue
            }
            var vx = 0..<len
            var peer = peerByUnderlay[sock.sourceAddress(i)] ?? -1
            if encrypted {
                guard let sealer, let opened = sealer.openVXLAN(buffer, datagram: 0..<len) else {
                    counters.dropESP += 1
                    continue
                }
                vx = opened.vxlan
                peer = opened.peer
            }
            deliver(buffer, vx, peer: peer, encrypted: encrypted)
        }
        return n
    }

    @inline(__always)
    private func deliver(_ b: UnsafeMutableRawBufferPointer, _ vx: Range<Int>, peer: Int, encrypted: Bool) {
        // RFC 7348 §5: the I flag must be set; other flag bits and reserved fields are ignored on receipt.
        guard let vni = VXLAN.parse(UnsafeRawBufferPointer(rebasing: b[vx])) else {
            counters.dropMalformed += 1
            return
        }
        guard let n = vniToNetwork[vni] else {
            counters.dropUnknownVNI += 1
            return
        }
        let net = networks[n]
        guard net.plan.encrypted == encrypted else {
            counters.dropWrongEncapsulation += 1
            return
        }
        let frameLen = vx.count - Encapsulation.vxlanHeaderBytes
        guard frameLen <= Encapsulation.ethernetHeaderBytes + net.plan.mtu else {
            counters.dropMTU += 1
            return
        }
        if peer >= 0 {
            peerCounters[peer].rxPackets += 1
            peerCounters[peer].rxBytes += UInt64(vx.count)
        }
        let start = b.baseAddress! + vx.lowerBound + Encapsulation.vxlanHeaderBytes
        if Glibc.write(net.tapFD, start, frameLen) == frameLen {
            counters.tapFramesOut += 1
        } else {
            counters.dropTapWriteFailed += 1
        }
    }
}

extension Int {
    /// read(2)'s result as a value: the count, or the errno (read right after the call is not
    /// needed here: the VTEP treats every failure as "stop this batch").
    @inline(__always) var asResult: Result<Int, Errno> { self < 0 ? .failure(Errno(EAGAIN)) : .success(self) }
}
