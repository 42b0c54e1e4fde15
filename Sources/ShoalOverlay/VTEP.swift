// The VTEP: one thread moving frames between the TAPs of the overlay networks and the underlay.
//
//   TAP(vni) ──read×B──► classify ──┬─ ARP request / neighbor solicitation for a remote address
//                                   │    ──► reply / advertisement written to the TAP
//                                   ├─ broadcast / unknown MAC ──► dropped, counted (no flooding)
//                                   ├─ too big ──► ICMP frag-needed / ICMPv6 packet too big to
//                                   │              the TAP, counted
//                                   └─ unicast to a remote MAC ──► VXLAN header written in the
//                                      headroom ─┬─ plaintext ──► sendmmsg to peer:4789
//                                                └─ encrypted ──► sealed in place ──► sendmmsg to peer:4500
//   UDP 4789 ──recvmmsg×B──► VXLAN check ──► VNI → network ──► write to its TAP
//   UDP 4500 ──recvmmsg×B──► ESP open in place ──► VXLAN check ──► VNI → network ──► write to its TAP
//
// Offloads: the TAP has IFF_VNET_HDR with TSO4/TSO6, USO4/USO6 and checksum offload, so a read
// returns a virtio_net_hdr and up to 64 KiB of TCP, or of UDP a task sent with UDP_SEGMENT; the
// VTEP cuts it into gso_size segments (see OverlaySegmentation.swift), lays them out back to
// back as equal-size VXLAN or ESP datagrams and sends each run with one UDP GSO message
// (UDP_SEGMENT). On receive, UDP_GRO hands over
// runs of datagrams, opened and written to the TAP one frame each.
//
// Ordering: frames of one TAP leave in the order read (one batch, one sendmmsg); datagrams are
// written to the TAPs in the order received. Contract: single-threaded, not Sendable; the
// driver (`OverlayNode`) owns it and calls `pumpTap`/`pumpUDP` when poll says readable. Memory:
// buffers allocated once at start (a TAP read buffer, a send arena of one 64 KiB slot per
// message, a receive arena of one 64 KiB slot per message); no allocation per packet. A send
// slot holds a run of datagrams of one stride:
//
//   | unit 0: [ESP hdr+IV+UDP (24)]? [VXLAN (8)] [segment frame] [ESP tail]? | unit 1 ... |

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

    package struct Network {
        package var plan: NetworkPlan
        package var tapFD: CInt
        /// Destination MAC → peer index (−1: an endpoint on this node, reached through the bridge).
        package var macToPeer: [UInt64: Int]
        /// Overlay IPv4 (host order) → MAC, for remote endpoints only: the ARP answers.
        package var arp: [UInt32: UInt64]
        /// Overlay IPv6 → MAC, for remote endpoints only: the neighbor advertisements.
        package var ndp: [IPAddress: UInt64]
    }

    package let plan: OverlayPlan
    package private(set) var networks: [Network]
    /// Per network, by index: what the receive path needs, as plain arrays (no dictionary
    /// hashing or struct copies per datagram; a node serves a handful of networks).
    private var rxVNIs: [UInt32] = []
    private var rxTapFDs: [CInt] = []
    private var rxEncrypted: [Bool] = []
    private var rxMaxFrame: [Int] = []
    private var peerByUnderlay: [IPAddress: Int] = [:]
    private var peerVXLAN: [UDPDestination] = []
    private var peerESP: [UDPDestination] = []
    package var counters = OverlayCounters()
    package var peerCounters: [PeerCounters]
    package var sealer: (any OverlaySealer)?

    package let vxlan: BatchUDP
    package let esp: BatchUDP?

    /// Send and receive slots: a 64 KiB run of datagrams (UDP GSO/GRO maximum) plus room.
    private static let slotBytes = 65536 + 256
    /// Received datagrams start this far into their slot, so a virtio_net_hdr fits in front
    /// of the first frame.
    private static let receiveOffset = 16
    /// At most this many datagrams per UDP GSO message, and this many bytes.
    private static let gsoMaxSegments = 64
    private static let gsoMaxBytes = 65000
    private let readBuffer: UnsafeMutableRawBufferPointer
    private let sendArena: UnsafeMutableRawPointer
    private let receiveArena: UnsafeMutableRawPointer
    private let scratch: UnsafeMutableRawBufferPointer
    /// Receive-side TCP coalescing, one per network.
    private let coalescers: [TCPCoalescer]

    /// `tapFDs[i]` is network i's TAP (owned by the caller); sockets are bound here. With
    /// `plan.queues > 1` this VTEP is one queue's: its sockets join the SO_REUSEPORT groups of
    /// the underlay ports (bind them in queue order: the order is the steering index).
    package init(plan: OverlayPlan, tapFDs: [CInt], sealer: (any OverlaySealer)?) throws(SystemError) {
        self.plan = plan
        self.sealer = sealer
        var nets: [Network] = []
        var peerIndex: [String: Int] = [:]
        for (i, p) in plan.peers.enumerated() { peerIndex[p.node] = i }
        for (i, n) in plan.networks.enumerated() {
            var macToPeer: [UInt64: Int] = [:]
            var arp: [UInt32: UInt64] = [:]
            var ndp: [IPAddress: UInt64] = [:]
            for e in n.fdb {
                if e.node == plan.node {
                    macToPeer[e.mac.value] = -1
                } else {
                    macToPeer[e.mac.value] = peerIndex[e.node]!
                    arp[e.ip] = e.mac.value
                    if let ip6 = e.ip6 { ndp[ip6] = e.mac.value }
                }
            }
            nets.append(Network(plan: n, tapFD: tapFDs[i], macToPeer: macToPeer, arp: arp, ndp: ndp))
            rxVNIs.append(n.vni)
            rxTapFDs.append(tapFDs[i])
            rxEncrypted.append(n.encrypted)
            rxMaxFrame.append(Encapsulation.ethernetHeaderBytes + n.mtu)
        }
        networks = nets
        for (i, p) in plan.peers.enumerated() {
            peerByUnderlay[p.underlay] = i
            peerVXLAN.append(UDPDestination(SocketAddress(ip: p.underlay, port: plan.vxlanPort)))
            peerESP.append(UDPDestination(SocketAddress(ip: p.underlay, port: plan.espPort)))
        }
        peerCounters = Array(repeating: PeerCounters(), count: plan.peers.count)
        let shared = plan.queues > 1
        vxlan = try BatchUDP(
            bind: SocketAddress(ip: plan.underlayAddress, port: plan.vxlanPort), capacity: Self.batchPackets,
            reusePort: shared)
        if plan.networks.contains(where: { $0.encrypted }) {
            esp = try BatchUDP(
                bind: SocketAddress(ip: plan.underlayAddress, port: plan.espPort), capacity: Self.batchPackets,
                reusePort: shared)
        } else {
            esp = nil
        }
        try vxlan.enableGRO()
        try esp?.enableGRO()
        if shared {
            try vxlan.steerByCPU(queues: plan.queues)
            try esp?.steerByCPU(queues: plan.queues)
        }
        coalescers = plan.networks.map { _ in TCPCoalescer() }
        readBuffer = .allocate(byteCount: Self.slotBytes, alignment: 64)
        sendArena = .allocate(byteCount: Self.slotBytes * Self.batchPackets, alignment: 64)
        receiveArena = .allocate(byteCount: Self.slotBytes * Self.batchPackets, alignment: 64)
        scratch = .allocate(byteCount: 2048, alignment: 64)
    }

    deinit {
        readBuffer.deallocate()
        sendArena.deallocate()
        receiveArena.deallocate()
        scratch.deallocate()
    }

    // MARK: TAP → underlay

    /// Reads up to one batch of frames (or TSO/USO superframes) from network `n`'s TAP and sends
    /// what must go out. Returns the number of reads (0: the TAP is drained).
    @discardableResult
    package func pumpTap(_ n: Int) -> Int {
        let net = networks[n]
        let maxFrame = Encapsulation.ethernetHeaderBytes + net.plan.mtu
        var plain = 0
        var sealed = 0
        var reads = 0
        let vh = VirtioNetHeader.bytes
        while reads < Self.batchPackets, plain + sealed < Self.batchPackets {
            let len = Glibc.read(net.tapFD, readBuffer.baseAddress, readBuffer.count)
            guard len > 0 else { break }
            reads += 1
            counters.tapFramesIn += 1
            guard len >= vh + Encapsulation.ethernetHeaderBytes else {
                counters.dropMalformed += 1
                continue
            }
            let header = VirtioNetHeader(readBuffer.baseAddress!)
            let frame = UnsafeMutableRawBufferPointer(rebasing: readBuffer[vh..<len])
            let dst = frame.mac(0)
            if dst & 0x0100_0000_0000 != 0 {
                answerBroadcast(frame, net)
                continue
            }
            guard let peer = net.macToPeer[dst], peer >= 0 else {
                counters.dropNoRoute += 1
                continue
            }
            let gso = header.gsoType & ~VirtioNetHeader.gsoECN
            var layout: SegmentationLayout? = nil
            if gso == VirtioNetHeader.gsoNone {
                if header.flags & VirtioNetHeader.flagNeedsChecksum != 0,
                    !completeChecksum(frame, start: header.checksumStart, offset: header.checksumOffset)
                {
                    counters.dropMalformed += 1
                    continue
                }
                if frame.count > maxFrame {
                    tooBig(frame, net)
                    continue
                }
            } else {
                layout = SegmentationLayout(UnsafeRawBufferPointer(frame), gsoType: gso, mss: header.gsoSize)
                guard let l = layout else {
                    counters.dropMalformed += 1
                    continue
                }
                if l.udp { counters.tapUSOFramesIn += 1 } else { counters.tapTSOFramesIn += 1 }
                if l.headerLength + l.mss > maxFrame {
                    tooBig(frame, net)
                    continue
                }
            }
            // A superframe may need several GSO messages (64 datagrams or 64 KiB each).
            let units = layout?.segments ?? 1
            var next = 0
            while next < units {
                if plain + sealed == Self.batchPackets {
                    flush(plain: plain, sealed: sealed)
                    plain = 0
                    sealed = 0
                }
                let base = sendArena + (plain + sealed) * Self.slotBytes
                let run: (bytes: Int, stride: Int, next: Int)
                let sock: BatchUDP
                let index: Int
                if net.plan.encrypted {
                    guard let esp, let r = sealRun(frame, layout, net.plan.vni, peer: peer, from: next, into: base)
                    else {
                        counters.dropNoTxSA += 1
                        break
                    }
                    run = r
                    sock = esp
                    index = sealed
                    sealed += 1
                    esp.setDestination(index, peerESP[peer])
                } else {
                    run = plainRun(frame, layout, net.plan.vni, from: next, into: base)
                    sock = vxlan
                    index = plain
                    plain += 1
                    vxlan.setDestination(index, peerVXLAN[peer])
                }
                sock.setSlot(index, base: base, count: run.bytes)
                if run.bytes > run.stride { sock.setSegmentSize(index, run.stride) }
                peerCounters[peer].txPackets += UInt64(run.next - next)
                peerCounters[peer].txBytes += UInt64(run.bytes)
                next = run.next
            }
        }
        flush(plain: plain, sealed: sealed)
        return reads
    }

    /// Lays out the frame, or the superframe's segments from `first` on, as back-to-back VXLAN
    /// datagrams at `base` (at most one GSO message's worth); returns the bytes, the stride (the
    /// size of every datagram but the last) and the next segment to lay out.
    @inline(__always)
    private func plainRun(
        _ frame: UnsafeMutableRawBufferPointer, _ layout: SegmentationLayout?, _ vni: UInt32, from first: Int,
        into base: UnsafeMutableRawPointer
    ) -> (bytes: Int, stride: Int, next: Int) {
        let vx = VXLAN.headerBytes
        guard let layout else {
            VXLAN.write(vni: vni, into: UnsafeMutableRawBufferPointer(start: base, count: vx), at: 0)
            (base + vx).copyMemory(from: frame.baseAddress!, byteCount: frame.count)
            return (vx + frame.count, vx + frame.count, 1)
        }
        let stride = vx + layout.headerLength + layout.mss
        let end = min(layout.segments, first + min(Self.gsoMaxSegments, Self.gsoMaxBytes / stride))
        var at = 0
        for i in first..<end {
            VXLAN.write(vni: vni, into: UnsafeMutableRawBufferPointer(start: base + at, count: vx), at: 0)
            at += vx + layout.writeSegment(UnsafeRawBufferPointer(frame), i, to: base + at + vx)
        }
        return (at, stride, end)
    }

    /// Like `plainRun`, each datagram sealed in place as ESP; nil when there is no transmit SA.
    @inline(__always)
    private func sealRun(
        _ frame: UnsafeMutableRawBufferPointer, _ layout: SegmentationLayout?, _ vni: UInt32, peer: Int,
        from first: Int,
        into base: UnsafeMutableRawPointer
    ) -> (bytes: Int, stride: Int, next: Int)? {
        guard let sealer else { return nil }
        let head = ESPEngine.headroom
        let vx = VXLAN.headerBytes
        let units = layout?.segments ?? 1
        var at = 0
        var stride = 0
        var i = first
        while i < units {
            let unit = base + at
            VXLAN.write(vni: vni, into: UnsafeMutableRawBufferPointer(start: unit + head, count: vx), at: 0)
            let frameLength: Int
            if let layout {
                frameLength = layout.writeSegment(UnsafeRawBufferPointer(frame), i, to: unit + head + vx)
            } else {
                (unit + head + vx).copyMemory(from: frame.baseAddress!, byteCount: frame.count)
                frameLength = frame.count
            }
            let room = UnsafeMutableRawBufferPointer(start: unit, count: Self.slotBytes - at)
            guard let r = sealer.sealVXLAN(room, payload: head..<(head + vx + frameLength), peer: peer) else {
                return nil
            }
            precondition(r.lowerBound == 0, "ESP packet must start at the unit")
            if i == first { stride = r.count }
            at += r.count
            i += 1
            if i - first == Self.gsoMaxSegments || at + stride > Self.gsoMaxBytes { break }
        }
        return (at, stride, i)
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

    /// Answers an ARP request or a neighbor solicitation for a remote endpoint from the FDB;
    /// drops (and counts) any other broadcast or multicast frame.
    private func answerBroadcast(_ frame: UnsafeMutableRawBufferPointer, _ net: Network) {
        if let target = Frames.arpRequestTarget(frame), let mac = net.arp[target] {
            let len = Frames.arpReply(frame, mac: mac)
            // The frame sits right after the virtio_net_hdr it was read with: reuse that room.
            if writeToTap(net.tapFD, frame.baseAddress! - VirtioNetHeader.bytes, frameBytes: len) {
                counters.arpReplies += 1
            }
        } else if let target = Frames.neighborSolicitationTarget(frame), let mac = net.ndp[target],
            let len = Frames.neighborAdvertisement(frame, mac: mac, into: scratchFrame)
        {
            if writeToTap(net.tapFD, scratch.baseAddress!, frameBytes: len) { counters.ndpAdvertisements += 1 }
        } else {
            counters.dropFloodSuppressed += 1
        }
    }

    /// Counts the oversize frame and, when the sender can learn from it, writes back ICMP
    /// "fragmentation needed" (IPv4 with DF) or ICMPv6 "packet too big".
    private func tooBig(_ frame: UnsafeMutableRawBufferPointer, _ net: Network) {
        counters.dropMTU += 1
        if Frames.isIPv4DontFragment(frame) {
            if let len = Frames.fragmentationNeeded(frame, mtu: net.plan.mtu, into: scratchFrame),
                writeToTap(net.tapFD, scratch.baseAddress!, frameBytes: len)
            {
                counters.icmpFragmentationNeededSent += 1
            }
        } else if let len = Frames.packetTooBig(frame, mtu: net.plan.mtu, into: scratchFrame),
            writeToTap(net.tapFD, scratch.baseAddress!, frameBytes: len)
        {
            counters.icmpv6PacketTooBigSent += 1
        }
    }

    /// The scratch buffer after room for a virtio_net_hdr: where locally built frames go.
    private var scratchFrame: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: scratch[VirtioNetHeader.bytes...])
    }

    /// Writes a plain virtio_net_hdr at `start` and the frame of `frameBytes` after it to the
    /// TAP; counts a failure.
    private func writeToTap(_ fd: CInt, _ start: UnsafeMutableRawPointer, frameBytes: Int) -> Bool {
        VirtioNetHeader.writePlain(start, flags: 0)
        let total = VirtioNetHeader.bytes + frameBytes
        guard Glibc.write(fd, start, total) == total else {
            counters.dropTapWriteFailed += 1
            return false
        }
        return true
    }

    // MARK: underlay → TAP

    /// Receives up to one batch from the VXLAN socket (`encrypted == false`) or the ESP socket
    /// (each message a GRO run of datagrams), and writes the frames to their TAPs. Returns the
    /// number of messages (0: drained).
    @discardableResult
    package func pumpUDP(encrypted: Bool) -> Int {
        guard let sock = encrypted ? esp : vxlan else { return 0 }
        let room = Self.slotBytes - Self.receiveOffset
        for i in 0..<Self.batchPackets {
            sock.setSlot(i, base: receiveArena + i * Self.slotBytes + Self.receiveOffset, count: room)
        }
        guard case .success(let n) = sock.receive(Self.batchPackets) else { return 0 }
        for i in 0..<n {
            let buffer = UnsafeMutableRawBufferPointer(start: receiveArena + i * Self.slotBytes, count: Self.slotBytes)
            let end = Self.receiveOffset + sock.length(i)
            if sock.truncated(i) {
                counters.udpDatagramsIn += 1
                counters.dropMalformed += 1
                continue
            }
            let segment = sock.segmentSize(i) ?? (end - Self.receiveOffset)
            let source = peerByUnderlay[sock.sourceAddress(i)] ?? -1
            var at = Self.receiveOffset
            while at < end {
                let d = at..<min(at + segment, end)
                at = d.upperBound
                counters.udpDatagramsIn += 1
                if encrypted {
                    guard let sealer, let opened = sealer.openVXLAN(buffer, datagram: d) else {
                        counters.dropESP += 1
                        continue
                    }
                    deliver(buffer, opened.vxlan, peer: opened.peer, encrypted: true)
                } else {
                    deliver(buffer, d, peer: source, encrypted: false)
                }
            }
        }
        for k in 0..<coalescers.count where !coalescers[k].isEmpty {
            if !coalescers[k].flush(to: rxTapFDs[k]) { counters.dropTapWriteFailed += 1 }
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
        var n = 0
        while n < rxVNIs.count && rxVNIs[n] != vni { n += 1 }
        guard n < rxVNIs.count else {
            counters.dropUnknownVNI += 1
            return
        }
        guard rxEncrypted[n] == encrypted else {
            counters.dropWrongEncapsulation += 1
            return
        }
        let frameLen = vx.count - Encapsulation.vxlanHeaderBytes
        guard frameLen <= rxMaxFrame[n] else {
            counters.dropMTU += 1
            return
        }
        let tapFD = rxTapFDs[n]
        if peer >= 0 {
            peerCounters[peer].rxPackets += 1
            peerCounters[peer].rxBytes += UInt64(vx.count)
        }
        let frame = UnsafeRawBufferPointer(
            start: b.baseAddress! + vx.lowerBound + Encapsulation.vxlanHeaderBytes, count: frameLen)
        let c = coalescers[n]
        if c.offer(frame, trusted: encrypted) {
            counters.tapFramesOut += 1
            return
        }
        if !c.isEmpty {
            if !c.flush(to: tapFD) { counters.dropTapWriteFailed += 1 }
            if c.offer(frame, trusted: encrypted) {
                counters.tapFramesOut += 1
                return
            }
        }
        // The virtio_net_hdr goes over the VXLAN header and the bytes before it (the previous
        // datagram of a GRO run, already written; or the slot's receive offset). An ESP frame's
        // ICV was verified, so the kernel need not check the inner checksums again.
        let start = b.baseAddress! + vx.lowerBound + Encapsulation.vxlanHeaderBytes - VirtioNetHeader.bytes
        VirtioNetHeader.writePlain(start, flags: encrypted ? VirtioNetHeader.flagDataValid : 0)
        let total = VirtioNetHeader.bytes + frameLen
        if Glibc.write(tapFD, start, total) == total {
            counters.tapFramesOut += 1
        } else {
            counters.dropTapWriteFailed += 1
        }
    }
}
