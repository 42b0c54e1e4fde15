import Testing

@testable import ShoalOverlay

/// The RFC 1071 checksum the slow way, one 16-bit word at a time: the naive twin of the C shim.
private func naiveChecksum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var i = 0
    while i + 1 < bytes.count {
        sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
        i += 2
    }
    if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
    while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(sum)
}

/// A TCP superframe as a TAP hands it over with TSO: one header, `payload` bytes of data.
private func superframe(ipv6: Bool, payload: Int, flags: UInt8) -> [UInt8] {
    var f: [UInt8] = [2, 0, 0xC6, 0x13, 0, 2, 2, 0, 0xC6, 0x13, 0, 1] + (ipv6 ? [0x86, 0xDD] : [0x08, 0x00])
    let tcpLength = 32 + payload
    if ipv6 {
        f += [0x60, 0, 0, 0, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xFF), 6, 64]
        f += [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1]
        f += [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [2]
    } else {
        let total = 20 + tcpLength
        f += [0x45, 0, UInt8(total >> 8 & 0xFF), UInt8(total & 0xFF), 0xAB, 0xCD, 0x40, 0, 64, 6, 0, 0]
        f += [198, 19, 0, 1, 198, 19, 0, 2]
    }
    f += [0x9C, 0x40, 0x14, 0x51, 0xFF, 0xFF, 0xFF, 0x00, 0, 0, 0, 9, 0x80, flags, 0x01, 0x00, 0, 0, 0, 0]
    f += [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]  // NOP NOP timestamps
    return f + (0..<payload).map { UInt8(truncatingIfNeeded: $0 * 31 + 7) }
}

/// A UDP superframe as a TAP hands it over with USO (a task's UDP_SEGMENT send): one IP and UDP
/// header for all `payload` bytes, the UDP checksum field holding the sender's partial sum.
private func udpSuperframe(ipv6: Bool, payload: Int) -> [UInt8] {
    var f: [UInt8] = [2, 0, 0xC6, 0x13, 0, 2, 2, 0, 0xC6, 0x13, 0, 1] + (ipv6 ? [0x86, 0xDD] : [0x08, 0x00])
    let udpLength = 8 + payload
    if ipv6 {
        f += [0x60, 0, 0, 0, UInt8(udpLength >> 8 & 0xFF), UInt8(udpLength & 0xFF), 17, 64]
        f += [0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0x19] + [UInt8](repeating: 0, count: 7) + [1]
        f += [0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0x19] + [UInt8](repeating: 0, count: 7) + [2]
    } else {
        let total = 20 + udpLength
        f += [0x45, 0, UInt8(total >> 8 & 0xFF), UInt8(total & 0xFF), 0xFF, 0xFE, 0x40, 0, 64, 17, 0, 0]
        f += [198, 19, 0, 1, 198, 19, 0, 2]
    }
    f += [0xC3, 0x50, 0x13, 0x88, UInt8(udpLength >> 8 & 0xFF), UInt8(udpLength & 0xFF), 0x12, 0x34]
    return f + (0..<payload).map { UInt8(truncatingIfNeeded: $0 * 13 + 5) }
}

/// Every segment of `f` as `layout` cuts it.
private func segments(of f: [UInt8], _ layout: SegmentationLayout) -> [[UInt8]] {
    var out = [UInt8](repeating: 0, count: 2048)
    return (0..<layout.segments).map { i in
        let n = f.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { layout.writeSegment(src, i, to: $0.baseAddress!) }
        }
        return Array(out[0..<n])
    }
}

/// The pseudo-header (RFC 793 / RFC 768 for IPv4, RFC 8200 §8.1 for IPv6) of segment `seg`,
/// after checking its IP length (and, for IPv4, header checksum and id `firstID` + i).
private func checkedPseudoHeader(_ seg: [UInt8], _ i: Int, ipv6: Bool, proto: UInt8, firstID: UInt16) -> [UInt8] {
    let l4Length = seg.count - (ipv6 ? 54 : 34)
    let lengthBytes: [UInt8] = [UInt8(l4Length >> 8), UInt8(l4Length & 0xFF)]
    if ipv6 {
        #expect(Int(seg[18]) << 8 | Int(seg[19]) == l4Length, "IPv6 payload length of segment \(i)")
        return Array(seg[22..<54]) + [0, 0] + lengthBytes + [0, 0, 0, proto]
    }
    #expect(naiveChecksum(Array(seg[14..<34])) == 0, "IPv4 header checksum of segment \(i)")
    #expect(Int(seg[16]) << 8 | Int(seg[17]) == seg.count - 14, "IPv4 total length of segment \(i)")
    #expect(UInt16(seg[18]) << 8 | UInt16(seg[19]) == firstID &+ UInt16(i), "IPv4 id of segment \(i)")
    return Array(seg[26..<34]) + [0, proto] + lengthBytes
}

