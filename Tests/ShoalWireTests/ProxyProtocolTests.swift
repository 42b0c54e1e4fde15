// PROXY protocol codec (proxy-protocol.txt): the spec's examples byte for byte, round trips,
// incremental parsing (every prefix of a header asks for more; garbage is refused at its first
// wrong byte), and the text address parsers against glibc's inet_pton.

import Glibc
import Testing

@testable import ShoalWire

private func parse(_ bytes: [UInt8]) -> ProxyParse { bytes.withUnsafeBytes { ProxyProtocol.parse($0) } }
private func parse(_ text: String) -> ProxyParse { parse(Array(text.utf8)) }

private func encodeV1(_ a: ProxyAddresses) -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: ProxyProtocol.maxV1Length + 1)
    let n = buffer.withUnsafeMutableBytes { ProxyProtocol.encodeV1(a, into: $0) }
    return Array(buffer[..<n])
}

private func encodeV2(_ a: ProxyAddresses, stream: Bool = true) -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: ProxyProtocol.maxEncodedLength)
    let n = buffer.withUnsafeMutableBytes { ProxyProtocol.encodeV2(a, stream: stream, into: $0) }
    return Array(buffer[..<n])
}

/// The v2 signature, §2.2: \x0D \x0A \x0D \x0A \x00 \x0D \x0A \x51 \x55 \x49 \x54 \x0A.
private let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

private func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> UInt32 {
    UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
}

private let allOnes6 = IPv6Bits(hi: .max, lo: .max)
private let doc6 = IPv6Bits(hi: 0x2001_0db8_0000_0000, lo: 1)  // 2001:db8::1
private let loopback6 = IPv6Bits(hi: 0, lo: 1)

/// Addresses every round-trip test runs over.
private let samples: [ProxyAddresses] = [
    .local,
    .ipv4(source: v4(198, 18, 0, 1), destination: v4(198, 18, 0, 2), sourcePort: 5000, destinationPort: 80),
    .ipv4(source: 0, destination: .max, sourcePort: 0, destinationPort: .max),
    .ipv6(source: doc6, destination: loopback6, sourcePort: 1, destinationPort: 443),
    .ipv6(source: allOnes6, destination: IPv6Bits(hi: 0, lo: 0), sourcePort: 65535, destinationPort: 0),
    .ipv6(
        source: IPv6Bits(hi: 0x0001_0000_0000_0002, lo: 0x0000_0000_0003_0000), destination: doc6,
        sourcePort: 10, destinationPort: 20),
    .ipv6(
        source: IPv6Bits(hi: 0, lo: 0x0000_ffff_c612_0709), destination: IPv6Bits(hi: 0x1_0000_0000, lo: 0),
        sourcePort: 1234, destinationPort: 4321),
]

@Suite struct ProxyProtocolV1Tests {
    /// §2.1's example line (its addresses moved into 198.18.0.0/16, the project's test range),
    /// followed by the HTTP request it precedes.
    @Test func section2_1ExampleLine() {
        let line = "PROXY TCP4 198.18.0.1 198.18.0.11 56324 443\r\n"
        let stream = line + "GET / HTTP/1.1\r\nHost: 198.18.0.11\r\n\r\n"
        let expected = ProxyAddresses.ipv4(
            source: v4(198, 18, 0, 1), destination: v4(198, 18, 0, 11), sourcePort: 56324, destinationPort: 443)
        #expect(parse(stream) == .header(length: 45, version: 1, addresses: expected))
        #expect(encodeV1(expected) == Array(line.utf8))
    }

    /// §2.1's maximum line lengths: 56 (TCP4), 104 (TCP6), 15 (UNKNOWN), 107 (worst case).
    @Test func section2_1MaximumLines() {
        let ffff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        let tcp4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
        let tcp6 = "PROXY TCP6 \(ffff) \(ffff) 65535 65535\r\n"
        let worst = "PROXY UNKNOWN \(ffff) \(ffff) 65535 65535\r\n"
        let max4 = ProxyAddresses.ipv4(source: .max, destination: .max, sourcePort: .max, destinationPort: .max)
        let max6 = ProxyAddresses.ipv6(
            source: allOnes6, destination: allOnes6, sourcePort: .max, destinationPort: .max)
        #expect(parse(tcp4) == .header(length: 56, version: 1, addresses: max4))
        #expect(parse(tcp6) == .header(length: 104, version: 1, addresses: max6))
        #expect(parse("PROXY UNKNOWN\r\n") == .header(length: 15, version: 1, addresses: .local))
        #expect(parse(worst) == .header(length: 107, version: 1, addresses: .local))
        #expect(encodeV1(max4) == Array(tcp4.utf8))
        #expect(encodeV1(max6) == Array(tcp6.utf8))
        #expect(encodeV1(.local) == Array("PROXY UNKNOWN\r\n".utf8))
    }

