// Every counter of the VTEP in one place (STYLE.md §6). Each drop path increments exactly one
// drop counter; ESP's own drop causes (unknown SPI, replay, authentication failure, no transmit
// SA, malformed ESP) are counted by the ESP engine and reported beside these.

package struct OverlayCounters: Codable, Sendable, Equatable {
    // Traffic.
    package var tapFramesIn: UInt64 = 0
    package var tapFramesOut: UInt64 = 0
    /// Of `tapFramesIn`: TCP superframes (gso_type TCPV4/TCPV6) the VTEP segmented.
    package var tapTSOFramesIn: UInt64 = 0
    /// Of `tapFramesIn`: UDP superframes (gso_type UDP_L4, a task's UDP_SEGMENT send) the VTEP
    /// segmented.
    package var tapUSOFramesIn: UInt64 = 0
    package var udpDatagramsOut: UInt64 = 0
    package var udpDatagramsIn: UInt64 = 0
    package var arpReplies: UInt64 = 0
    package var icmpFragmentationNeededSent: UInt64 = 0
    /// Neighbor advertisements answered from the FDB (the IPv6 counterpart of `arpReplies`).
    package var ndpAdvertisements: UInt64 = 0
    package var icmpv6PacketTooBigSent: UInt64 = 0

    // Drops, by cause.
    /// A frame to a MAC address the FDB does not place on another node.
    package var dropNoRoute: UInt64 = 0
    /// A broadcast or multicast frame other than an ARP request or neighbor solicitation we
    /// answer (nothing is flooded).
    package var dropFloodSuppressed: UInt64 = 0
    /// A frame larger than the network MTU allows (ICMP sent back when the sender set DF; ICMPv6
    /// "packet too big" for IPv6).
    package var dropMTU: UInt64 = 0
    /// A datagram too short for VXLAN + Ethernet, with the I flag clear, or truncated.
    package var dropMalformed: UInt64 = 0
    /// A VXLAN packet for a VNI this node does not serve.
    package var dropUnknownVNI: UInt64 = 0
    /// A plaintext VXLAN packet for an encrypted network (or the reverse).
    package var dropWrongEncapsulation: UInt64 = 0
    /// An encrypted network's frame that the ESP engine could not seal (no transmit SA).
    package var dropNoTxSA: UInt64 = 0
    /// An encrypted datagram the ESP engine refused (its counters say why).
    package var dropESP: UInt64 = 0
    /// sendmmsg refused a datagram (its errno is in `lastSendErrno`).
    package var dropSendFailed: UInt64 = 0
    /// write to the TAP failed.
    package var dropTapWriteFailed: UInt64 = 0

    package var lastSendErrno: Int32 = 0

    package init() {}
}

extension OverlayCounters {
    /// Every counter but `lastSendErrno`, for sums over queues.
    static var all: [WritableKeyPath<OverlayCounters, UInt64>] {
        [
            \.tapFramesIn, \.tapFramesOut, \.tapTSOFramesIn, \.tapUSOFramesIn, \.udpDatagramsOut, \.udpDatagramsIn,
            \.arpReplies,
            \.icmpFragmentationNeededSent, \.ndpAdvertisements, \.icmpv6PacketTooBigSent, \.dropNoRoute,
            \.dropFloodSuppressed, \.dropMTU, \.dropMalformed, \.dropUnknownVNI, \.dropWrongEncapsulation,
            \.dropNoTxSA, \.dropESP, \.dropSendFailed, \.dropTapWriteFailed,
        ]
    }

    mutating func add(_ other: OverlayCounters) {
        for k in Self.all { self[keyPath: k] += other[keyPath: k] }
        if other.lastSendErrno != 0 { lastSendErrno = other.lastSendErrno }
    }
}

/// Per-peer traffic, indexed like `OverlayPlan.peers`.
package struct PeerCounters: Codable, Sendable, Equatable {
    package var txPackets: UInt64 = 0
    package var txBytes: UInt64 = 0
    package var rxPackets: UInt64 = 0
    package var rxBytes: UInt64 = 0
    package init() {}

    mutating func add(_ o: PeerCounters) {
        txPackets += o.txPackets
        txBytes += o.txBytes
        rxPackets += o.rxPackets
        rxBytes += o.rxBytes
    }
}
