// Ethernet-level work the VTEP does on frames it reads from the TAP, in place or into a
// scratch buffer, without allocating:
//
//   - ARP (RFC 826): a request for an overlay address that the FDB owns on another node is
//     answered locally, turning the request into the reply in place; nothing is flooded.
//   - ICMP "fragmentation needed" (RFC 792, RFC 1191): an IPv4 packet with DF set that is
//     larger than the network MTU gets this error back, built into a scratch buffer.
//   - Their IPv6 counterparts (neighbor discovery, "packet too big") are in
//     OverlayFrames+IPv6.swift.
//
// Every function takes raw bytes and returns a value; the caller counts and does the I/O.

/// Spec constants of the frames the VTEP looks at.
package enum FrameSpec {
    package static let etherTypeIPv4: UInt16 = 0x0800
    package static let etherTypeARP: UInt16 = 0x0806
    package static let arpFrameBytes = 14 + 28
    package static let arpOpRequest: UInt16 = 1
    package static let arpOpReply: UInt16 = 2
    package static let ipv4ProtocolICMP: UInt8 = 1
    package static let icmpDestinationUnreachable: UInt8 = 3
    package static let icmpFragmentationNeeded: UInt8 = 4
    package static let ipv4FlagDontFragment: UInt16 = 0x4000
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always) func u16(_ at: Int) -> UInt16 { UInt16(self[at]) << 8 | UInt16(self[at + 1]) }
    @inline(__always) func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) << 16 | UInt32(u16(at + 2)) }
    @inline(__always) func mac(_ at: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<6 { v = v << 8 | UInt64(self[at + i]) }
        return v
    }
    @inline(__always) func put16(_ v: UInt16, _ at: Int) {
        self[at] = UInt8(v >> 8)
        self[at + 1] = UInt8(truncatingIfNeeded: v)
    }
    @inline(__always) func put32(_ v: UInt32, _ at: Int) {
        put16(UInt16(v >> 16), at)
        put16(UInt16(truncatingIfNeeded: v), at + 2)
    }
    @inline(__always) func putMAC(_ v: UInt64, _ at: Int) {
        for i in 0..<6 { self[at + i] = UInt8(truncatingIfNeeded: v >> (40 - 8 * UInt64(i))) }
    }
}

