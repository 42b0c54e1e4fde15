// PROXY protocol (HAProxy, proxy-protocol.txt, versions 1 and 2): the header a proxy puts in
// front of a relayed TCP stream to tell the server who the client really was.
//
//   v1: "PROXY TCP4 198.18.0.1 198.18.0.2 5000 80\r\n"        text, ≤ 107 bytes (§2.1)
//   v2: sig(12) | ver·cmd | fam·proto | len(2) | addresses | TLVs   binary, 16 + len (§2.2)
//
// `ProxyProtocol.parse` is called on the first bytes of a connection, again each time more
// arrive, until it answers `.header` (the stream's payload starts at `length`) or `.invalid`
// (drop the connection). It answers `.needMore` only while the bytes seen so far can still
// begin a valid header, so a client speaking anything else is refused at its first wrong byte
// instead of after a timeout (§2.1: "abort the connection as soon as possible"). It never
// allocates and never reads past the header. The encoders write into the caller's buffer.
//
// Split: this file holds the types and the version dispatch; ProxyProtocolV1.swift the text
// form (and the IPv4/IPv6 text codec it needs), ProxyProtocolV2.swift the binary form.

/// An IPv6 address as two host-order 64-bit halves (`hi` holds the first 8 octets).
package struct IPv6Bits: Hashable, Sendable {
    package var hi: UInt64
    package var lo: UInt64

    package init(hi: UInt64, lo: UInt64) {
        self.hi = hi
        self.lo = lo
    }
}

/// What a PROXY header says about the relayed connection. Integers are in host byte order.
package enum ProxyAddresses: Hashable, Sendable, CustomStringConvertible {
    /// No addresses: v2 LOCAL, v2 AF_UNSPEC/AF_UNIX, or v1 UNKNOWN. Use the real endpoints.
    case local
    case ipv4(source: UInt32, destination: UInt32, sourcePort: UInt16, destinationPort: UInt16)
    case ipv6(source: IPv6Bits, destination: IPv6Bits, sourcePort: UInt16, destinationPort: UInt16)

    /// "198.18.0.1:5000 -> 198.18.0.2:80", "[2001:db8::1]:5000 -> [::1]:80", or "local".
    package var description: String {
        withUnsafeTemporaryAllocation(byteCount: 128, alignment: 1) { buffer in
            var w = ProxyTextWriter(buffer)
            switch self {
            case .local:
                w.ascii("local")
            case .ipv4(let s, let d, let sp, let dp):
                w.ipv4(s)
                w.port(sp, after: ":")
                w.ascii(" -> ")
                w.ipv4(d)
                w.port(dp, after: ":")
            case .ipv6(let s, let d, let sp, let dp):
                w.byte(UInt8(ascii: "["))
                w.ipv6(s)
                w.port(sp, after: "]:")
                w.ascii(" -> [")
                w.ipv6(d)
                w.port(dp, after: "]:")
            }
            return String(decoding: UnsafeRawBufferPointer(rebasing: buffer[..<w.count]), as: UTF8.self)
        }
    }
}

/// Why bytes cannot be (the start of) a PROXY header. Every case is a reason to drop the
/// connection (§2.1, §2.2: receivers "must drop connections presenting unexpected values").
package enum ProxyError: Hashable, Sendable, CustomStringConvertible {
    /// Neither "PROXY " (v1) nor the 12-byte v2 signature.
    case badSignature
    /// v2: the version nibble is not 2.
    case badVersion(UInt8)
    /// v2: the command nibble is neither LOCAL (0) nor PROXY (1).
    case badCommand(UInt8)
    /// v2: an address family above AF_UNIX (3) or a transport above DGRAM (2).
    case unsupportedFamily(UInt8)
    /// v2: the length field is shorter than the address block of the announced family.
    case lengthTooShort(declared: Int, needed: Int)
    /// v2: a TLV runs past the header's declared length.
    case tlvOverrun
    /// v1: no CRLF within the first 107 bytes.
    case v1LineTooLong
    /// v1: a field is malformed (a single space between fields, no leading zeros, …).
    case v1BadField(ProxyV1Field)

    package var description: String {
        switch self {
        case .badSignature: "not a PROXY protocol header (neither \"PROXY \" nor the v2 signature)"
        case .badVersion(let v): "PROXY v2: version \(v), only 2 is defined"
        case .badCommand(let c): "PROXY v2: command \(c), only LOCAL (0) and PROXY (1) are defined"
        case .unsupportedFamily(let f): "PROXY v2: family/protocol byte \(f) is not defined by the spec"
        case .lengthTooShort(let declared, let needed):
            "PROXY v2: length \(declared) is shorter than the \(needed)-byte address block of its family"
        case .tlvOverrun: "PROXY v2: a TLV runs past the header length"
        case .v1LineTooLong: "PROXY v1: no CRLF within the first \(ProxyProtocol.maxV1Length) bytes"
        case .v1BadField(let f): "PROXY v1: malformed \(f)"
        }
    }
}

