// ESPEngine: seals and opens the overlay's ESP packets in place (RFC 4303 transport mode,
// AES-GCM per RFC 4106, carried in UDP 4500 per RFC 3948).
//
// Send (`seal`), on a buffer whose VXLAN packet sits at `payload` with headroom in front:
//
//   [ESP hdr 8][IV 8][inner UDP 8][VXLAN 8 | Ethernet frame ...][pad 0-3][padlen][nh=17][ICV 16]
//    ^ returned range starts here  ^ encrypted from here ....................... to here ^
//
// Receive (`open`): SPI → receive SA; ESN inferred from the low 32 bits; replay checked before
// decrypting, window moved only after the ICV verified; trailer and inner UDP checked; the
// VXLAN packet's range is returned. Every drop is counted under its cause.
//
// Ordering and threads: an engine is used by one thread (its cipher contexts are not shared).
// Engines of several threads (one per VTEP queue) that are given the same `SAStates` share
// each SA's state: the transmit sequence counter is an atomic (a number is never used twice
// on one SA, whichever thread seals), the replay window sits behind a small lock per SA,
// checked before decrypting and updated after the ICV verified, where a concurrent duplicate
// loses (`accept` refuses it). Threads' sequence numbers interleave on the wire: reordering
// stays far inside the 4,032-packet window unless a thread stalls between taking a number
// and sending it for that many packets of the others. `update(keyRing:)` keeps the SAs of
// epochs that stay (their counters and windows), so a rotation loses nothing.
// No allocation per packet: SAs, cipher contexts and the SPI table are built at update time.

import ShoalConfig
import ShoalCrypto
import ShoalWire
import Synchronization

/// Why a received ESP packet was dropped.
package enum ESPDropReason: String, CaseIterable, Sendable {
    /// Too short, bad padding, wrong next header or inner UDP header.
    case malformed
    /// No receive SA with this SPI (unknown peer, or an epoch not installed or retired).
    case unknownSPI = "unknown-spi"
    /// Sequence number seen before, or behind the window.
    case replay
    /// ICV did not verify: forged, corrupted, or the wrong key.
    case authenticationFailed = "auth-failed"
}

/// Counters of one engine; every drop path increments exactly one.
package struct ESPCounters: Sendable, Equatable, Codable {
    package var sealedPackets: UInt64 = 0
    package var sealedBytes: UInt64 = 0
    package var openedPackets: UInt64 = 0
    package var openedBytes: UInt64 = 0
    /// Send side: no transmit SA for the peer (no tx epoch, or unknown peer).
    package var noTxSA: UInt64 = 0
    /// Send side: payload did not fit the headroom/tailroom (a bug in the caller's buffers).
    package var noRoom: UInt64 = 0
    package var malformed: UInt64 = 0
    package var unknownSPI: UInt64 = 0
    package var replay: UInt64 = 0
    package var authenticationFailed: UInt64 = 0

    package init() {}

    mutating func add(_ o: ESPCounters) {
        for k: WritableKeyPath<ESPCounters, UInt64> in [
            \.sealedPackets, \.sealedBytes, \.openedPackets, \.openedBytes, \.noTxSA, \.noRoom, \.malformed,
            \.unknownSPI, \.replay, \.authenticationFailed,
        ] {
            self[keyPath: k] += o[keyPath: k]
        }
    }

    mutating func count(_ reason: ESPDropReason) {
        switch reason {
        case .malformed: malformed += 1
        case .unknownSPI: unknownSPI += 1
        case .replay: replay += 1
        case .authenticationFailed: authenticationFailed += 1
        }
    }
}

/// The result of opening one datagram.
package enum ESPOpenResult: Equatable, Sendable {
    /// The VXLAN packet's range inside the buffer, and the sending peer's index.
    case vxlan(Range<Int>, peer: Int)
    case drop(ESPDropReason)
}

