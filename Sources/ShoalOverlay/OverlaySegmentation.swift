// TCP and UDP segmentation offload done by the VTEP: the TAP (IFF_VNET_HDR, TUN_F_TSO4/TSO6,
// TUN_F_USO4/USO6) hands over one superframe of up to 64 KiB with a virtio_net_hdr in front; the
// VTEP cuts it into gso_size pieces, each a complete Ethernet frame with valid IPv4 and TCP or
// UDP checksums (what a NIC does with TSO or USO), so that peers, Shoal or the kernel's VXLAN
// device, receive plain frames. Equal-size segments become equal-size VXLAN (or ESP) datagrams,
// sent with one UDP GSO call.
//
//   TCP (gso_type TCPV4/TCPV6): per segment, IP length (and IPv4 id + i), sequence + i × MSS,
//       FIN/PSH on the last segment only, CWR on the first only, TCP checksum.
//   UDP (gso_type UDP_L4, the kernel's UDP_SEGMENT from a task): each segment is a datagram of
//       its own (RFC 768), with its own UDP length and checksum; IP length and IPv4 id + i as
//       for TCP (the kernel's own UDP GSO does the same).
//
// Pure functions over raw bytes; the checksums come from the C shim (RFC 1071; AVX2 when the
// CPU has it).

import CShoal