/// The fields of a v1 line, to say which one is malformed.
package enum ProxyV1Field: Hashable, Sendable, CustomStringConvertible {
    case proto, sourceAddress, destinationAddress, sourcePort, destinationPort, lineEnd

    package var description: String {
        switch self {
        case .proto: "protocol (TCP4, TCP6 or UNKNOWN followed by one space)"
        case .sourceAddress: "source address"
        case .destinationAddress: "destination address"
        case .sourcePort: "source port"
        case .destinationPort: "destination port"
        case .lineEnd: "line end (CRLF expected)"
        }
    }
}

/// The answer to "do these first bytes of a connection hold a PROXY header?".
package enum ProxyParse: Hashable, Sendable {
    /// A valid prefix of a header so far: read more and call again.
    case needMore
    /// Cannot be a header whatever follows: drop the connection.
    case invalid(ProxyError)
    /// A complete header of `length` bytes (the payload follows it), `version` 1 or 2.
    case header(length: Int, version: Int, addresses: ProxyAddresses)
}

package enum ProxyProtocol {
    /// §2.1: the longest v1 line a receiver must accept, CRLF included.
    package static let maxV1Length = 107
    /// The longest header `encodeV1`/`encodeV2` write (v2 with IPv6 addresses: 16 + 36).
    package static let maxEncodedLength = 52

    /// Parses the header at the start of `bytes` (the first bytes of a connection, possibly
    /// partial). Reads at most the header's bytes; whatever follows is payload.
    package static func parse(_ bytes: UnsafeRawBufferPointer) -> ProxyParse {
        guard bytes.count > 0 else { return .needMore }
        // The first byte tells the versions apart: 'P' (v1) or CR (v2 signature).
        switch bytes[0] {
        case v1Prefix.utf8Start[0]: return parseV1(bytes)
        case v2Signature.utf8Start[0]: return parseV2(bytes)
        default: return .invalid(.badSignature)
        }
    }

    /// How many leading bytes of `bytes` match `literal`: `literal.utf8CodeUnitCount` when all
    /// of it is there, fewer when `bytes` ends early, nil on the first mismatch.
    static func matchPrefix(_ bytes: UnsafeRawBufferPointer, from start: Int, _ literal: StaticString) -> Int? {
        let n = min(literal.utf8CodeUnitCount, bytes.count - start)
        for i in 0..<n where bytes[start + i] != literal.utf8Start[i] {
            return nil
        }
        return n
    }
}

/// Appends ASCII to a caller's buffer; traps when the buffer is too small (a caller bug: the
/// encoders document the size they need).
struct ProxyTextWriter {
    let buffer: UnsafeMutableRawBufferPointer
    private(set) var count = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

    mutating func byte(_ b: UInt8) {
        precondition(count < buffer.count, "PROXY header buffer too small")
        buffer[count] = b
        count += 1
    }

    mutating func ascii(_ s: StaticString) {
        for i in 0..<s.utf8CodeUnitCount { byte(s.utf8Start[i]) }
    }

    /// Decimal without leading zeros.
    mutating func decimal(_ v: UInt32) {
        var divisor: UInt32 = 1
        while v / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            byte(UInt8(ascii: "0") + UInt8(v / divisor % 10))
            divisor /= 10
        }
    }

    mutating func port(_ p: UInt16, after separator: StaticString) {
        ascii(separator)
        decimal(UInt32(p))
    }

    /// Dotted quad (§2.1: no leading zeros).
    mutating func ipv4(_ a: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) {
            decimal(a >> UInt32(shift) & 0xFF)
            if shift > 0 { byte(UInt8(ascii: ".")) }
        }
    }

    /// RFC 5952 canonical text: lowercase hex without leading zeros, the longest run (the
    /// first of equals) of two or more zero groups written "::".
    mutating func ipv6(_ a: IPv6Bits) {
        func group(_ i: Int) -> UInt16 {
            UInt16(truncatingIfNeeded: (i < 4 ? a.hi : a.lo) >> UInt64(48 - 16 * (i % 4)))
        }
        var bestStart = -1
        var bestLength = 1
        var i = 0
        while i < 8 {
            guard group(i) == 0 else {
                i += 1
                continue
            }
            var j = i
            while j < 8 && group(j) == 0 { j += 1 }
            if j - i > bestLength { (bestStart, bestLength) = (i, j - i) }
            i = j
        }
        i = 0
        while i < 8 {
            if i == bestStart {
                ascii("::")
                i += bestLength
                continue
            }
            if i > 0 && i != bestStart + bestLength { byte(UInt8(ascii: ":")) }
            hex(group(i))
            i += 1
        }
    }

    private mutating func hex(_ g: UInt16) {
        var shift = 12
        while shift > 0 && g >> UInt16(shift) == 0 { shift -= 4 }
        while shift >= 0 {
            let nibble = UInt8(g >> UInt16(shift) & 0xF)
            byte(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
            shift -= 4
        }
    }
}
