import Testing

@testable import ShoalOverlay

private func bytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var s = Substring(hex.filter { !$0.isWhitespace })
    while !s.isEmpty {
        out.append(UInt8(s.prefix(2), radix: 16)!)
        s = s.dropFirst(2)
    }
    return out
}

@Suite struct OverlayFramesTests {
    /// RFC 826: the reply swaps sender and target, carries the answered MAC as sender hardware
    /// address, and goes back to the requester by unicast.
    @Test func arpRequestBecomesReplyInPlace() {
        var frame = bytes(
            """
            ffffffffffff 0200c6130001 0806 0001 0800 06 04 0001
            0200c6130001 c6130001 000000000000 c6130002
            """)
        frame.withUnsafeMutableBytes { b in
            #expect(Frames.arpRequestTarget(b) == 0xC613_0002)
            #expect(Frames.arpReply(b, mac: 0x0200_C613_0002) == 42)
        }
        #expect(
            frame
                == bytes(
                    """
                    0200c6130001 0200c6130002 0806 0001 0800 06 04 0002
                    0200c6130002 c6130002 0200c6130001 c6130001
                    """))
        var reply = frame
        reply.withUnsafeMutableBytes { #expect(Frames.arpRequestTarget($0) == nil) }
    }

    /// RFC 1191 §4 / RFC 792: type 3 code 4, next-hop MTU in the low 16 bits of the second
    /// word, the original IP header + 8 bytes quoted; both checksums valid.
    @Test func fragmentationNeededQuotesTheOriginal() {
        var ip = bytes("4500 05dc 1234 4000 40 06 0000 c6130001 c6130002")
        ip += [UInt8](repeating: 0xEE, count: 1500 - 20)
        var frame = bytes("0200c6130002 0200c6130001 0800") + ip
        var out = [UInt8](repeating: 0, count: 2048)
        let n = frame.withUnsafeMutableBytes { f in
            #expect(Frames.isIPv4DontFragment(f))
            return out.withUnsafeMutableBytes { Frames.fragmentationNeeded(f, mtu: 1450, into: $0) }
        }
        #expect(n == 14 + 20 + 8 + 28)
        #expect(Array(out[0..<12]) == bytes("0200c6130001 0200c6130002"))
        #expect(Array(out[26..<34]) == bytes("c6130002 c6130001"))  // from the destination, to the source
        #expect(out[34] == 3 && out[35] == 4)
        #expect(UInt16(out[40]) << 8 | UInt16(out[41]) == 1450)
        #expect(Array(out[42..<70]) == Array(ip[0..<28]))
        out.withUnsafeMutableBytes { b in
            #expect(Frames.checksum(b, 14, 20) == 0)
            #expect(Frames.checksum(b, 34, 8 + 28) == 0)
        }
    }

    /// RFC 1122 §3.2.2: no ICMP error about an ICMP error, nor about a non-first fragment.
    @Test func noErrorAboutErrorsOrFragments() {
        var out = [UInt8](repeating: 0, count: 2048)
        var icmpError = bytes("0200c6130002 0200c6130001 0800 4500 0030 0000 4000 40 01 0000 c6130001 c6130002 0304")
        icmpError += [UInt8](repeating: 0, count: 30)
        var fragment = bytes("0200c6130002 0200c6130001 0800 4500 0030 0000 2001 40 11 0000 c6130001 c6130002")
        fragment += [UInt8](repeating: 0, count: 30)
        for var f in [icmpError, fragment] {
            let n = f.withUnsafeMutableBytes { fb in
                out.withUnsafeMutableBytes { Frames.fragmentationNeeded(fb, mtu: 1400, into: $0) }
            }
            #expect(n == nil)
        }
    }
}
