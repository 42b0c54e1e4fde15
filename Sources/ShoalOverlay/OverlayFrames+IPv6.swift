// The IPv6 side of the Ethernet-level work the VTEP does on frames read from the TAP:
//
//   - Neighbor discovery proxy (RFC 4861 §7.2): a neighbor solicitation for an overlay address
//     that the FDB owns on another node is answered with a solicited neighbor advertisement
//     (the IPv6 counterpart of the ARP reply); nothing is flooded between nodes.
//   - ICMPv6 "packet too big" (RFC 4443 §3.2, RFC 8201): an IPv6 packet larger than the network
//     MTU gets this error back, quoting as much of the packet as fits in the minimum IPv6 MTU.
//
// Both are built into an output buffer; the caller counts and does the I/O. Frames are
// Ethernet + IPv6 with no extension header before ICMPv6 (what Linux sends for both).

import ShoalSystem

/// Spec constants of the IPv6 frames the VTEP looks at.
extension FrameSpec {
    package static let etherTypeIPv6: UInt16 = 0x86DD
    package static let ipv6HeaderBytes = 40
    package static let ipv6NextHeaderICMPv6: UInt8 = 58
    /// RFC 8200 §5: every link carries 1280 bytes; an ICMPv6 error never exceeds it (RFC 4443 §2.4 c).
    package static let ipv6MinimumMTU = 1280
    /// RFC 4443 §3.2.
    package static let icmpv6PacketTooBig: UInt8 = 2
    /// RFC 4443 §2.1: types below 128 are errors.
    package static let icmpv6FirstInformational: UInt8 = 128
    /// RFC 4861 §4.3, §4.4.
    package static let icmpv6NeighborSolicitation: UInt8 = 135
    package static let icmpv6NeighborAdvertisement: UInt8 = 136
    /// RFC 4861 §4.3: ICMPv6 header (4) + reserved (4) + target (16).
    package static let ndpMessageBytes = 24
    /// RFC 4861 §4.6.1: the target link-layer address option (type 2, length 1 = 8 bytes).
    package static let ndpOptionTargetLinkLayerAddress: UInt8 = 2
    /// RFC 4861 §7.1: neighbor discovery messages travel with hop limit 255 only.
    package static let ndpHopLimit: UInt8 = 255
    /// RFC 4861 §4.4: the Solicited and Override flags, in the first byte after the checksum.
    package static let ndpFlagsSolicitedOverride: UInt8 = 0x60
    /// The hop limit of the errors we originate (Linux's default).
    package static let icmpv6ErrorHopLimit: UInt8 = 64
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always) func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) << 32 | UInt64(u32(at + 4)) }
    @inline(__always) func put64(_ v: UInt64, _ at: Int) {
        put32(UInt32(v >> 32), at)
        put32(UInt32(truncatingIfNeeded: v), at + 4)
    }
    @inline(__always) func ipv6(_ at: Int) -> IPAddress { .v6(u64(at), u64(at + 8)) }
    func copy(_ count: Int, from source: UnsafeMutableRawBufferPointer, _ sourceAt: Int, to at: Int) {
        for i in 0..<count { self[at + i] = source[sourceAt + i] }
    }
}

extension Frames {
    /// Offsets in an Ethernet frame carrying IPv6.
    private static let ip6 = 14
    private static let ip6Source = ip6 + 8
    private static let ip6Destination = ip6 + 24
    private static let icmp6 = ip6 + FrameSpec.ipv6HeaderBytes

    /// True if `frame` is Ethernet + IPv6 with the whole fixed header present.
    package static func isIPv6(_ frame: UnsafeMutableRawBufferPointer) -> Bool {
        frame.count >= icmp6 && frame.u16(12) == FrameSpec.etherTypeIPv6 && frame[ip6] >> 4 == 6
    }

    /// The target address if `frame` is a well-formed neighbor solicitation (RFC 4861 §7.1.1:
    /// hop limit 255, code 0, ICMPv6 length ≥ 24) from a node that has an address; nil
    /// otherwise, also for duplicate address detection (unspecified source), which a proxy for
    /// addresses of other nodes must not answer.
    package static func neighborSolicitationTarget(_ frame: UnsafeMutableRawBufferPointer) -> IPAddress? {
        guard isIPv6(frame), frame[ip6 + 6] == FrameSpec.ipv6NextHeaderICMPv6,
            frame[ip6 + 7] == FrameSpec.ndpHopLimit, frame.count >= icmp6 + FrameSpec.ndpMessageBytes,
            Int(frame.u16(ip6 + 4)) >= FrameSpec.ndpMessageBytes,
            frame[icmp6] == FrameSpec.icmpv6NeighborSolicitation, frame[icmp6 + 1] == 0,
            frame.u64(ip6Source) | frame.u64(ip6Source + 8) != 0
        else { return nil }
        let target = frame.ipv6(icmp6 + 8)
        guard case .v6(let hi, _) = target, hi >> 56 != 0xFF else { return nil }  // never a multicast target
        return target
    }

