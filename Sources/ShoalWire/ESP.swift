// ESP (RFC 4303) with AES-GCM (RFC 4106) in UDP encapsulation (RFC 3948): spec constants.
//
//   UDP 4500 | SPI (4) | Sequence Number low 32 (4) | IV (8) | ciphertext ... | ICV (16)
//   ciphertext = payload | padding (0-3) | Pad Length (1) | Next Header (1)
//
// With extended sequence numbers (RFC 4303 §2.2.1) only the low 32 bits travel; the high 32
// are authenticated through the AAD: SPI | ESN high | ESN low (RFC 4106 §5).

package enum ESP {
    /// SPI + sequence number (RFC 4303 §2).
    package static let headerBytes = 8
    /// Explicit IV for AES-GCM (RFC 4106 §3.1).
    package static let ivBytes = 8
    /// Salt prepended to the IV to form the 12-byte nonce (RFC 4106 §4).
    package static let saltBytes = 4
    /// ICV length used by Shoal (RFC 4106 §6 allows 8, 12, 16).
    package static let icvBytes = 16
    /// Pad Length + Next Header (RFC 4303 §2.4, §2.6).
    package static let trailerBytes = 2
    /// The ciphertext (payload + padding + trailer) is 4-octet aligned (RFC 4303 §2.4).
    package static let alignment = 4
    /// AAD with extended sequence numbers: SPI | ESN high | ESN low (RFC 4106 §5).
    package static let aadBytesESN = 12
    /// UDP-encapsulated ESP port (RFC 3948 §2.1).
    package static let udpEncapsulationPort: UInt16 = 4500
    /// SPI values 1-255 are reserved by IANA; 0 is the non-ESP marker in UDP 4500 (RFC 3948 §2.2).
    package static let minSPI: UInt32 = 256
    /// IP protocol number of UDP: the Next Header of the payload Shoal protects.
    package static let nextHeaderUDP: UInt8 = 17
    /// Smallest valid packet: header, IV, a trailer's worth of (aligned) ciphertext, ICV.
    package static let minPacketBytes = headerBytes + ivBytes + alignment + icvBytes

    /// SPI of a received ESP packet, nil when too short to be one or the non-ESP marker.
    @inline(__always)
    package static func spi(_ packet: UnsafeRawBufferPointer) -> UInt32? {
        guard packet.count >= minPacketBytes else { return nil }
        let spi = packet.be32(0)
        return spi == 0 ? nil : spi
    }
}
