import Foundation
import ShoalCrypto
import ShoalWire
import Synchronization
import Testing

@testable import ShoalOverlay

private let keyA = String(repeating: "11", count: 16)
private let keyB = String(repeating: "22", count: 16)

/// A buffer laid out as the VTEP lays out its pooled buffers: headroom, VXLAN packet, tailroom.
private struct Packet {
    var bytes: [UInt8]
    var payload: Range<Int>

    init(frame: [UInt8], vni: UInt32 = 42) {
        let head = ESPEngine.headroom
        bytes = [UInt8](repeating: 0, count: head + VXLAN.headerBytes + frame.count + ESPEngine.tailroom)
        payload = head..<(head + VXLAN.headerBytes + frame.count)
        bytes.withUnsafeMutableBytes { VXLAN.write(vni: vni, into: $0, at: head) }
        bytes.replaceSubrange((head + VXLAN.headerBytes)..<payload.upperBound, with: frame)
    }
}

private func frame(_ n: Int, fill: UInt8 = 0xAB) -> [UInt8] {
    var f = [UInt8](repeating: fill, count: n)
    f[12] = 0x08  // EtherType IPv4
    f[13] = 0x00
    return f
}

private func ring(_ epochs: [(UInt32, String, KeyEpochState)], _ cipher: AESGCMKeySize = .aes128) -> KeyRing {
    KeyRing(cipher: cipher, epochs: epochs.map { KeyEpoch(id: $0.0, key: $0.1, state: $0.2) })
}

/// Seals `frame` on `from` for `to`, returns the datagram bytes on the wire.
private func sealed(_ from: ESPEngine, to peer: String, _ f: [UInt8]) -> [UInt8]? {
    var p = Packet(frame: f)
    let r = p.bytes.withUnsafeMutableBytes { from.seal($0, payload: p.payload, peer: from.peerIndex(peer)!) }
    return r.map { Array(p.bytes[$0]) }
}

private func open(_ engine: ESPEngine, _ datagram: [UInt8]) -> (ESPOpenResult, [UInt8]) {
    var d = datagram
    let r = d.withUnsafeMutableBytes { engine.open($0, datagram: 0..<datagram.count) }
    if case .vxlan(let range, _) = r { return (r, Array(d[range])) }
    return (r, [])
}

@Suite struct ESPEngineTests {
    let nodes = ["node-a", "node-b", "node-c"]

    func pair(_ r: KeyRing) throws -> (ESPEngine, ESPEngine) {
        (
            try ESPEngine(localNode: "node-a", keyRing: r, peers: nodes),
            try ESPEngine(localNode: "node-b", keyRing: r, peers: nodes)
        )
    }

