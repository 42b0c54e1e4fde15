// What `shoal overlay inspect` shows: networks, FDB, peers, SAs and every counter, as one
// Codable value (the JSON form) with a text rendering.

package struct OverlayInspection: Codable, Sendable {
    package var node: String
    package var underlay: String
    package var underlayMTU: Int
    package var vxlanPort: UInt16
    package var espPort: UInt16
    package var networks: [Network]
    package var peers: [Peer]
    package var counters: OverlayCounters
    package var esp: ESPReport?
    /// Per VTEP queue thread, when there are several.
    package var queues: [Queue]? = nil
    /// TUNSETOFFLOAD flags the TAPs have (`csum tso4 tso6`, plus `uso4 uso6` where the kernel
    /// takes UDP segmentation offload).
    package var tapOffloads: [String]? = nil

    package struct Queue: Codable, Sendable {
        package var queue: Int
        package var tapFramesIn: UInt64
        package var tapFramesOut: UInt64
        package var udpDatagramsIn: UInt64
        package var udpDatagramsOut: UInt64
    }

    package struct Network: Codable, Sendable {
        package var name: String
        package var vni: UInt32
        package var subnet: String
        package var subnet6: String?
        package var mtu: Int
        package var encrypted: Bool
        package var bridge: String
        package var tap: String
        package var fdb: [Endpoint]
    }

    package struct Endpoint: Codable, Sendable {
        package var mac: String
        package var ip: String
        package var ip6: String?
        package var node: String
        package var underlay: String
        package var local: Bool
    }

    package struct Peer: Codable, Sendable {
        package var node: String
        package var underlay: String
        package var traffic: PeerCounters
    }

    /// The text form.
    package var text: String {
        var out = "node \(node)  underlay \(underlay) mtu \(underlayMTU)  vxlan :\(vxlanPort)  esp :\(espPort)"
        out += "  tap offloads \((tapOffloads ?? []).joined(separator: " "))\n"
        for n in networks {
            out +=
                "network \(n.name) vni \(n.vni) \(n.subnet)\(n.subnet6.map { " " + $0 } ?? "") mtu \(n.mtu) \(n.encrypted ? "encrypted" : "plaintext")"
            out += "  bridge \(n.bridge) tap \(n.tap)\n"
            for e in n.fdb {
                out +=
                    "  fdb \(e.mac) \(e.ip)\(e.ip6.map { " " + $0 } ?? "") node \(e.node) \(e.local ? "local" : "via \(e.underlay)")\n"
            }
        }
        for p in peers {
            let t = p.traffic
            out +=
                "peer \(p.node) \(p.underlay)  tx \(t.txPackets) pkts \(t.txBytes) B  rx \(t.rxPackets) pkts \(t.rxBytes) B\n"
        }
        if let esp {
            out +=
                "esp sealed \(esp.sealedPackets) opened \(esp.openedPackets)  cipher \(esp.cipher)  epochs \(esp.epochs.map { "\($0.id):\($0.state)" }.joined(separator: " "))\n"
            for sa in esp.sas {
                out +=
                    "  sa spi 0x\(String(sa.spi, radix: 16)) epoch \(sa.epoch) \(sa.direction) peer \(sa.peer) queue \(sa.queue) seq \(sa.sequence)\n"
            }
            out += "  esp drops:"
            for (k, v) in esp.drops.sorted(by: { $0.key < $1.key }) { out += " \(k)=\(v)" }
            out += "\n"
        }
        for q in queues ?? [] {
            out += "queue \(q.queue): tapIn=\(q.tapFramesIn) tapOut=\(q.tapFramesOut) udpIn=\(q.udpDatagramsIn)"
            out += " udpOut=\(q.udpDatagramsOut)\n"
        }
        let c = counters
        out += "counters: tapIn=\(c.tapFramesIn) (tso=\(c.tapTSOFramesIn) uso=\(c.tapUSOFramesIn))"
        out += " tapOut=\(c.tapFramesOut) udpOut=\(c.udpDatagramsOut)"
        out += " udpIn=\(c.udpDatagramsIn) arpReplies=\(c.arpReplies) icmpFragNeeded=\(c.icmpFragmentationNeededSent)"
        out += " ndpAdvertisements=\(c.ndpAdvertisements) icmp6PacketTooBig=\(c.icmpv6PacketTooBigSent)\n"
        out += "drops: noRoute=\(c.dropNoRoute) floodSuppressed=\(c.dropFloodSuppressed) mtu=\(c.dropMTU)"
        out += " malformed=\(c.dropMalformed) unknownVNI=\(c.dropUnknownVNI)"
        out += " wrongEncapsulation=\(c.dropWrongEncapsulation) noTxSA=\(c.dropNoTxSA) esp=\(c.dropESP)"
        out += " sendFailed=\(c.dropSendFailed) tapWriteFailed=\(c.dropTapWriteFailed)\n"
        return out
    }
}

/// The ESP side of an inspection: key ring, live SAs, and the engine's drop counters by cause.
package struct ESPReport: Codable, Sendable {
    package var cipher: String
    package var epochs: [Epoch]
    package var sas: [SA]
    package var drops: [String: UInt64]
    package var sealedPackets: UInt64
    package var openedPackets: UInt64

    package struct Epoch: Codable, Sendable {
        package var id: UInt32
        package var state: String
    }

    package struct SA: Codable, Sendable {
        package var spi: UInt32
        package var epoch: UInt32
        package var direction: String
        package var peer: String
        package var queue: Int
        package var sequence: UInt64
    }

    package init(
        cipher: String, epochs: [Epoch], sas: [SA], drops: [String: UInt64], sealedPackets: UInt64,
        openedPackets: UInt64
    ) {
        self.cipher = cipher
        self.epochs = epochs
        self.sas = sas
        self.drops = drops
        self.sealedPackets = sealedPackets
        self.openedPackets = openedPackets
    }
}