    /// §2.1: "If the CRLF sequence is not found in the first 107 characters, the receiver
    /// should declare the line invalid."
    @Test func section2_1LineTooLong() {
        let long = "PROXY UNKNOWN " + String(repeating: "x", count: 92) + "\r\n"  // 108 bytes
        #expect(long.utf8.count == 108)
        #expect(parse(long) == .invalid(.v1LineTooLong))
        #expect(parse(String(long.prefix(106))) == .needMore)
        #expect(parse(String(long.prefix(107))) == .invalid(.v1LineTooLong))
        // The rest of an UNKNOWN line is ignored, CR and LF alone included.
        #expect(parse("PROXY UNKNOWN \r \n x\r\nrest") == .header(length: 21, version: 1, addresses: .local))
    }

    /// §2.1: strict fields — single spaces, no leading zeros or signs, octets ≤ 255, ports
    /// ≤ 65535, the family's address format, CRLF and nothing else.
    @Test(arguments: [
        ("PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", ProxyV1Field.sourceAddress),
        ("PROXY TCP4 1.2.3.4 01.2.3.4 1 2\r\n", .destinationAddress),
        ("PROXY TCP4 1.2.3.4 1.2.3.00 1 2\r\n", .destinationAddress),
        ("PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", .sourceAddress),
        ("PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n", .sourceAddress),
        ("PROXY TCP4 1..3.4 1.2.3.4 1 2\r\n", .sourceAddress),
        ("PROXY TCP4 ::1 1.2.3.4 1 2\r\n", .sourceAddress),
        ("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", .sourceAddress),
        ("PROXY TCP6 ::1 1::2::3 1 2\r\n", .destinationAddress),
        ("PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", .sourceAddress),
        ("PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n", .sourcePort),
        ("PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", .sourcePort),
        ("PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n", .destinationPort),
        ("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", .destinationPort),
        ("PROXY TCP4 1.2.3.4 1.2.3.4 1 \r\n", .destinationPort),
        ("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", .destinationPort),
        ("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX", .lineEnd),
        ("PROXY TCP4\t1.2.3.4 1.2.3.4 1 2\r\n", .proto),
        ("PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", .proto),
        ("PROXY TCP4\r\n", .proto),
        ("PROXY UNKNOWNX\r\n", .proto),
        ("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", .proto),
    ])
    func section2_1StrictFields(line: String, field: ProxyV1Field) {
        #expect(parse(line) == .invalid(.v1BadField(field)), "\(line.debugDescription)")
    }

    /// A receiver must "abort the connection as soon as possible": the verdict comes at the
    /// first byte that cannot continue a header, not at the CRLF or a timeout.
    @Test func refusesAtTheFirstWrongByte() {
        // "GET / HTTP/1.1": 'G' is neither 'P' (v1) nor CR (v2).
        #expect(parse("G") == .invalid(.badSignature))
        #expect(parse("GET / HTTP/1.1\r\n") == .invalid(.badSignature))
        #expect(parse("PROX") == .needMore)
        #expect(parse("PROXX") == .invalid(.badSignature))
        #expect(parse("PROXY TCP5") == .invalid(.v1BadField(.proto)))
        #expect(parse("PROXY TCP4 1.2.3.2") == .needMore)
        #expect(parse("PROXY TCP4 1.2.3.25") == .needMore)
        #expect(parse("PROXY TCP4 1.2.3.256") == .invalid(.v1BadField(.sourceAddress)))
        #expect(parse("PROXY TCP4 1.2.3.4 0") == .needMore)
        #expect(parse("PROXY TCP4 1.2.3.4 00") == .invalid(.v1BadField(.destinationAddress)))
        #expect(parse("PROXY TCP6 1:2:3:4:5:6:7:8:") == .invalid(.v1BadField(.sourceAddress)))
        #expect(parse("PROXY TCP6 ::1:") == .needMore)
        #expect(parse("PROXY TCP4 1.2.3.4 5.6.7.8 6553") == .needMore)
        #expect(parse("PROXY TCP4 1.2.3.4 5.6.7.8 65536") == .invalid(.v1BadField(.sourcePort)))
        #expect(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r") == .needMore)
    }