    @Test(arguments: [AESGCMKeySize.aes128, .aes256], [14, 60, 61, 62, 63, 1400, 8950])
    func roundTripRecoversTheVXLANPacket(cipher: AESGCMKeySize, size: Int) throws {
        let key = String(repeating: "5a", count: cipher.rawValue)
        let (a, b) = try pair(ring([(1, key, .tx)], cipher))
        let f = frame(size)
        let wire = try #require(sealed(a, to: "node-b", f))
        // RFC 4303 §2.4: ciphertext 4-octet aligned; overhead within the advertised bound.
        #expect((wire.count - ESP.headerBytes - ESP.ivBytes - ESP.icvBytes) % 4 == 0)
        #expect(wire.count - (VXLAN.headerBytes + size) <= ESPEngine.overhead)
        // The frame does not travel in clear.
        #expect(
            !wire.indices.dropLast(f.count).contains {
                Array(wire[$0..<($0 + min(f.count, 32))]) == Array(f.prefix(32))
            })
        let (result, vxlan) = open(b, wire)
        guard case .vxlan(_, let peer) = result else {
            Issue.record("dropped: \(result)")
            return
        }
        #expect(b.peers[peer] == "node-a")
        #expect(vxlan.withUnsafeBytes { VXLAN.parse($0) } == 42)
        #expect(Array(vxlan.dropFirst(VXLAN.headerBytes)) == f)
        #expect(b.counters.openedPackets == 1)
    }

    /// RFC 4106 §5 / RFC 4303 §2: SPI and low sequence on the wire, IV = the 64-bit sequence.
    @Test func wireLayoutFollowsRFC4303AndRFC4106() throws {
        let (a, _) = try pair(ring([(7, keyA, .tx)]))
        let w1 = try #require(sealed(a, to: "node-b", frame(100)))
        let w2 = try #require(sealed(a, to: "node-b", frame(100)))
        let keys = SAKeys.derive(
            epochKey: decodeHex(keyA)!, epoch: 7, sender: "node-a", receiver: "node-b", cipher: .aes128)
        w1.withUnsafeBytes { #expect($0.be32(0) == keys.spi) }
        w1.withUnsafeBytes { #expect($0.be32(4) == 1 && $0.be64(8) == 1) }
        w2.withUnsafeBytes { #expect($0.be32(4) == 2 && $0.be64(8) == 2) }
        // Independent decryption with the derived SA: nonce = salt ‖ IV, AAD = SPI ‖ 0 ‖ seq.
        var text = Array(w1[16..<(w1.count - 16)])
        let tag = Array(w1.suffix(16))
        let nonce = keys.salt + Array(w1[8..<16])
        let aad: [UInt8] = Array(w1[0..<4]) + [0, 0, 0, 0] + Array(w1[4..<8])
        let gcm = AESGCM(key: keys.key)
        let ok = text.withUnsafeMutableBytes { t in
            nonce.withUnsafeBytes { n in
                aad.withUnsafeBytes { a in
                    tag.withUnsafeBytes { gcm.open(nonce: n.baseAddress!, aad: a, text: t, tag: $0.baseAddress!) }
                }
            }
        }
        #expect(ok)
        #expect(text.last == ESP.nextHeaderUDP)  // Next Header: UDP
        text.withUnsafeBytes { #expect($0.be16(0) == 4789 && $0.be16(2) == 4789) }  // inner UDP ports
    }

    @Test func bothEndsDeriveTheSameSAAndPairsDiffer() {
        let k = decodeHex(keyA)!
        let ab = SAKeys.derive(epochKey: k, epoch: 1, sender: "node-a", receiver: "node-b", cipher: .aes128)
        let ba = SAKeys.derive(epochKey: k, epoch: 1, sender: "node-b", receiver: "node-a", cipher: .aes128)
        let ab2 = SAKeys.derive(epochKey: k, epoch: 2, sender: "node-a", receiver: "node-b", cipher: .aes128)
        #expect(ab == SAKeys.derive(epochKey: k, epoch: 1, sender: "node-a", receiver: "node-b", cipher: .aes128))
        #expect(ab.spi != ba.spi && ab.key != ba.key)
        #expect(ab.spi != ab2.spi && ab.key != ab2.key)
        #expect(ab.spi >= ESP.minSPI)
    }

    @Test func badPacketsAreDroppedAndCountedByCause() throws {
        let (a, b) = try pair(ring([(1, keyA, .tx)]))
        let good = try #require(sealed(a, to: "node-b", frame(200)))
        // Forged: one ciphertext bit flipped.
        var forged = good
        forged[40] ^= 0x01
        #expect(open(b, forged).0 == .drop(.authenticationFailed))
        // The forgery did not move the window: the genuine packet still opens.
        if case .drop(let r) = open(b, good).0 { Issue.record("genuine packet dropped: \(r)") }
        // Replayed.
        #expect(open(b, good).0 == .drop(.replay))
        // Truncated at every length.
        for n in 0..<ESP.minPacketBytes { #expect(open(b, Array(good.prefix(n))).0 == .drop(.malformed)) }
        // Unknown SPI.
        var alien = try #require(sealed(a, to: "node-b", frame(200)))
        alien[0] ^= 0x80
        #expect(open(b, alien).0 == .drop(.unknownSPI))
        // Addressed to another node (node-c's SA): b has no such SPI.
        let toC = try #require(sealed(a, to: "node-c", frame(200)))
        #expect(open(b, toC).0 == .drop(.unknownSPI))
        #expect(b.counters.authenticationFailed == 1)
        #expect(b.counters.replay == 1)
        #expect(b.counters.unknownSPI == 2)
        #expect(b.counters.malformed == UInt64(ESP.minPacketBytes))
        #expect(b.counters.openedPackets == 1)
    }

    @Test func noTransmitEpochIsCountedNotSent() throws {
        let (a, _) = try pair(ring([(1, keyA, .rxOnly)]))
        #expect(sealed(a, to: "node-b", frame(100)) == nil)
        #expect(a.counters.noTxSA == 1)
    }

    /// DESIGN.md §3: install rx-only, promote to tx, retire the old: nothing in flight is lost.
    @Test func rotationInOrderLosesNoPacket() throws {
        let (a, b) = try pair(ring([(1, keyA, .tx)]))
        var inFlight: [[UInt8]] = []
        for _ in 0..<5 { inFlight.append(try #require(sealed(a, to: "node-b", frame(300)))) }
        // Step 1: both install epoch 2 for receive.
        let step1 = ring([(1, keyA, .tx), (2, keyB, .rxOnly)])
        try a.update(keyRing: step1)
        try b.update(keyRing: step1)
        for _ in 0..<5 { inFlight.append(try #require(sealed(a, to: "node-b", frame(300)))) }
        // Step 2: a promotes first (b has not yet): b still receives.
        let step2 = ring([(1, keyA, .retiring), (2, keyB, .tx)])
        try a.update(keyRing: step2)
        for _ in 0..<5 { inFlight.append(try #require(sealed(a, to: "node-b", frame(300)))) }
        try b.update(keyRing: step2)
        for d in inFlight { #expect(open(b, d).0 != .drop(.unknownSPI)) }
        // Step 3: retire epoch 1: its SPIs are gone; epoch 2 still flows, sequence continuing.
        let step3 = ring([(2, keyB, .tx)])
        try a.update(keyRing: step3)
        try b.update(keyRing: step3)
        #expect(open(b, inFlight[0]).0 == .drop(.unknownSPI))
        let after = try #require(sealed(a, to: "node-b", frame(300)))
        after.withUnsafeBytes { #expect($0.be32(4) == 6) }  // epoch 2's SA kept its counter
        if case .drop(let r) = open(b, after).0 { Issue.record("dropped after retire: \(r)") }
        #expect(b.counters.openedPackets == 16)
        #expect(b.counters.replay == 0 && b.counters.authenticationFailed == 0)
    }

    @Test func malformedKeyRingsAreRefusedNamingTheField() throws {
        #expect(throws: ESPSetupError.self) {
            try ESPEngine(localNode: "a", keyRing: ring([(1, "zz", .tx)]), peers: [])
        }
        #expect(throws: ESPSetupError.self) {
            try ESPEngine(localNode: "a", keyRing: ring([(1, keyA, .tx), (2, keyB, .tx)]), peers: [])
        }
        #expect(throws: ESPSetupError.self) {
            try ESPEngine(
                localNode: "a",
                keyRing: ring([(1, keyA, .tx), (2, keyB, .rxOnly), (3, keyA, .rxOnly), (4, keyB, .rxOnly)]), peers: [])
        }
        do {
            _ = try ESPEngine(localNode: "a", keyRing: ring([(1, keyA, .tx), (1, keyB, .rxOnly)]), peers: [])
            Issue.record("duplicate epoch accepted")
        } catch {
            #expect("\(error)".contains("epochs[1].id"))
        }
    }

    @Test func exportsWiresharkESPSALines() throws {
        let (a, _) = try pair(ring([(1, keyA, .tx)]))
        let text = a.exportWiresharkESPSA(addresses: ["node-a": "198.18.0.1", "node-b": "198.18.0.2"])
        let lines = text.split(separator: "\n")
        #expect(lines.count == 2)  // a→b and b→a; node-c has no address
        let keys = SAKeys.derive(
            epochKey: decodeHex(keyA)!, epoch: 1, sender: "node-a", receiver: "node-b", cipher: .aes128)
        #expect(
            lines[0]
                == "\"IPv4\",\"198.18.0.1\",\"198.18.0.2\",\"0x\(String(format8: keys.spi))\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x\(encodeHex(keys.key + keys.salt))\",\"NULL\",\"\""
        )
    }
}

extension String {
    fileprivate init(format8 v: UInt32) {
        let s = String(v, radix: 16)
        self = String(repeating: "0", count: 8 - s.count) + s
    }
}

/// Writes the ESP and VXLAN seed corpora (Fuzz/corpus/{esp,vxlan}) with the SAs fuzz-esp
/// holds. Runs only on purpose: `SHOAL_WRITE_SEEDS=1 swift test --filter writeFuzzSeeds`.
@Test(.enabled(if: ProcessInfo.processInfo.environment["SHOAL_WRITE_SEEDS"] == "1"))
func writeFuzzSeeds() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus")
    let r = ring([(1, String(repeating: "11", count: 16), .tx)])
    let a = try ESPEngine(localNode: "node-a", keyRing: r, peers: ["node-a", "node-b"])
    for size in [14, 61, 64, 200, 1400] {
        let p = Packet(frame: frame(size))
        try Data(p.bytes[p.payload]).write(to: root.appendingPathComponent("vxlan/frame-\(size)"))
        let wire = try #require(sealed(a, to: "node-b", frame(size)))
        try Data(wire).write(to: root.appendingPathComponent("esp/sealed-\(size)"))
    }
    try Data([0, 0, 0, 0, 1, 2, 3]).write(to: root.appendingPathComponent("esp/non-esp-marker"))
    try Data([0x00, 0, 0, 0, 0, 0, 42, 0] + frame(14)).write(to: root.appendingPathComponent("vxlan/no-i-flag"))
}

/// Engines of several VTEP queue threads (`SAStates` shared).
@Suite struct ESPEngineQueueTests {
    let nodes = ["node-a", "node-b"]

    /// Each sender queue seals on its own SA (its own SPI and sequence numbers, queue 0's the
    /// single-queue SA); the receiver accepts every queue's SAs.
    @Test func eachSenderQueueHasItsOwnSA() throws {
        let r = ring([(1, keyA, .tx)])
        let states = SAStates()
        let q0 = try ESPEngine(localNode: "node-a", keyRing: r, peers: nodes, sharing: states, queues: 0..<1)
        let q1 = try ESPEngine(localNode: "node-a", keyRing: r, peers: nodes, sharing: states, queues: 1..<2)
        let single = try ESPEngine(localNode: "node-a", keyRing: r, peers: nodes)
        let b = try ESPEngine(localNode: "node-b", keyRing: r, peers: nodes)
        let d0 = try #require(sealed(q0, to: "node-b", frame(100)))
        let d1 = try #require(sealed(q1, to: "node-b", frame(100)))
        let ds = try #require(sealed(single, to: "node-b", frame(100)))
        #expect(Array(d0[0..<4]) == Array(ds[0..<4]))  // queue 0 = the single-queue SA
        #expect(Array(d0[0..<4]) != Array(d1[0..<4]))
        #expect(Array(d0[4..<8]) == [0, 0, 0, 1] && Array(d1[4..<8]) == [0, 0, 0, 1])
        for d in [d0, d1] {
            guard case .vxlan = open(b, d).0 else {
                Issue.record("not opened")
                continue
            }
        }
    }

    /// RFC 4303 §3.4.3 with concurrent receivers: two threads, each with its own engine (its own
    /// cipher contexts) sharing the windows, open the same 4,000 packets at the same time;
    /// every packet is accepted exactly once and the rest counted as replays.
    @Test func concurrentReceiversShareOneWindow() throws {
        let r = ring([(1, keyA, .tx)])
        let a = try ESPEngine(localNode: "node-a", keyRing: r, peers: nodes)
        let packets = (0..<4000).map { _ in sealed(a, to: "node-b", frame(200))! }
        let states = SAStates()
        let counts = Counts()
        let nodes = nodes
        DispatchQueue.concurrentPerform(iterations: 2) { t in
            // Each thread builds its engine: engines are not shared, their SA states are.
            let engine = try! ESPEngine(localNode: "node-b", keyRing: r, peers: nodes, sharing: states)
            counts.record(t, opening: packets, with: engine)
        }
        let (opened, replayed) = counts.totals
        #expect(opened == 4000)
        #expect(replayed == 4000)
    }

    /// Sealing threads sharing an SA never use a sequence number twice.
    @Test func sharedSequenceCounterIsUnique() throws {
        let r = ring([(1, keyA, .tx)])
        let states = SAStates()
        let seen = Mutex<[UInt32]>([])
        let nodes = nodes
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            let sender = try! ESPEngine(localNode: "node-a", keyRing: r, peers: nodes, sharing: states)
            var mine: [UInt32] = []
            for _ in 0..<2000 {
                let d = sealed(sender, to: "node-b", frame(64))!
                mine.append(UInt32(d[4]) << 24 | UInt32(d[5]) << 16 | UInt32(d[6]) << 8 | UInt32(d[7]))
            }
            seen.withLock { $0 += mine }
        }
        let all = seen.withLock { $0 }
        #expect(all.count == 4000 && Set(all).count == 4000 && Set(all) == Set(1...4000))
    }
}

/// Per-thread results of `concurrentReceiversShareOneWindow`.
private final class Counts: Sendable {
    private let slots = Mutex<[(opened: Int, replayed: Int)]>([(0, 0), (0, 0)])

    func record(_ t: Int, opening packets: [[UInt8]], with engine: ESPEngine) {
        var opened = 0
        var replayed = 0
        for p in packets {
            switch open(engine, p).0 {
            case .vxlan: opened += 1
            case .drop(.replay): replayed += 1
            case .drop: break
            }
        }
        slots.withLock { $0[t] = (opened, replayed) }
    }

    var totals: (Int, Int) { slots.withLock { s in (s[0].opened + s[1].opened, s[0].replayed + s[1].replayed) } }
}
