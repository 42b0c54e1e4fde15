import ShoalSystem
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

/// IPv6 (RFC 4861 neighbor discovery, RFC 4443 packet too big), built by hand.
@Suite struct OverlayFramesIPv6Tests {
    /// task 1 (2001:2:0:19::1, 02:00:c6:13:00:01) asks for 2001:2:0:19::2 on its solicited-node group.
    private static let solicitation = bytes(
        """
        3333ff000002 0200c6130001 86dd
        6000 0000 0020 3a ff 20010002000000190000000000000001 ff0200000000000000000001ff000002
        87 00 0000 00000000 20010002000000190000000000000002 01 01 0200c6130001
        """)

    /// RFC 4861 §7.2.4: a solicited advertisement to the solicitation's source, from the target,
    /// Solicited + Override, with the target link-layer address option; hop limit 255.
    @Test func neighborSolicitationIsAnsweredFromTheFDB() {
        var ns = Self.solicitation
        var out = [UInt8](repeating: 0, count: 2048)
        let n = ns.withUnsafeMutableBytes { f in
            #expect(Frames.neighborSolicitationTarget(f) == IPAddress("2001:2:0:19::2"))
            return out.withUnsafeMutableBytes { Frames.neighborAdvertisement(f, mac: 0x0200_C613_0002, into: $0) }
        }
        #expect(n == 86)
        #expect(
            Array(out[0..<56])
                == bytes(
                    """
                    0200c6130001 0200c6130002 86dd
                    6000 0000 0020 3a ff 20010002000000190000000000000002 20010002000000190000000000000001
                    88 00
                    """))
        #expect(
            Array(out[58..<86]) == bytes("60000000 20010002000000190000000000000002 02 01 0200c6130002"))
        out.withUnsafeMutableBytes { #expect(Frames.icmpv6Checksum($0, length: 32) == 0) }
    }

    /// RFC 4861 §7.1.1 / §7.2.3: not from duplicate address detection (unspecified source), and
    /// only with hop limit 255.
    @Test func duplicateAddressDetectionAndForwardedSolicitationsAreNotAnswered() {
        var dad = Self.solicitation
        for i in 22..<38 { dad[i] = 0 }
        var hop = Self.solicitation
        hop[21] = 64
        for var f in [dad, hop] {
            f.withUnsafeMutableBytes { #expect(Frames.neighborSolicitationTarget($0) == nil) }
        }
    }

    /// RFC 4443 §3.2: type 2 code 0, the MTU in the second word, as much of the invoking packet
    /// as fits in 1280 bytes, from its destination to its source, valid checksum.
    @Test func packetTooBigQuotesWhatFitsIn1280Bytes() {
        var ip = bytes("6000 0000 05a8 11 40 20010002000000190000000000000001 20010002000000190000000000000002")
        ip += [UInt8](repeating: 0xEE, count: 1448)
        var frame = bytes("0200c6130002 0200c6130001 86dd") + ip
        var out = [UInt8](repeating: 0, count: 2048)
        let n = frame.withUnsafeMutableBytes { f in
            #expect(!Frames.isIPv4DontFragment(f))
            return out.withUnsafeMutableBytes { Frames.packetTooBig(f, mtu: 1450, into: $0) }
        }
        #expect(n == 14 + 1280)
        #expect(Array(out[0..<14]) == bytes("0200c6130001 0200c6130002 86dd"))
        #expect(Array(out[14..<22]) == bytes("6000 0000 04d8 3a 40"))  // payload 1240
        #expect(Array(out[22..<38]) == Array(ip[24..<40]))  // from the destination
        #expect(Array(out[38..<54]) == Array(ip[8..<24]))  // to the source
        #expect(out[54] == 2 && out[55] == 0)
        #expect(Array(out[58..<62]) == bytes("000005aa"))
        #expect(Array(out[62..<(14 + 1280)]) == Array(ip[0..<1232]))
        out.withUnsafeMutableBytes { #expect(Frames.icmpv6Checksum($0, length: 1240) == 0) }
    }

    /// RFC 4443 §2.4 (e): never about an ICMPv6 error; informational messages (echo) are answered.
    @Test func noPacketTooBigAboutAnError() {
        var out = [UInt8](repeating: 0, count: 2048)
        let header =
            "0200c6130002 0200c6130001 86dd 6000 0000 0040 3a 40 "
            + "20010002000000190000000000000001 20010002000000190000000000000002"
        for (type, answered) in [("01", false), ("02", false), ("80", true)] {
            var f = bytes(header + type) + [UInt8](repeating: 0, count: 63)
            let n = f.withUnsafeMutableBytes { fb in
                out.withUnsafeMutableBytes { Frames.packetTooBig(fb, mtu: 1400, into: $0) }
            }
            #expect((n != nil) == answered, "type \(type)")
        }
    }
}