/// What `inspect` shows of an SA.
package struct SAInfo: Sendable, Codable, Equatable {
    package enum Direction: String, Codable, Sendable { case outbound, inbound }
    package var spi: UInt32
    package var epoch: UInt32
    package var direction: Direction
    package var peer: String
    /// The sending VTEP queue.
    package var queue: Int
    /// Outbound: the last sequence number sent; inbound: the highest authenticated.
    package var sequence: UInt64
    /// Hex key‖salt, as Wireshark's esp_sa table wants it.
    package var keyAndSalt: String
}

/// Errors setting up an engine.
package struct ESPSetupError: Error, CustomStringConvertible {
    package var description: String
}

/// The state of one SA that every engine sharing an `SAStates` sees: the last sequence number
/// sent (outbound) or the replay window (inbound).
package final class SAState: Sendable {
    let sequence = Atomic<UInt64>(0)
    let window = Mutex(ReplayWindow())
}

/// SA states by epoch, direction and SPI, shared by the engines of one node's VTEP threads
/// (each engine holds only its own queue's outbound SAs, all of them hold every inbound one).
/// Entries of epochs that left the key ring are pruned by the engine that installs the ring;
/// an engine that has not caught up yet still holds its references.
package final class SAStates: Sendable {
    private struct Key: Hashable {
        var epoch: UInt32
        var spi: UInt32
        var outbound: Bool
    }
    private let states = Mutex<[Key: SAState]>([:])

    package init() {}

    func state(epoch: UInt32, spi: UInt32, outbound: Bool) -> SAState {
        let key = Key(epoch: epoch, spi: spi, outbound: outbound)
        return states.withLock { table in
            if let s = table[key] { return s }
            let s = SAState()
            table[key] = s
            return s
        }
    }

    func keepOnly(epochs: Set<UInt32>) {
        states.withLock { table in table = table.filter { epochs.contains($0.key.epoch) } }
    }
}