/// virtio_net_hdr (include/uapi/linux/virtio_net.h), little-endian on x86 and arm64 hosts.
package struct VirtioNetHeader {
    package static let bytes = 10
    package static let flagNeedsChecksum: UInt8 = 1
    package static let flagDataValid: UInt8 = 2
    package static let gsoNone: UInt8 = 0
    package static let gsoTCPv4: UInt8 = 1
    package static let gsoTCPv6: UInt8 = 4
    /// VIRTIO_NET_HDR_GSO_UDP_L4: UDP segmentation (USO), IPv4 or IPv6 by the frame's EtherType.
    package static let gsoUDPL4: UInt8 = 5
    package static let gsoECN: UInt8 = 0x80

    package var flags: UInt8
    package var gsoType: UInt8
    package var headerLength: Int
    package var gsoSize: Int
    package var checksumStart: Int
    package var checksumOffset: Int

    @inline(__always)
    package init(_ p: UnsafeRawPointer) {
        flags = p.load(as: UInt8.self)
        gsoType = p.load(fromByteOffset: 1, as: UInt8.self)
        headerLength = Int(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        gsoSize = Int(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
        checksumStart = Int(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
        checksumOffset = Int(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
    }

    /// Writes a header with only `flags` set (no GSO) at `p`.
    @inline(__always)
    package static func writePlain(_ p: UnsafeMutableRawPointer, flags: UInt8) {
        p.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        p.storeBytes(of: flags, as: UInt8.self)
    }
}

/// Where the headers of a TSO or USO superframe are, and how it splits.
package struct SegmentationLayout {
    package var ipv4: Bool
    /// UDP (USO) rather than TCP (TSO).
    package var udp: Bool
    /// Offset of the TCP or UDP header; of the payload (= length of the headers copied per segment).
    package var l4Start: Int
    package var headerLength: Int
    /// Payload bytes per segment (the MSS for TCP, the UDP_SEGMENT size for UDP).
    package var mss: Int
    package var payloadLength: Int
    package var segments: Int { (payloadLength + mss - 1) / mss }

    /// Parses the superframe a virtio_net_hdr of `gsoType` (ECN bit cleared) announces; nil for
    /// any other GSO type or a frame that is not what it announces.
    package init?(_ f: UnsafeRawBufferPointer, gsoType: UInt8, mss: Int) {
        switch gsoType {
        case VirtioNetHeader.gsoTCPv4: self.init(f, mss: mss, ipv6: false)
        case VirtioNetHeader.gsoTCPv6: self.init(f, mss: mss, ipv6: true)
        case VirtioNetHeader.gsoUDPL4:
            guard f.count >= 14 else { return nil }
            self.init(f, mss: mss, ipv6: f[12] == 0x86 && f[13] == 0xDD, udp: true)
        default: return nil
        }
    }

    /// Parses an Ethernet superframe carrying TCP (or UDP) over IPv4 (no options beyond IHL) or
    /// IPv6 (no extension headers); nil if it is anything else.
    package init?(_ f: UnsafeRawBufferPointer, mss: Int, ipv6: Bool, udp: Bool = false) {
        let proto: UInt8 = udp ? 17 : 6
        guard mss > 0, f.count >= 14 + 20 + 8 else { return nil }
        let ethType = UInt16(f[12]) << 8 | UInt16(f[13])
        if ipv6 {
            guard ethType == 0x86DD, f[14] >> 4 == 6, f[14 + 6] == proto else { return nil }
            l4Start = 14 + 40
        } else {
            guard ethType == 0x0800, f[14] >> 4 == 4, f[14] & 0x0F >= 5, f[14 + 9] == proto else { return nil }
            l4Start = 14 + Int(f[14] & 0x0F) * 4
        }
        ipv4 = !ipv6
        self.udp = udp
        if udp {
            headerLength = l4Start + 8
        } else {
            guard f.count >= l4Start + 20 else { return nil }
            headerLength = l4Start + Int(f[l4Start + 12] >> 4) * 4
            guard headerLength >= l4Start + 20 else { return nil }
        }
        guard f.count > headerLength else { return nil }
        self.mss = mss
        payloadLength = f.count - headerLength
    }

    /// Writes segment `i` of `f` as a complete Ethernet frame at `out`; returns its length.
    @inline(__always)
    package func writeSegment(_ f: UnsafeRawBufferPointer, _ i: Int, to out: UnsafeMutableRawPointer) -> Int {
        let base = f.baseAddress!
        let offset = i * mss
        let length = min(mss, payloadLength - offset)
        let last = i == segments - 1
        out.copyMemory(from: base, byteCount: headerLength)
        (out + headerLength).copyMemory(from: base + headerLength + offset, byteCount: length)
        let l4Length = headerLength - l4Start + length
        if ipv4 {
            let ihl = l4Start - 14
            storeBE16(out + 16, UInt16(ihl + l4Length))
            let id =
                UInt16(base.load(fromByteOffset: 18, as: UInt8.self)) << 8
                | UInt16(base.load(fromByteOffset: 19, as: UInt8.self))
            storeBE16(out + 18, id &+ UInt16(truncatingIfNeeded: i))
            out.storeBytes(of: 0, toByteOffset: 24, as: UInt16.self)
            out.storeBytes(of: shoal_csum_fold(shoal_csum_add(out + 14, ihl, 0)), toByteOffset: 24, as: UInt16.self)
        } else {
            storeBE16(out + 18, UInt16(l4Length))
        }
        if udp {
            // UDP: the segment is a datagram of its own, with its own length and checksum
            // (RFC 768; a computed 0 is sent as all ones).
            storeBE16(out + l4Start + 4, UInt16(l4Length))
            out.storeBytes(of: 0, toByteOffset: l4Start + 6, as: UInt16.self)
            var c = shoal_csum_fold(shoal_csum_add(out + l4Start, l4Length, pseudoHeaderSum(out, l4Length)))
            if c == 0 { c = 0xFFFF }
            out.storeBytes(of: c, toByteOffset: l4Start + 6, as: UInt16.self)
            return headerLength + length
        }
        // TCP: sequence advanced; FIN and PSH only on the last segment, CWR only on the first.
        let seq =
            UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l4Start + 4, as: UInt32.self)) &+ UInt32(offset)
        out.storeBytes(of: seq.bigEndian, toByteOffset: l4Start + 4, as: UInt32.self)
        var flags = base.load(fromByteOffset: l4Start + 13, as: UInt8.self)
        if !last { flags &= ~0x09 }
        if i > 0 { flags &= ~0x80 }
        out.storeBytes(of: flags, toByteOffset: l4Start + 13, as: UInt8.self)
        out.storeBytes(of: 0, toByteOffset: l4Start + 16, as: UInt16.self)
        let c = shoal_csum_fold(shoal_csum_add(out + l4Start, l4Length, pseudoHeaderSum(out, l4Length)))
        out.storeBytes(of: c, toByteOffset: l4Start + 16, as: UInt16.self)
        return headerLength + length
    }

    /// The unfolded sum of the pseudo-header (RFC 793 / RFC 768 for IPv4, RFC 8200 §8.1 for
    /// IPv6) of the segment at `out` whose transport part is `l4Length` bytes.
    @inline(__always)
    private func pseudoHeaderSum(_ out: UnsafeMutableRawPointer, _ l4Length: Int) -> UInt64 {
        let proto: UInt32 = udp ? 17 : 6
        if ipv4 {
            var w = (proto << 16 | UInt32(l4Length)).bigEndian
            return shoal_csum_add(&w, 4, shoal_csum_add(out + 26, 8, 0))
        }
        var w = (UInt64(UInt32(l4Length)) << 32 | UInt64(proto)).bigEndian
        return shoal_csum_add(&w, 8, shoal_csum_add(out + 22, 32, 0))
    }
}

/// Completes a checksum the sender left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM): the field at
/// start + offset holds the pseudo-header sum; the checksum covers everything from start.
@inline(__always)
package func completeChecksum(_ frame: UnsafeMutableRawBufferPointer, start: Int, offset: Int) -> Bool {
    guard start + offset + 2 <= frame.count else { return false }
    var c = shoal_csum_fold(shoal_csum_add(frame.baseAddress! + start, frame.count - start, 0))
    if offset == 6 && c == 0 { c = 0xFFFF }  // UDP: a computed 0 is sent as all ones (RFC 768)
    frame.baseAddress!.storeBytes(of: c, toByteOffset: start + offset, as: UInt16.self)
    return true
}

@inline(__always)
private func storeBE16(_ p: UnsafeMutableRawPointer, _ v: UInt16) {
    p.storeBytes(of: v.bigEndian, as: UInt16.self)
}