    @Test func everyPrefixOfAHeaderNeedsMore() {
        let lines =
            samples.map(encodeV1) + [
                Array("PROXY UNKNOWN ffff::1 ::2 3 4\r\n".utf8),
                Array("PROXY TCP6 ::ffff:198.18.7.9 1:2:3:4:5:6:7:: 1 2\r\n".utf8),
            ]
        for line in lines {
            for k in 0..<line.count {
                #expect(parse(Array(line[..<k])) == .needMore, "\(String(decoding: line[..<k], as: UTF8.self))")
            }
        }
    }

    @Test(arguments: samples)
    func roundTrip(addresses: ProxyAddresses) {
        let line = encodeV1(addresses)
        #expect(line.count <= ProxyProtocol.maxV1Length)
        // Payload after the line is not part of the header.
        #expect(parse(line + Array("payload".utf8)) == .header(length: line.count, version: 1, addresses: addresses))
    }

    /// RFC 4291 §2.2: the three text forms; output in RFC 5952 canonical form.
    @Test func ipv6TextForms() {
        let cases: [(String, IPv6Bits, String)] = [
            ("2001:DB8:0:0:0:0:0:1", doc6, "2001:db8::1"),
            ("2001:db8::1", doc6, "2001:db8::1"),
            ("0:0:0:0:0:0:0:1", loopback6, "::1"),
            ("::", IPv6Bits(hi: 0, lo: 0), "::"),
            ("1::", IPv6Bits(hi: 0x0001_0000_0000_0000, lo: 0), "1::"),
            ("1:2:3:4:5:6:7::", IPv6Bits(hi: 0x0001_0002_0003_0004, lo: 0x0005_0006_0007_0000), "1:2:3:4:5:6:7:0"),
            ("::2:3:4:5:6:7:8", IPv6Bits(hi: 0x0000_0002_0003_0004, lo: 0x0005_0006_0007_0008), "0:2:3:4:5:6:7:8"),
            ("1:0:0:2:0:0:0:3", IPv6Bits(hi: 0x0001_0000_0000_0002, lo: 0x0000_0000_0000_0003), "1:0:0:2::3"),
            ("1:0:0:2:0:0:3:4", IPv6Bits(hi: 0x0001_0000_0000_0002, lo: 0x0000_0000_0003_0004), "1::2:0:0:3:4"),
            ("::ffff:198.18.7.9", IPv6Bits(hi: 0, lo: 0x0000_ffff_c612_0709), "::ffff:c612:709"),
            (
                "1:2:3:4:5:6:1.2.3.4", IPv6Bits(hi: 0x0001_0002_0003_0004, lo: 0x0005_0006_0102_0304),
                "1:2:3:4:5:6:102:304"
            ),
            ("0001:0db8::", IPv6Bits(hi: 0x0001_0db8_0000_0000, lo: 0), "1:db8::"),
        ]
        for (text, bits, canonical) in cases {
            #expect(ipv6(text) == bits, "\(text)")
            #expect(ipv6Text(bits) == canonical)
        }
        for bad in [
            "", ":", ":1::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "1::2::3", ":::", "12345::",
            "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3", "::1.2.3.04", "::1.2.3.4:5", "g::", "1:", "::1:",
        ] {
            #expect(ipv6(bad) == nil, "\(bad)")
        }
    }

