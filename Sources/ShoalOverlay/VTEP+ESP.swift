// The VTEP's encrypted side: the ESP engine as the VTEP's sealer, key-ring changes at run time
// (the control socket's keys-add / keys-promote / keys-retire, applied between batches so no
// packet sees a half-installed ring), the SA export for Wireshark, and the ESP part of inspect.
//
// Rotation without loss (DESIGN.md §3), done on every node in this order:
//   keys add N (rx-only everywhere) → keys promote N (N sends, old tx → retiring) → keys retire old.
// A node that sends with N before a peer installed N would make that peer count unknown-SPI drops.

import ShoalConfig

extension ESPEngine: OverlaySealer {
    @inline(__always)
    package func sealVXLAN(_ buffer: UnsafeMutableRawBufferPointer, payload: Range<Int>, peer: Int) -> Range<Int>? {
        seal(buffer, payload: payload, peer: peer)
    }

    @inline(__always)
    package func openVXLAN(_ buffer: UnsafeMutableRawBufferPointer, datagram: Range<Int>) -> (
        vxlan: Range<Int>, peer: Int
    )? {
        switch open(buffer, datagram: datagram) {
        case .vxlan(let r, let peer): return (r, peer)
        case .drop: return nil
        }
    }
}

/// Key-ring transitions as pure functions of the ring: each returns the new ring or throws a
/// `ConfigError` saying why the step is refused.
package enum KeyRotation {
    package static func add(_ ring: KeyRing, id: UInt32, key: String) throws(ConfigError) -> KeyRing {
        guard !ring.epochs.contains(where: { $0.id == id }) else {
            throw ConfigError(field: "id", "epoch \(id) is already installed")
        }
        guard ring.epochs.count < KeyRing.maxEpochs else {
            throw ConfigError(field: "id", "\(KeyRing.maxEpochs) epochs are live: retire one first")
        }
        var next = ring
        next.epochs.append(KeyEpoch(id: id, key: key, state: .rxOnly))
        try next.validate()
        return next
    }

    package static func promote(_ ring: KeyRing, id: UInt32) throws(ConfigError) -> KeyRing {
        guard let i = ring.epochs.firstIndex(where: { $0.id == id }) else {
            throw ConfigError(field: "id", "no epoch \(id)")
        }
        var next = ring
        for j in next.epochs.indices where next.epochs[j].state == .tx { next.epochs[j].state = .retiring }
        next.epochs[i].state = .tx
        return next
    }

    package static func retire(_ ring: KeyRing, id: UInt32) throws(ConfigError) -> KeyRing {
        guard let i = ring.epochs.firstIndex(where: { $0.id == id }) else {
            throw ConfigError(field: "id", "no epoch \(id)")
        }
        guard ring.epochs[i].state != .tx else {
            throw ConfigError(field: "id", "epoch \(id) is the transmit epoch: promote another first")
        }
        var next = ring
        next.epochs.remove(at: i)
        return next
    }
}

extension OverlayNode {
    /// Sets up a node from its plan, with ESP engines when a network is encrypted: one per VTEP
    /// queue and one for the control socket (key changes, SA export, inspect), all sharing the
    /// SAs' sequence counters and replay windows; key changes reach the queues' engines through
    /// a `KeyRingBoard`.
    package static func start(plan: OverlayPlan) throws -> OverlayNode {
        guard plan.encrypted, let ring = plan.keyRing else {
            return try OverlayNode(plan: plan, makeSealer: { _ in nil })
        }
        let states = SAStates()
        let board = KeyRingBoard(ring)
        let peers = plan.peers.map(\.node)
        let engine = try ESPEngine(
            localNode: plan.node, keyRing: ring, peers: peers, sharing: states, queues: 0..<plan.queues)
        let node = try OverlayNode(plan: plan) { q in
            QueueESP(
                engine: try ESPEngine(
                    localNode: plan.node, keyRing: board.current, peers: peers, sharing: states, queues: q..<(q + 1)),
                board: board)
        }
        var addresses = [plan.node: "\(plan.underlayAddress)"]
        for p in plan.peers { addresses[p.node] = "\(p.underlay)" }
        node.keyControl = { [engine] request in
            let next: KeyRing
            let done: String
            switch request.op {
            case "keys-add":
                guard let id = request.id, let key = request.key else {
                    throw ConfigError(field: "id", "keys add needs --id and --key")
                }
                next = try KeyRotation.add(engine.keyRing, id: id, key: key)
                done = "epoch \(id) installed receive-only"
            case "keys-promote":
                guard let id = request.id else { throw ConfigError(field: "id", "missing") }
                next = try KeyRotation.promote(engine.keyRing, id: id)
                done = "epoch \(id) now transmits"
            case "keys-retire":
                guard let id = request.id else { throw ConfigError(field: "id", "missing") }
                next = try KeyRotation.retire(engine.keyRing, id: id)
                done = "epoch \(id) retired"
            case "export-sa":
                return engine.exportWiresharkESPSA(addresses: addresses)
            default:
                throw ConfigError(field: "op", "unknown request \(request.op)")
            }
            try engine.update(keyRing: next)
            board.post(next)
            return done
        }
        node.espReport = { [engine, unowned node] in
            let c = node.espCounters()
            return ESPReport(
                cipher: engine.keyRing.cipher == .aes128 ? "aes-128-gcm" : "aes-256-gcm",
                epochs: engine.keyRing.epochs.map { .init(id: $0.id, state: $0.state.rawValue) },
                sas: engine.liveSAs().map {
                    .init(
                        spi: $0.spi, epoch: $0.epoch, direction: $0.direction.rawValue, peer: $0.peer,
                        queue: $0.queue, sequence: $0.sequence)
                },
                drops: [
                    "unknownSPI": c.unknownSPI, "replay": c.replay, "authenticationFailed": c.authenticationFailed,
                    "malformed": c.malformed, "noTxSA": c.noTxSA, "noRoom": c.noRoom,
                ],
                sealedPackets: c.sealedPackets, openedPackets: c.openedPackets)
        }
        return node
    }
}