package final class ESPEngine {
    /// Bytes needed before the VXLAN header: ESP header, IV, inner UDP header.
    package static let headroom = ESP.headerBytes + ESP.ivBytes + udpHeaderBytes
    /// Bytes needed after the frame: worst-case padding, trailer, ICV.
    package static let tailroom = (ESP.alignment - 1) + ESP.trailerBytes + ESP.icvBytes
    /// Bytes ESP adds to a VXLAN packet at most (for MTU computation, with the outer UDP and
    /// IP headers added by the caller).
    package static let overhead = headroom + tailroom
    static let udpHeaderBytes = 8

    final class OutboundSA {
        let keys: SAKeys
        let epoch: UInt32
        let gcm: AESGCM
        let saltWord: UInt32
        let state: SAState
        var sequence: UInt64 { state.sequence.load(ordering: .relaxed) }
        init(keys: SAKeys, epoch: UInt32, state: SAState) {
            self.keys = keys
            self.saltWord = keys.saltWord
            self.epoch = epoch
            self.gcm = AESGCM(key: keys.key)
            self.state = state
        }
    }

    final class InboundSA {
        let keys: SAKeys
        let epoch: UInt32
        let peer: Int
        /// The sender's VTEP queue.
        let queue: Int
        let gcm: AESGCM
        let saltWord: UInt32
        let state: SAState
        init(keys: SAKeys, epoch: UInt32, peer: Int, queue: Int, state: SAState) {
            self.keys = keys
            self.saltWord = keys.saltWord
            self.epoch = epoch
            self.peer = peer
            self.queue = queue
            self.gcm = AESGCM(key: keys.key)
            self.state = state
        }
    }

    package let localNode: String
    package private(set) var keyRing: KeyRing
    package private(set) var peers: [String]
    package private(set) var counters = ESPCounters()

    /// Sender queues whose SAs a receiver accepts from each peer: a peer may run up to this
    /// many VTEP threads (`OverlayPlan.maxQueues`).
    package static let senderQueues = 16

    /// Per peer index: the SA to send with (the tx epoch's, of queue `queues.lowerBound`), nil
    /// when there is none.
    private var outbound: [OutboundSA?] = []
    /// SPI → receive SA, for every live epoch, peer and sender queue.
    private var inbound: [UInt32: InboundSA] = [:]
    private struct OutboundKey: Hashable {
        var peer: String
        var queue: Int
    }
    /// All outbound SAs of live epochs, keyed by (epoch, peer, queue), so a promotion reuses them.
    private var outboundByEpoch: [UInt32: [OutboundKey: OutboundSA]] = [:]
    /// Sequence counters and replay windows, shared with the other engines given the same.
    private let states: SAStates
    /// The VTEP queues whose outbound SAs this engine holds: one for a queue thread's engine
    /// (it seals with it), all of the node's for the control thread's (it reports and exports).
    package let queues: Range<Int>

    package init(
        localNode: String, keyRing: KeyRing, peers: [String], sharing states: SAStates = SAStates(),
        queues: Range<Int> = 0..<1
    ) throws {
        precondition(!queues.isEmpty && queues.upperBound <= Self.senderQueues, "queues \(queues)")
        self.localNode = localNode
        self.states = states
        self.queues = queues
        self.keyRing = KeyRing(cipher: keyRing.cipher, epochs: [])
        self.peers = []
        try install(keyRing: keyRing, peers: peers)
    }

    /// Installs a new key ring (rotation); SAs of epochs present before keep their state.
    package func update(keyRing: KeyRing) throws {
        try install(keyRing: keyRing, peers: peers)
    }

    /// Changes the peer set; SAs of remaining peers keep their state.
    package func update(peers: [String]) throws {
        try install(keyRing: keyRing, peers: peers)
    }

    /// The index `seal` takes for `node`.
    package func peerIndex(_ node: String) -> Int? { peers.firstIndex(of: node) }

    private func install(keyRing ring: KeyRing, peers newPeers: [String]) throws {
        do { try ring.validate() } catch { throw ESPSetupError(description: "key ring: \(error)") }
        guard !(keyRing.cipher != ring.cipher && !keyRing.epochs.isEmpty) else {
            throw ESPSetupError(description: "key ring: the cipher cannot change while epochs are live")
        }
        var newInbound: [UInt32: InboundSA] = [:]
        var newOutboundByEpoch: [UInt32: [OutboundKey: OutboundSA]] = [:]
        let oldInbound = inbound
        for epoch in ring.epochs {
            guard let key = decodeHex(epoch.key) else { continue }  // validate() checked
            var outs: [OutboundKey: OutboundSA] = [:]
            for (index, peer) in newPeers.enumerated() where peer != localNode {
                for q in queues {
                    let k = OutboundKey(peer: peer, queue: q)
                    let o =
                        outboundByEpoch[epoch.id]?[k]
                        ?? newOutbound(
                            SAKeys.derive(
                                epochKey: key, epoch: epoch.id, sender: localNode, receiver: peer, cipher: ring.cipher,
                                queue: q),
                            epoch: epoch.id)
                    outs[k] = o
                }
                for q in 0..<Self.senderQueues {
                    let inKeys = SAKeys.derive(
                        epochKey: key, epoch: epoch.id, sender: peer, receiver: localNode, cipher: ring.cipher, queue: q
                    )
                    let existing = oldInbound[inKeys.spi]
                    let i: InboundSA
                    if let existing, existing.keys == inKeys, existing.epoch == epoch.id {
                        i = existing.peer == index ? existing : Self.rebind(existing, peer: index)
                    } else {
                        i = InboundSA(
                            keys: inKeys, epoch: epoch.id, peer: index, queue: q,
                            state: states.state(epoch: epoch.id, spi: inKeys.spi, outbound: false))
                    }
                    guard newInbound[inKeys.spi] == nil else {
                        throw ESPSetupError(
                            description: "SPI collision (0x\(String(inKeys.spi, radix: 16))) in epoch \(epoch.id): "
                                + "rotate to a new epoch key")
                    }
                    newInbound[inKeys.spi] = i
                }
            }
            newOutboundByEpoch[epoch.id] = outs
        }
        let tx = ring.txEpoch?.id
        outbound = newPeers.map { peer in
            tx.flatMap { newOutboundByEpoch[$0]?[OutboundKey(peer: peer, queue: queues.lowerBound)] }
        }
        inbound = newInbound
        outboundByEpoch = newOutboundByEpoch
        keyRing = ring
        peers = newPeers
        states.keepOnly(epochs: Set(ring.epochs.map(\.id)))
    }

    private func newOutbound(_ keys: SAKeys, epoch: UInt32) -> OutboundSA {
        OutboundSA(keys: keys, epoch: epoch, state: states.state(epoch: epoch, spi: keys.spi, outbound: true))
    }

    private static func rebind(_ sa: InboundSA, peer: Int) -> InboundSA {
        InboundSA(keys: sa.keys, epoch: sa.epoch, peer: peer, queue: sa.queue, state: sa.state)
    }

    /// Seals the VXLAN packet at `payload` in place for `peer`; returns the ESP packet's range
    /// (to send to the peer's UDP 4500), or nil, counted, when there is no transmit SA.
    package func seal(_ buffer: UnsafeMutableRawBufferPointer, payload: Range<Int>, peer: Int) -> Range<Int>? {
        guard peer >= 0, peer < outbound.count, let sa = outbound[peer] else {
            counters.noTxSA += 1
            return nil
        }
        let plainStart = payload.lowerBound - Self.udpHeaderBytes
        let espStart = plainStart - ESP.ivBytes - ESP.headerBytes
        let plainLength = payload.count + Self.udpHeaderBytes
        let padLength = (ESP.alignment - (plainLength + ESP.trailerBytes) % ESP.alignment) % ESP.alignment
        let cipherEnd = payload.upperBound + padLength + ESP.trailerBytes
        guard espStart >= 0, cipherEnd + ESP.icvBytes <= buffer.count, sa.sequence < UInt64.max else {
            counters.noRoom += 1
            return nil
        }
        // Unique per SA across threads (RFC 4106 §3.1: an IV is never reused under one key).
        let seq = sa.state.sequence.wrappingAdd(1, ordering: .relaxed).newValue
        // Inner UDP header (checksum 0: the ICV covers it; allowed for UDP over IPv4, and over an
        // IPv6 underlay this header is inside ESP, never seen by an IPv6 stack: RFC 6935 allows
        // zero for tunnels anyway).
        buffer.setBE16(plainStart, VXLAN.udpPort)
        buffer.setBE16(plainStart + 2, VXLAN.udpPort)
        buffer.setBE16(plainStart + 4, UInt16(truncatingIfNeeded: plainLength))
        buffer.setBE16(plainStart + 6, 0)
        // Padding 1, 2, 3 ... (RFC 4303 §2.4), Pad Length, Next Header.
        for i in 0..<padLength { buffer[payload.upperBound + i] = UInt8(i + 1) }
        buffer[payload.upperBound + padLength] = UInt8(padLength)
        buffer[payload.upperBound + padLength + 1] = ESP.nextHeaderUDP
        // ESP header and IV (the 64-bit sequence number: unique per SA, RFC 4106 §3.1).
        buffer.setBE32(espStart, sa.keys.spi)
        buffer.setBE32(espStart + 4, UInt32(truncatingIfNeeded: seq))
        buffer.setBE64(espStart + 8, seq)
        seal(sa, seq: seq, buffer: buffer, ivAt: espStart + 8, text: plainStart..<cipherEnd)
        counters.sealedPackets += 1
        counters.sealedBytes += UInt64(payload.count)
        return espStart..<(cipherEnd + ESP.icvBytes)
    }

    @inline(__always)
    private func seal(_ sa: OutboundSA, seq: UInt64, buffer: UnsafeMutableRawBufferPointer, ivAt: Int, text: Range<Int>)
    {
        var nonce = Nonce(salt: sa.saltWord, iv: seq)
        var aad = AAD(spi: sa.keys.spi, seq: seq)
        withUnsafeBytes(of: &nonce) { n in
            withUnsafeBytes(of: &aad) { a in
                sa.gcm.seal(
                    nonce: n.baseAddress!, aad: a, text: UnsafeMutableRawBufferPointer(rebasing: buffer[text]),
                    tag: buffer.baseAddress! + text.upperBound)
            }
        }
    }

    /// Opens the ESP packet at `datagram` in place; returns the VXLAN packet's range and the
    /// sender, or the reason it was dropped (counted).
    package func open(_ buffer: UnsafeMutableRawBufferPointer, datagram: Range<Int>) -> ESPOpenResult {
        let result = openUncounted(buffer, datagram: datagram)
        switch result {
        case .vxlan(let r, _):
            counters.openedPackets += 1
            counters.openedBytes += UInt64(r.count)
        case .drop(let reason):
            counters.count(reason)
        }
        return result
    }

    private func openUncounted(_ buffer: UnsafeMutableRawBufferPointer, datagram: Range<Int>) -> ESPOpenResult {
        let packet = UnsafeRawBufferPointer(rebasing: buffer[datagram])
        guard let spi = ESP.spi(packet) else { return .drop(.malformed) }
        let textLength = packet.count - ESP.headerBytes - ESP.ivBytes - ESP.icvBytes
        guard textLength % ESP.alignment == 0 else { return .drop(.malformed) }
        guard let sa = inbound[spi] else { return .drop(.unknownSPI) }
        let low = packet.be32(4)
        let inferred = sa.state.window.withLock { w -> UInt64? in
            guard let s = w.inferSequence(low: low), w.check(s) else { return nil }
            return s
        }
        guard let seq = inferred else { return .drop(.replay) }
        let ivAt = datagram.lowerBound + ESP.headerBytes
        let textStart = ivAt + ESP.ivBytes
        let textEnd = textStart + textLength
        var nonce = Nonce(salt: sa.saltWord, iv: packet.be64(ESP.headerBytes))
        var aad = AAD(spi: spi, seq: seq)
        let ok = withUnsafeBytes(of: &nonce) { n in
            withUnsafeBytes(of: &aad) { a in
                sa.gcm.open(
                    nonce: n.baseAddress!, aad: a,
                    text: UnsafeMutableRawBufferPointer(rebasing: buffer[textStart..<textEnd]),
                    tag: buffer.baseAddress! + textEnd)
            }
        }
        guard ok else { return .drop(.authenticationFailed) }
        // Another thread may have accepted the same number meanwhile: then this one is the replay.
        guard sa.state.window.withLock({ $0.accept(seq) }) else { return .drop(.replay) }
        // Authenticated from here on: a malformed trailer is the sender's bug, still dropped.
        let nextHeader = buffer[textEnd - 1]
        let padLength = Int(buffer[textEnd - 2])
        let plainEnd = textEnd - ESP.trailerBytes - padLength
        guard nextHeader == ESP.nextHeaderUDP, plainEnd >= textStart + Self.udpHeaderBytes + VXLAN.headerBytes
        else { return .drop(.malformed) }
        for i in 0..<padLength where buffer[plainEnd + i] != UInt8(i + 1) { return .drop(.malformed) }
        let udp = UnsafeRawBufferPointer(rebasing: buffer[textStart..<(textStart + Self.udpHeaderBytes)])
        guard udp.be16(2) == VXLAN.udpPort, Int(udp.be16(4)) == plainEnd - textStart else {
            return .drop(.malformed)
        }
        return .vxlan((textStart + Self.udpHeaderBytes)..<plainEnd, peer: sa.peer)
    }

    /// Live SAs, for `inspect`.
    package func liveSAs() -> [SAInfo] {
        var out: [SAInfo] = []
        let txEpoch = keyRing.txEpoch?.id
        for (epoch, byPeer) in outboundByEpoch.sorted(by: { $0.key < $1.key }) {
            let sorted = byPeer.sorted { ($0.key.peer, $0.key.queue) < ($1.key.peer, $1.key.queue) }
            for (k, sa) in sorted where epoch == txEpoch || sa.sequence > 0 {
                out.append(
                    SAInfo(
                        spi: sa.keys.spi, epoch: epoch, direction: .outbound, peer: k.peer, queue: k.queue,
                        sequence: sa.sequence, keyAndSalt: encodeHex(sa.keys.key + sa.keys.salt)))
            }
        }
        // Inbound: queue 0's SAs always; other sender queues' once they carried traffic.
        let used = inbound.values.filter { $0.queue == 0 || $0.state.window.withLock { $0.top } > 0 }
        for sa in used.sorted(by: { ($0.epoch, $0.peer, $0.queue) < ($1.epoch, $1.peer, $1.queue) }) {
            out.append(
                SAInfo(
                    spi: sa.keys.spi, epoch: sa.epoch, direction: .inbound, peer: peers[sa.peer], queue: sa.queue,
                    sequence: sa.state.window.withLock { $0.top }, keyAndSalt: encodeHex(sa.keys.key + sa.keys.salt)))
        }
        return out
    }

    /// Every SA of every live epoch in both directions as lines of Wireshark's `esp_sa` UAT
    /// (`~/.config/wireshark/esp_sa`, or `tshark -o "uat:esp_sa:<line>"`), so stock tshark
    /// decrypts a capture of the underlay. `addresses` maps node ids to underlay addresses (IPv4 or
    /// IPv6; the line's protocol column follows the local one). Both directions for this
    /// engine's `queues` (peers are assumed to run as many).
    package func exportWiresharkESPSA(addresses: [String: String]) -> String {
        guard let local = addresses[localNode] else { return "" }
        let family = local.contains(":") ? "IPv6" : "IPv4"
        var lines: [String] = []
        for epoch in keyRing.epochs {
            guard let key = decodeHex(epoch.key) else { continue }
            for peer in peers where peer != localNode {
                guard let remote = addresses[peer] else { continue }
                for q in queues {
                    for (s, d, src, dst) in [(localNode, peer, local, remote), (peer, localNode, remote, local)] {
                        let k = SAKeys.derive(
                            epochKey: key, epoch: epoch.id, sender: s, receiver: d, cipher: keyRing.cipher, queue: q)
                        lines.append(
                            "\"\(family)\",\"\(src)\",\"\(dst)\",\"0x\(hex32(k.spi))\",\"AES-GCM with 16 octet ICV [RFC4106]\","
                                + "\"0x\(encodeHex(k.key + k.salt))\",\"NULL\",\"\"")
                    }
                }
            }
        }
        return lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")
    }

    private func hex32(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }
}

/// The 12-byte GCM nonce: salt ‖ explicit IV (RFC 4106 §4), laid out on the stack as three
/// 32-bit words (a (UInt32, UInt64) tuple would be padded to 16 bytes).
private struct Nonce {
    var bytes: (UInt32, UInt32, UInt32)
    init(salt: UInt32, iv: UInt64) {
        bytes = (
            salt.bigEndian, UInt32(truncatingIfNeeded: iv >> 32).bigEndian, UInt32(truncatingIfNeeded: iv).bigEndian
        )
    }
}

/// The 12-byte AAD with ESN: SPI ‖ seq high ‖ seq low (RFC 4106 §5).
private struct AAD {
    var bytes: (UInt32, UInt32, UInt32)
    init(spi: UInt32, seq: UInt64) {
        bytes = (
            spi.bigEndian, UInt32(truncatingIfNeeded: seq >> 32).bigEndian, UInt32(truncatingIfNeeded: seq).bigEndian
        )
    }
}
