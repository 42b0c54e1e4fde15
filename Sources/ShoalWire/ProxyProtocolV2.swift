// PROXY protocol v2 (proxy-protocol.txt §2.2): binary.
//
//   0                12        13          14     16
//   | signature (12) | ver·cmd | fam·proto | len  | addresses | TLVs ... |   16 + len bytes
//
//   addresses: AF_INET  src(4) dst(4) sport(2) dport(2)       12
//              AF_INET6 src(16) dst(16) sport(2) dport(2)     36
//              AF_UNIX  src(108) dst(108)                     216
//   TLV:       type(1) length(2) value(length)
//
// Accepted: version 2; LOCAL (addresses ignored, whatever the family) or PROXY; families
// UNSPEC, INET, INET6, UNIX with transports UNSPEC, STREAM, DGRAM. UNSPEC (either nibble) and
// UNIX are reported as `.local`: Shoal forwards IP addresses only (§2.2 lets a receiver fall
// back to UNSPEC for combinations it does not implement). With PROXY over INET, INET6 or UNIX
// the length must cover the address block and the TLVs after it must tile the rest exactly;
// TLV contents are skipped. Each check runs as soon as its bytes have arrived.

extension ProxyProtocol {
    /// §2.2: the first 12 bytes of every v2 header.
    static let v2Signature: StaticString = "\r\n\r\n\0\r\nQUIT\n"
    /// Signature, version·command, family·protocol, length.
    static let v2FixedBytes = 16
    static let v2Version: UInt8 = 0x2
    static let v2CommandLocal: UInt8 = 0x0
    static let v2CommandProxy: UInt8 = 0x1
    static let v2FamilyInet: UInt8 = 0x1
    static let v2FamilyInet6: UInt8 = 0x2
    static let v2FamilyUnix: UInt8 = 0x3
    static let v2TransportStream: UInt8 = 0x1
    static let v2TransportDgram: UInt8 = 0x2
    /// Address block lengths by family (UNSPEC, INET, INET6, UNIX).
    static let v2AddressBytesIPv4 = 12
    static let v2AddressBytesIPv6 = 36
    static let v2AddressBytesUnix = 216
    /// A TLV's type and length.
    static let v2TLVHeaderBytes = 3

    /// Writes the v2 header for `addresses` (PROXY over STREAM or DGRAM; `.local` as LOCAL
    /// with no address block); returns its length, 16, 28 or 52. Traps if `buffer` is shorter.
    package static func encodeV2(
        _ addresses: ProxyAddresses, stream: Bool, into buffer: UnsafeMutableRawBufferPointer
    ) -> Int {
        let transport = stream ? v2TransportStream : v2TransportDgram
        let (command, family, addressBytes): (UInt8, UInt8, Int) =
            switch addresses {
            case .local: (v2CommandLocal, 0, 0)
            case .ipv4: (v2CommandProxy, v2FamilyInet << 4 | transport, v2AddressBytesIPv4)
            case .ipv6: (v2CommandProxy, v2FamilyInet6 << 4 | transport, v2AddressBytesIPv6)
            }
        let length = v2FixedBytes + addressBytes
        precondition(buffer.count >= length, "PROXY header buffer too small")
        for i in 0..<v2Signature.utf8CodeUnitCount { buffer[i] = v2Signature.utf8Start[i] }
        buffer[12] = v2Version << 4 | command
        buffer[13] = family
        buffer.setBE16(14, UInt16(addressBytes))
        switch addresses {
        case .local:
            break
        case .ipv4(let s, let d, let sp, let dp):
            buffer.setBE32(16, s)
            buffer.setBE32(20, d)
            buffer.setBE16(24, sp)
            buffer.setBE16(26, dp)
        case .ipv6(let s, let d, let sp, let dp):
            buffer.setBE64(16, s.hi)
            buffer.setBE64(24, s.lo)
            buffer.setBE64(32, d.hi)
            buffer.setBE64(40, d.lo)
            buffer.setBE16(48, sp)
            buffer.setBE16(50, dp)
        }
        return length
    }

    static func parseV2(_ bytes: UnsafeRawBufferPointer) -> ProxyParse {
        guard matchPrefix(bytes, from: 0, v2Signature) != nil else { return .invalid(.badSignature) }
        guard bytes.count > 12 else { return .needMore }
        let version = bytes[12] >> 4
        let command = bytes[12] & 0xF
        guard version == v2Version else { return .invalid(.badVersion(version)) }
        guard command == v2CommandLocal || command == v2CommandProxy else { return .invalid(.badCommand(command)) }
        guard bytes.count > 13 else { return .needMore }
        let family = bytes[13] >> 4
        let transport = bytes[13] & 0xF
        guard family <= v2FamilyUnix && transport <= v2TransportDgram else {
            return .invalid(.unsupportedFamily(bytes[13]))
        }
        guard bytes.count >= v2FixedBytes else { return .needMore }
        let declared = Int(bytes.be16(14))
        let length = v2FixedBytes + declared

        // The address block, when the header carries one we read.
        let proxied = command == v2CommandProxy && transport != 0
        let addressBytes: Int =
            switch proxied ? family : 0 {
            case v2FamilyInet: v2AddressBytesIPv4
            case v2FamilyInet6: v2AddressBytesIPv6
            case v2FamilyUnix: v2AddressBytesUnix
            default: 0
            }
        guard declared >= addressBytes else {
            return .invalid(.lengthTooShort(declared: declared, needed: addressBytes))
        }
        if addressBytes > 0 {
            // TLVs must tile [16 + addresses, length): walk those that have arrived.
            let available = min(bytes.count, length)
            var offset = v2FixedBytes + addressBytes
            while offset + v2TLVHeaderBytes <= available {
                offset += v2TLVHeaderBytes + Int(bytes.be16(offset + 1))
                guard offset <= length else { return .invalid(.tlvOverrun) }
            }
            // One or two bytes left over cannot hold a TLV header.
            guard available < length || offset == length else { return .invalid(.tlvOverrun) }
        }
        guard bytes.count >= length else { return .needMore }

        let addresses: ProxyAddresses =
            switch addressBytes {
            case v2AddressBytesIPv4:
                .ipv4(
                    source: bytes.be32(16), destination: bytes.be32(20),
                    sourcePort: bytes.be16(24), destinationPort: bytes.be16(26))
            case v2AddressBytesIPv6:
                .ipv6(
                    source: IPv6Bits(hi: bytes.be64(16), lo: bytes.be64(24)),
                    destination: IPv6Bits(hi: bytes.be64(32), lo: bytes.be64(40)),
                    sourcePort: bytes.be16(48), destinationPort: bytes.be16(50))
            default:
                .local
            }
        return .header(length: length, version: 2, addresses: addresses)
    }
}