    /// Builds into `out` the solicited neighbor advertisement "target is at `mac`" (Solicited
    /// and Override set, Router clear, with the target link-layer address option) answering the
    /// solicitation in `frame`, sent from the target address to the solicitation's source.
    /// Returns the length (86), or nil if `out` is too small.
    package static func neighborAdvertisement(
        _ frame: UnsafeMutableRawBufferPointer, mac: UInt64, into out: UnsafeMutableRawBufferPointer
    ) -> Int? {
        let icmpLength = FrameSpec.ndpMessageBytes + 8
        let total = icmp6 + icmpLength
        guard out.count >= total else { return nil }
        out.putMAC(frame.mac(6), 0)
        out.putMAC(mac, 6)
        out.put16(FrameSpec.etherTypeIPv6, 12)
        writeIPv6Header(
            out, payload: icmpLength, hopLimit: FrameSpec.ndpHopLimit,
            source: (frame, icmp6 + 8), destination: (frame, ip6Source))
        out[icmp6] = FrameSpec.icmpv6NeighborAdvertisement
        out[icmp6 + 1] = 0
        out.put16(0, icmp6 + 2)
        out.put32(0, icmp6 + 4)
        out[icmp6 + 4] = FrameSpec.ndpFlagsSolicitedOverride
        out.copy(16, from: frame, icmp6 + 8, to: icmp6 + 8)
        out[icmp6 + 24] = FrameSpec.ndpOptionTargetLinkLayerAddress
        out[icmp6 + 25] = 1
        out.putMAC(mac, icmp6 + 26)
        out.put16(icmpv6Checksum(out, length: icmpLength), icmp6 + 2)
        return total
    }

    /// Builds into `out` the Ethernet frame carrying ICMPv6 "packet too big, MTU `mtu`" in
    /// answer to the IPv6 packet in `frame`, from the address it was sent to, quoting as much of
    /// the packet as keeps the error within 1280 bytes. Returns the length, or nil if `frame` is
    /// not a packet we may answer (RFC 4443 §2.4 e: never about an ICMPv6 error; never from a
    /// multicast or to an unspecified or multicast address).
    package static func packetTooBig(
        _ frame: UnsafeMutableRawBufferPointer, mtu: Int, into out: UnsafeMutableRawBufferPointer
    ) -> Int? {
        guard isIPv6(frame), frame[ip6Destination] != 0xFF, frame[ip6Source] != 0xFF,
            frame.u64(ip6Source) | frame.u64(ip6Source + 8) != 0
        else { return nil }
        if frame[ip6 + 6] == FrameSpec.ipv6NextHeaderICMPv6 && frame.count > icmp6
            && frame[icmp6] < FrameSpec.icmpv6FirstInformational
        {
            return nil
        }
        let quoted = min(frame.count - ip6, FrameSpec.ipv6MinimumMTU - FrameSpec.ipv6HeaderBytes - 8)
        let icmpLength = 8 + quoted
        let total = icmp6 + icmpLength
        guard out.count >= total else { return nil }
        // Ethernet: back to the sender, from the MAC it sent to.
        out.putMAC(frame.mac(6), 0)
        out.putMAC(frame.mac(0), 6)
        out.put16(FrameSpec.etherTypeIPv6, 12)
        writeIPv6Header(
            out, payload: icmpLength, hopLimit: FrameSpec.icmpv6ErrorHopLimit,
            source: (frame, ip6Destination), destination: (frame, ip6Source))
        out[icmp6] = FrameSpec.icmpv6PacketTooBig
        out[icmp6 + 1] = 0
        out.put16(0, icmp6 + 2)
        out.put32(UInt32(clamping: mtu), icmp6 + 4)
        out.copy(quoted, from: frame, ip6, to: icmp6 + 8)
        out.put16(icmpv6Checksum(out, length: icmpLength), icmp6 + 2)
        return total
    }

    /// An IPv6 header (traffic class 0, flow label 0, next header ICMPv6) at offset 14 of
    /// `out`, its addresses copied from the given offsets of another frame.
    private static func writeIPv6Header(
        _ out: UnsafeMutableRawBufferPointer, payload: Int, hopLimit: UInt8,
        source: (UnsafeMutableRawBufferPointer, Int), destination: (UnsafeMutableRawBufferPointer, Int)
    ) {
        out.put32(0x6000_0000, ip6)
        out.put16(UInt16(payload), ip6 + 4)
        out[ip6 + 6] = FrameSpec.ipv6NextHeaderICMPv6
        out[ip6 + 7] = hopLimit
        out.copy(16, from: source.0, source.1, to: ip6Source)
        out.copy(16, from: destination.0, destination.1, to: ip6Destination)
    }

    /// The ICMPv6 checksum (RFC 4443 §2.3) of the `length`-byte message after the IPv6 header
    /// in `b`: over the pseudo-header (RFC 8200 §8.1: source, destination, upper-layer length,
    /// next header 58) and the message with its checksum field zero or, to verify, as sent
    /// (then the result is 0).
    package static func icmpv6Checksum(_ b: UnsafeMutableRawBufferPointer, length: Int) -> UInt16 {
        let pseudo = sum(b, ip6Source, 32) + UInt32(length) + UInt32(FrameSpec.ipv6NextHeaderICMPv6)
        return fold(pseudo + sum(b, icmp6, length))
    }
}