package enum Frames {
    /// The target IPv4 address (host order) if `frame` is an Ethernet ARP request for IPv4
    /// over Ethernet; nil otherwise.
    package static func arpRequestTarget(_ frame: UnsafeMutableRawBufferPointer) -> UInt32? {
        guard frame.count >= FrameSpec.arpFrameBytes, frame.u16(12) == FrameSpec.etherTypeARP,
            frame.u16(14) == 1, frame.u16(16) == FrameSpec.etherTypeIPv4, frame[18] == 6, frame[19] == 4,
            frame.u16(20) == FrameSpec.arpOpRequest
        else { return nil }
        return frame.u32(38)
    }

    /// Turns the ARP request in `frame` into the reply "`target` is at `mac`", in place; returns
    /// the reply's length (42: a TAP needs no padding to 60).
    package static func arpReply(_ frame: UnsafeMutableRawBufferPointer, mac: UInt64) -> Int {
        let requesterMAC = frame.mac(22)
        let requesterIP = frame.u32(28)
        let target = frame.u32(38)
        frame.putMAC(requesterMAC, 0)
        frame.putMAC(mac, 6)
        frame.put16(FrameSpec.arpOpReply, 20)
        frame.putMAC(mac, 22)
        frame.put32(target, 28)
        frame.putMAC(requesterMAC, 32)
        frame.put32(requesterIP, 38)
        return FrameSpec.arpFrameBytes
    }

    /// True if `frame` carries an IPv4 packet with DF set (so it must not be fragmented).
    package static func isIPv4DontFragment(_ frame: UnsafeMutableRawBufferPointer) -> Bool {
        frame.count >= 14 + 20 && frame.u16(12) == FrameSpec.etherTypeIPv4 && frame[14] >> 4 == 4
            && frame.u16(14 + 6) & FrameSpec.ipv4FlagDontFragment != 0
    }

    /// Builds into `out` the Ethernet frame carrying ICMP "fragmentation needed, next-hop MTU
    /// `mtu`" in answer to the IPv4 packet in `frame`, from the address it was sent to. Returns
    /// the length, or nil if `frame` is not an IPv4 packet we may answer (RFC 1122 §3.2.2: never
    /// about an ICMP error, a fragment other than the first, or a broadcast).
    package static func fragmentationNeeded(
        _ frame: UnsafeMutableRawBufferPointer, mtu: Int, into out: UnsafeMutableRawBufferPointer
    ) -> Int? {
        guard frame.count >= 14 + 20, frame.u16(12) == FrameSpec.etherTypeIPv4, frame[14] >> 4 == 4 else { return nil }
        let ihl = Int(frame[14] & 0x0F) * 4
        guard ihl >= 20, frame.count >= 14 + ihl else { return nil }
        if frame.u16(20) & 0x1FFF != 0 { return nil }  // not the first fragment
        if frame[23] == FrameSpec.ipv4ProtocolICMP && frame.count >= 14 + ihl + 1 && frame[14 + ihl] < 8
            && frame[14 + ihl] != 0
        {
            return nil  // an ICMP error (types 3, 4, 5 ...): never answered
        }
        let quoted = min(frame.count - 14, ihl + 8)
        let total = 14 + 20 + 8 + quoted
        guard out.count >= total else { return nil }
        // Ethernet: back to the sender, from the MAC it sent to.
        out.putMAC(frame.mac(6), 0)
        out.putMAC(frame.mac(0), 6)
        out.put16(FrameSpec.etherTypeIPv4, 12)
        // IPv4 header.
        out[14] = 0x45
        out[15] = 0xC0  // DSCP CS6 (network control), as Linux sends ICMP errors
        out.put16(UInt16(20 + 8 + quoted), 16)
        out.put32(0, 18)  // id 0, no flags
        out[22] = 64
        out[23] = FrameSpec.ipv4ProtocolICMP
        out.put16(0, 24)
        out.put32(frame.u32(14 + 16), 26)  // from the packet's destination
        out.put32(frame.u32(14 + 12), 30)  // to its source
        out.put16(checksum(out, 14, 20), 24)
        // ICMP.
        let icmp = 34
        out[icmp] = FrameSpec.icmpDestinationUnreachable
        out[icmp + 1] = FrameSpec.icmpFragmentationNeeded
        out.put16(0, icmp + 2)
        out.put16(0, icmp + 4)
        out.put16(UInt16(clamping: mtu), icmp + 6)
        for i in 0..<quoted { out[icmp + 8 + i] = frame[14 + i] }
        out.put16(checksum(out, icmp, 8 + quoted), icmp + 2)
        return total
    }

    /// The Internet checksum (RFC 1071) of `count` bytes at `offset`.
    package static func checksum(_ b: UnsafeMutableRawBufferPointer, _ offset: Int, _ count: Int) -> UInt16 {
        fold(sum(b, offset, count))
    }

    /// The 16-bit big-endian words of `count` bytes at `offset`, added up (not yet folded);
    /// an odd last byte counts as the high half of a word.
    static func sum(_ b: UnsafeMutableRawBufferPointer, _ offset: Int, _ count: Int) -> UInt32 {
        var sum: UInt32 = 0
        var i = offset
        while i + 1 < offset + count {
            sum += UInt32(b.u16(i))
            i += 2
        }
        if i < offset + count { sum += UInt32(b[i]) << 8 }
        return sum
    }

    /// The ones' complement of the folded sum: the value a checksum field holds.
    static func fold(_ partial: UInt32) -> UInt16 {
        var sum = partial
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