@Suite struct OverlaySegmentationTests {
    /// USO: every segment is a UDP datagram of its own (RFC 768): its UDP length, a checksum
    /// over the pseudo-header (RFC 768 / RFC 8200 §8.1) that the naive twin verifies, the IP
    /// length (and the IPv4 id advancing, wrapping here); the payloads concatenate back, the
    /// last one shorter.
    @Test(arguments: [false, true]) func udpSegmentsAreDatagramsOfTheirOwn(ipv6: Bool) throws {
        let payload = 8_000
        let size = 1_400
        let f = udpSuperframe(ipv6: ipv6, payload: payload)
        let layout = try #require(
            f.withUnsafeBytes { SegmentationLayout($0, gsoType: VirtioNetHeader.gsoUDPL4, mss: size) })
        #expect(layout.udp && layout.ipv4 == !ipv6)
        #expect(layout.segments == 6)
        let l4 = ipv6 ? 54 : 34
        var data: [UInt8] = []
        for (i, seg) in segments(of: f, layout).enumerated() {
            let udp = Array(seg[l4...])
            #expect(udp.count == 8 + (i == 5 ? payload - 5 * size : size))
            #expect(Int(udp[4]) << 8 | Int(udp[5]) == udp.count, "UDP length of segment \(i)")
            #expect(Array(udp[0..<4]) == [0xC3, 0x50, 0x13, 0x88])
            let pseudo = checkedPseudoHeader(seg, i, ipv6: ipv6, proto: 17, firstID: 0xFFFE)
            #expect(udp[6] != 0 || udp[7] != 0, "a UDP checksum is sent, never 0")
            #expect(naiveChecksum(pseudo + udp) == 0, "UDP checksum of segment \(i)")
            data += udp[8...]
        }
        #expect(data == Array(f[(l4 + 8)...]))
    }

    /// The virtio_net_hdr's gso_type picks the parser: a UDP superframe announced as TCP, or a
    /// TCP one announced as UDP, or an unknown type, is refused (counted as malformed).
    @Test func gsoTypeMustMatchTheFrame() {
        let udp4 = udpSuperframe(ipv6: false, payload: 3_000)
        let tcp6 = superframe(ipv6: true, payload: 3_000, flags: 0x10)
        udp4.withUnsafeBytes { f in
            #expect(SegmentationLayout(f, gsoType: VirtioNetHeader.gsoTCPv4, mss: 1_000) == nil)
            #expect(SegmentationLayout(f, gsoType: 3, mss: 1_000) == nil)  // UFO: never offered
            #expect(SegmentationLayout(f, gsoType: VirtioNetHeader.gsoUDPL4, mss: 0) == nil)
        }
        tcp6.withUnsafeBytes { f in
            #expect(SegmentationLayout(f, gsoType: VirtioNetHeader.gsoUDPL4, mss: 1_000) == nil)
            #expect(SegmentationLayout(f, gsoType: VirtioNetHeader.gsoTCPv6, mss: 1_000)?.segments == 3)
        }
    }

    /// Every segment is a complete packet (RFC 793 / RFC 8200 §8.1 checksums verified by the
    /// naive twin), sequence numbers advance by the MSS (the sequence wraps here), FIN and PSH
    /// only on the last segment, CWR only on the first, and the payloads concatenate back.
    @Test(arguments: [false, true]) func segmentsAreCompletePackets(ipv6: Bool) throws {
        let payload = 9_001
        let mss = 1_388
        let f = superframe(ipv6: ipv6, payload: payload, flags: 0x80 | 0x18 | 0x01)  // CWR PSH ACK FIN
        let layout = try #require(f.withUnsafeBytes { SegmentationLayout($0, mss: mss, ipv6: ipv6) })
        #expect(layout.segments == 7)
        let l4 = ipv6 ? 54 : 34
        var data: [UInt8] = []
        for (i, seg) in segments(of: f, layout).enumerated() {
            let tcp = Array(seg[l4...])
            let pseudo = checkedPseudoHeader(seg, i, ipv6: ipv6, proto: 6, firstID: 0xABCD)
            #expect(naiveChecksum(pseudo + tcp) == 0, "TCP checksum of segment \(i)")
            let seq = UInt32(tcp[4]) << 24 | UInt32(tcp[5]) << 16 | UInt32(tcp[6]) << 8 | UInt32(tcp[7])
            #expect(seq == 0xFFFF_FF00 &+ UInt32(i * mss))
            let last = i == layout.segments - 1
            #expect(tcp[13] & 0x09 == (last ? 0x09 : 0))
            #expect(tcp[13] & 0x80 == (i == 0 ? 0x80 : 0))
            data += tcp[32...]
        }
        #expect(data == Array(f[(l4 + 32)...]))
    }

    /// A checksum left partial by the sender (pseudo-header sum in the field) is completed to
    /// what the naive twin computes over the whole segment.
    @Test func partialChecksumIsCompleted() {
        var f = superframe(ipv6: false, payload: 101, flags: 0x18)
        let tcpLength = f.count - 34
        // The sender's partial: the folded, uncomplemented pseudo-header sum.
        let pseudo = Array(f[26..<34]) + [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xFF)]
        let partial = ~naiveChecksum(pseudo)
        f[50] = UInt8(partial >> 8)
        f[51] = UInt8(partial & 0xFF)
        let ok = f.withUnsafeMutableBytes { completeChecksum($0, start: 34, offset: 16) }
        #expect(ok)
        #expect(naiveChecksum(pseudo + Array(f[34...])) == 0)
    }
}
