// VXLAN header (RFC 7348 §5): 8 bytes in front of the inner Ethernet frame, carried in UDP
// (IANA port 4789).
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   |R|R|R|R|I|R|R|R|            Reserved                           |
//   |                VXLAN Network Identifier (VNI) |   Reserved    |
//
// The I flag must be 1; receivers ignore the reserved bits (RFC 7348 §5), which is what the
// Linux kernel's VXLAN device does too, so `parse` accepts any reserved bits.

package enum VXLAN {
    /// RFC 7348 §5: the header is 8 octets.
    package static let headerBytes = 8
    /// IANA-assigned UDP destination port (RFC 7348 §5).
    package static let udpPort: UInt16 = 4789
    /// The I flag: "VNI valid" (RFC 7348 §5).
    package static let flagVNIValid: UInt8 = 0x08
    /// VNIs are 24 bits.
    package static let maxVNI: UInt32 = 0xFF_FFFF
    /// Smallest frame the overlay carries: an Ethernet header (14 octets).
    package static let minInnerFrameBytes = 14

    /// Writes the 8-byte header for `vni` at `offset`.
    @inline(__always)
    package static func write(vni: UInt32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
        precondition(vni <= maxVNI && offset >= 0 && offset + headerBytes <= buffer.count)
        buffer.setBE32(offset, UInt32(flagVNIValid) << 24)
        buffer.setBE32(offset + 4, vni << 8)
    }

    /// The VNI of a VXLAN packet (header + inner frame), or nil when it is shorter than a header
    /// plus an Ethernet header, or the I flag is clear.
    @inline(__always)
    package static func parse(_ packet: UnsafeRawBufferPointer) -> UInt32? {
        guard packet.count >= headerBytes + minInnerFrameBytes else { return nil }
        guard packet[0] & flagVNIValid != 0 else { return nil }
        return packet.be32(4) >> 8
    }
}
