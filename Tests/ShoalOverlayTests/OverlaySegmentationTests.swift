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

@Suite struct OverlaySegmentationTests {
    /// Every segment is a complete packet (RFC 793 / RFC 8200 §8.1 checksums verified by the
    /// naive twin), sequence numbers advance by the MSS (the sequence wraps here), FIN and PSH
    /// only on the last segment, CWR only on the first, and the payloads concatenate back.
    @Test(arguments: [false, true]) func segmentsAreCompletePackets(ipv6: Bool) throws {
        let payload = 9_001
        let mss = 1_388
        let f = superframe(ipv6: ipv6, payload: payload, flags: 0x80 | 0x18 | 0x01)  // CWR PSH ACK FIN
        let layout = try #require(f.withUnsafeBytes { TSOLayout($0, mss: mss, ipv6: ipv6) })
        #expect(layout.segments == 7)
        let l4 = ipv6 ? 54 : 34
        var data: [UInt8] = []
        var out = [UInt8](repeating: 0, count: 2048)
        for i in 0..<layout.segments {
            let n = f.withUnsafeBytes { src in
                out.withUnsafeMutableBytes { layout.writeSegment(src, i, to: $0.baseAddress!) }
            }
            let seg = Array(out[0..<n])
            let tcp = Array(seg[l4...])
            var pseudo: [UInt8]
            if ipv6 {
                pseudo = Array(seg[22..<54]) + [0, 0, UInt8(tcp.count >> 8), UInt8(tcp.count & 0xFF), 0, 0, 0, 6]
                #expect(Int(seg[18]) << 8 | Int(seg[19]) == tcp.count)
            } else {
                pseudo = Array(seg[26..<34]) + [0, 6, UInt8(tcp.count >> 8), UInt8(tcp.count & 0xFF)]
                #expect(naiveChecksum(Array(seg[14..<34])) == 0, "IPv4 header checksum of segment \(i)")
                #expect(Int(seg[16]) << 8 | Int(seg[17]) == n - 14)
                #expect(Int(seg[18]) << 8 | Int(seg[19]) == 0xABCD + i)
            }
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