    /// The text parsers agree with glibc's inet_pton (which also refuses IPv4 leading zeros) on
    /// strings built from the pieces addresses are made of, and every prefix of an accepted one
    /// is partial.
    @Test func textParsersAgreeWithInetPton() {
        var state: UInt64 = 0x5eed  // a 64-bit LCG (Knuth's MMIX constants), so a failure replays
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        let pieces = [
            "0", "1", "ff", "FFFF", "0db8", "12345", "9", "255", "256", "01", "300", ":", ":", ":", "::", ".", ".",
            "1.2.3.4", "g",
        ]
        var accepted = (v4: 0, v6: 0)
        for _ in 0..<100_000 {
            let text = (0..<(1 + next() % 16)).map { _ in pieces[Int(next() % UInt64(pieces.count))] }.joined()
            var a6 = in6_addr()
            let glibc6 = inet_pton(AF_INET6, text, &a6) == 1
            if glibc6 { accepted.v6 += 1 }
            let ours6 = ipv6(text)
            #expect((ours6 != nil) == glibc6, "\(text)")
            if let ours6 {
                let expected = withUnsafeBytes(of: &a6) { IPv6Bits(hi: $0.be64(0), lo: $0.be64(8)) }
                #expect(ours6 == expected, "\(text)")
            }
            var a4 = in_addr()
            let glibc4 = inet_pton(AF_INET, text, &a4) == 1
            if glibc4 { accepted.v4 += 1 }
            let ours4 = Array(text.utf8).withUnsafeBytes { parseIPv4Text($0, true) }
            if case .value(let v) = ours4 {
                #expect(glibc4 && v == UInt32(bigEndian: a4.s_addr), "\(text)")
            } else {
                #expect(!glibc4, "\(text)")
            }
            let bytes = Array(text.utf8)
            for k in 0..<bytes.count where glibc4 || glibc6 {
                let prefix = Array(bytes[..<k])
                let partial6 = prefix.withUnsafeBytes { parseIPv6Text($0, false) }
                let partial4 = prefix.withUnsafeBytes { parseIPv4Text($0, false) }
                if glibc6, case .bad = partial6 { Issue.record("IPv6 prefix \(k) of \(text) refused") }
                if glibc4, case .bad = partial4 { Issue.record("IPv4 prefix \(k) of \(text) refused") }
            }
        }
        // Valid addresses must be common enough for the comparison to mean something.
        print("inet_pton accepted \(accepted.v6) IPv6 and \(accepted.v4) IPv4 of 100000 strings")
        #expect(accepted.v6 > 1000 && accepted.v4 > 100)
    }

    @Test func descriptions() {
        #expect(samples[1].description == "198.18.0.1:5000 -> 198.18.0.2:80")
        #expect(samples[3].description == "[2001:db8::1]:1 -> [::1]:443")
        #expect(ProxyAddresses.local.description == "local")
        #expect(ProxyError.v1BadField(.sourcePort).description == "PROXY v1: malformed source port")
    }
}

@Suite struct ProxyProtocolV2Tests {
    /// §2.2 layout written out by hand: signature, \x21 (v2, PROXY), \x11 (TCP over IPv4),
    /// length 12, then source, destination, source port, destination port.
    @Test func section2_2TCPOverIPv4Bytes() {
        let bytes =
            signature + [0x21, 0x11, 0x00, 0x0C, 198, 18, 0, 1, 198, 18, 0, 2, 0x13, 0x88, 0x00, 0x50]
        #expect(encodeV2(samples[1]) == bytes)
        #expect(parse(bytes + [0x47, 0x45, 0x54]) == .header(length: 28, version: 2, addresses: samples[1]))
        // \x12: UDP over IPv4, same addresses.
        var udp = bytes
        udp[13] = 0x12
        #expect(encodeV2(samples[1], stream: false) == udp)
        #expect(parse(udp) == .header(length: 28, version: 2, addresses: samples[1]))
    }

    /// \x21 (TCP over IPv6), length 36: 2001:db8::1 port 1 -> ::1 port 443.
    @Test func section2_2TCPOverIPv6Bytes() {
        let bytes =
            signature + [0x21, 0x21, 0x00, 0x24]
            + [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
            + [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1] + [0x00, 0x01, 0x01, 0xBB]
        #expect(encodeV2(samples[3]) == bytes)
        #expect(parse(bytes) == .header(length: 52, version: 2, addresses: samples[3]))
    }

    /// LOCAL: "the receiver must accept this connection as valid and must use the real
    /// connection endpoints and discard the protocol block including the family".
    @Test func section2_2Local() {
        let bytes = signature + [0x20, 0x00, 0x00, 0x00]
        #expect(encodeV2(.local) == bytes)
        #expect(parse(bytes) == .header(length: 16, version: 2, addresses: .local))
        // A LOCAL header with a family and a (short) block: the block is skipped, not read.
        let withBlock = signature + [0x20, 0x11, 0x00, 0x03, 1, 2, 3]
        #expect(parse(withBlock) == .header(length: 19, version: 2, addresses: .local))
    }

    /// AF_UNSPEC and AF_UNIX are accepted and reported as `.local`; AF_UNIX still needs its
    /// 216-byte block.
    @Test func section2_2UnspecAndUnix() {
        #expect(
            parse(signature + [0x21, 0x00, 0x00, 0x02, 9, 9]) == .header(length: 18, version: 2, addresses: .local))
        #expect(parse(signature + [0x21, 0x10, 0x00, 0x00]) == .header(length: 16, version: 2, addresses: .local))
        let unix = signature + [0x21, 0x31, 0x00, 0xD8] + [UInt8](repeating: 0x2F, count: 216)
        #expect(parse(unix) == .header(length: 232, version: 2, addresses: .local))
        #expect(parse(signature + [0x21, 0x32, 0x00, 0x10]) == .invalid(.lengthTooShort(declared: 16, needed: 216)))
    }

