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
// Ordering and threads: an engine is used by one thread. A VTEP may give its send and receive
// threads one engine each: both derive the same SAs from the same key ring; the sending one
// owns the sequence counters, the receiving one the replay windows. `update(keyRing:)` keeps
// the SAs of epochs that stay (their counters and windows), so a rotation loses nothing.
// No allocation per packet: SAs, cipher contexts and the SPI table are built at update time.

import ShoalConfig
import ShoalCrypto
import ShoalWire

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
    /// Outbound: the last sequence number sent; inbound: the highest authenticated.
    package var sequence: UInt64
    /// Hex key‖salt, as Wireshark's esp_sa table wants it.
    package var keyAndSalt: String
}

/// Errors setting up an engine.
package struct ESPSetupError: Error, CustomStringConvertible {
    package var description: String
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
        var sequence: UInt64 = 0
        init(keys: SAKeys, epoch: UInt32) {
            self.keys = keys
            self.saltWord = keys.saltWord
            self.epoch = epoch
            self.gcm = AESGCM(key: keys.key)
        }
    }

    final class InboundSA {
        let keys: SAKeys
        let epoch: UInt32
        let peer: Int
        let gcm: AESGCM
        let saltWord: UInt32
        var window = ReplayWindow()
        init(keys: SAKeys, epoch: UInt32, peer: Int) {
            self.keys = keys
            self.saltWord = keys.saltWord
            self.epoch = epoch
            self.peer = peer
            self.gcm = AESGCM(key: keys.key)
        }
    }

    package let localNode: String
    package private(set) var keyRing: KeyRing
    package private(set) var peers: [String]
    package private(set) var counters = ESPCounters()

    /// Per peer index: the SA to send with (the tx epoch's), nil when there is none.
    private var outbound: [OutboundSA?] = []
    /// SPI → receive SA, for every live epoch and peer.
    private var inbound: [UInt32: InboundSA] = [:]
    /// All outbound SAs of live epochs, keyed by (epoch, peer), so a promotion reuses them.
    private var outboundByEpoch: [UInt32: [String: OutboundSA]] = [:]

    package init(localNode: String, keyRing: KeyRing, peers: [String]) throws {
        self.localNode = localNode
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
        var newOutboundByEpoch: [UInt32: [String: OutboundSA]] = [:]
        let oldInbound = inbound
        for epoch in ring.epochs {
            guard let key = decodeHex(epoch.key) else { continue }  // validate() checked
            var outs: [String: OutboundSA] = [:]
            for (index, peer) in newPeers.enumerated() where peer != localNode {
                let o =
                    outboundByEpoch[epoch.id]?[peer]
                    ?? OutboundSA(
                        keys: SAKeys.derive(
                            epochKey: key, epoch: epoch.id, sender: localNode, receiver: peer, cipher: ring.cipher),
                        epoch: epoch.id)
                outs[peer] = o
                let inKeys = SAKeys.derive(
                    epochKey: key, epoch: epoch.id, sender: peer, receiver: localNode, cipher: ring.cipher)
                let existing = oldInbound[inKeys.spi]
                let i: InboundSA
                if let existing, existing.keys == inKeys, existing.epoch == epoch.id {
                    i = existing.peer == index ? existing : Self.rebind(existing, peer: index)
                } else {
                    i = InboundSA(keys: inKeys, epoch: epoch.id, peer: index)
                }
                guard newInbound[inKeys.spi] == nil else {
                    throw ESPSetupError(
                        description: "SPI collision (0x\(String(inKeys.spi, radix: 16))) in epoch \(epoch.id): "
                            + "rotate to a new epoch key")
                }
                newInbound[inKeys.spi] = i
            }
            newOutboundByEpoch[epoch.id] = outs
        }
        let tx = ring.txEpoch?.id
        outbound = newPeers.map { peer in tx.flatMap { newOutboundByEpoch[$0]?[peer] } }
        inbound = newInbound
        outboundByEpoch = newOutboundByEpoch
        keyRing = ring
        peers = newPeers
    }

    private static func rebind(_ sa: InboundSA, peer: Int) -> InboundSA {
        let n = InboundSA(keys: sa.keys, epoch: sa.epoch, peer: peer)
        n.window = sa.window
        return n
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
        sa.sequence += 1
        let seq = sa.sequence
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
        guard let seq = sa.window.inferSequence(low: packet.be32(4)), sa.window.check(seq) else {
            return .drop(.replay)
        }
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
        sa.window.accept(seq)
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
            for (peer, sa) in byPeer.sorted(by: { $0.key < $1.key }) where epoch == txEpoch || sa.sequence > 0 {
                out.append(
                    SAInfo(
                        spi: sa.keys.spi, epoch: epoch, direction: .outbound, peer: peer, sequence: sa.sequence,
                        keyAndSalt: encodeHex(sa.keys.key + sa.keys.salt)))
            }
        }
        for sa in inbound.values.sorted(by: { ($0.epoch, $0.peer) < ($1.epoch, $1.peer) }) {
            out.append(
                SAInfo(
                    spi: sa.keys.spi, epoch: sa.epoch, direction: .inbound, peer: peers[sa.peer],
                    sequence: sa.window.top, keyAndSalt: encodeHex(sa.keys.key + sa.keys.salt)))
        }
        return out
    }

    /// Every SA of every live epoch in both directions as lines of Wireshark's `esp_sa` UAT
    /// (`~/.config/wireshark/esp_sa`, or `tshark -o "uat:esp_sa:<line>"`), so stock tshark
    /// decrypts a capture of the underlay. `addresses` maps node ids to underlay addresses (IPv4 or
    /// IPv6; the line's protocol column follows the local one).
    package func exportWiresharkESPSA(addresses: [String: String]) -> String {
        guard let local = addresses[localNode] else { return "" }
        let family = local.contains(":") ? "IPv6" : "IPv4"
        var lines: [String] = []
        for epoch in keyRing.epochs {
            guard let key = decodeHex(epoch.key) else { continue }
            for peer in peers where peer != localNode {
                guard let remote = addresses[peer] else { continue }
                for (s, d, src, dst) in [(localNode, peer, local, remote), (peer, localNode, remote, local)] {
                    let k = SAKeys.derive(
                        epochKey: key, epoch: epoch.id, sender: s, receiver: d, cipher: keyRing.cipher)
                    lines.append(
                        "\"\(family)\",\"\(src)\",\"\(dst)\",\"0x\(hex32(k.spi))\",\"AES-GCM with 16 octet ICV [RFC4106]\","
                            + "\"0x\(encodeHex(k.key + k.salt))\",\"NULL\",\"\"")
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