    @Test func section2_2BadVersionCommandFamily() {
        #expect(parse(signature + [0x11]) == .invalid(.badVersion(1)))
        #expect(parse(signature + [0x22]) == .invalid(.badCommand(2)))
        #expect(parse(signature + [0x21, 0x41]) == .invalid(.unsupportedFamily(0x41)))
        #expect(parse(signature + [0x21, 0x13]) == .invalid(.unsupportedFamily(0x13)))
        #expect(parse(signature + [0x21, 0x21, 0x00, 0x23]) == .invalid(.lengthTooShort(declared: 35, needed: 36)))
        #expect(parse(signature + [0x21, 0x11, 0x00, 0x0B]) == .invalid(.lengthTooShort(declared: 11, needed: 12)))
        var wrong = signature
        wrong[11] = 0x0B
        #expect(parse(wrong) == .invalid(.badSignature))
        #expect(parse(Array(signature[..<5]) + [0x0D]) == .needMore)
        #expect(parse(Array(signature[..<5]) + [0x0A]) == .invalid(.badSignature))
    }

    /// §2.2.x: TLVs after the addresses are skipped but must tile the declared length.
    @Test func section2_2TLVs() {
        let addresses = Array(encodeV2(samples[1])[16...])
        let tlvs: [UInt8] = [0x04, 0x00, 0x02, 0xAA, 0xBB, 0x05, 0x00, 0x00, 0xE0, 0x00, 0x01, 0x7F]
        let header = signature + [0x21, 0x11, 0x00, UInt8(12 + tlvs.count)] + addresses + tlvs
        #expect(parse(header + [1, 2, 3]) == .header(length: 40, version: 2, addresses: samples[1]))
        for k in 0..<header.count { #expect(parse(Array(header[..<k])) == .needMore) }

        // A TLV longer than what is left of the header, refused as soon as its length arrives.
        let overrun = signature + [0x21, 0x11, 0x00, 12 + 5] + addresses + [0x04, 0x00, 0x03, 0xAA, 0xBB]
        #expect(parse(overrun) == .invalid(.tlvOverrun))
        #expect(parse(Array(overrun[..<(28 + 3)])) == .invalid(.tlvOverrun))
        #expect(parse(Array(overrun[..<(28 + 2)])) == .needMore)
        // One or two bytes cannot hold a TLV.
        let stray = signature + [0x21, 0x11, 0x00, 12 + 2] + addresses + [0x04, 0x00]
        #expect(parse(stray) == .invalid(.tlvOverrun))
    }

    @Test(arguments: samples)
    func roundTrip(addresses: ProxyAddresses) {
        for stream in [true, false] {
            let header = encodeV2(addresses, stream: stream)
            #expect(header.count <= ProxyProtocol.maxEncodedLength)
            #expect(parse(header + [0xFF]) == .header(length: header.count, version: 2, addresses: addresses))
            for k in 0..<header.count { #expect(parse(Array(header[..<k])) == .needMore) }
        }
    }
}

private func ipv6(_ text: String) -> IPv6Bits? {
    guard case .value(let bits) = Array(text.utf8).withUnsafeBytes({ parseIPv6Text($0, true) }) else { return nil }
    return bits
}

private func ipv6Text(_ bits: IPv6Bits) -> String {
    var buffer = [UInt8](repeating: 0, count: 64)
    let n = buffer.withUnsafeMutableBytes { raw in
        var w = ProxyTextWriter(raw)
        w.ipv6(bits)
        return w.count
    }
    return String(decoding: buffer[..<n], as: UTF8.self)
}
