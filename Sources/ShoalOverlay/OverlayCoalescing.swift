// Receive-side TCP coalescing (the VTEP's GRO): consecutive TCP/IPv4 segments of one flow,
// decapsulated from one batch of datagrams, are merged into one superframe written to the TAP
// with a virtio_net_hdr asking for segmentation offload (gso_type TCPV4, NEEDS_CSUM), so the
// kernel moves one 64 KiB packet through bridge, veth and the task's TCP stack instead of 45.
//
// Segments merge when everything but the IPv4 length/id/checksum, the TCP sequence, PSH and
// the TCP checksum is identical, the sequence continues the superframe, and every segment but
// the last carries exactly the first one's payload size (the MSS). Plaintext segments are merged
// only if their TCP checksum verifies (what a NIC's GRO does); ESP segments were authenticated.
//
// Contract: one `TCPCoalescer` per network, owned by the VTEP thread; `flush` before the batch
// ends and before any other frame of the network is written, so order is kept.

import CShoal

#if canImport(Glibc)
    import Glibc
#endif

package final class TCPCoalescer {
    private static let capacity = 65536 + 256
    /// IPv4 total length must stay within 16 bits.
    private static let maxIPBytes = 65000
    private let buffer: UnsafeMutableRawPointer
    /// Bytes of the superframe (after the virtio_net_hdr); 0 when empty.
    private var length = 0
    private var l4Start = 0
    private var headerLength = 0
    private var mss = 0
    private var segments = 0
    private var nextSeq: UInt32 = 0
    private var closed = false
    private var verified = false

    package init() { buffer = .allocate(byteCount: Self.capacity, alignment: 64) }
    deinit { buffer.deallocate() }

    package var isEmpty: Bool { length == 0 }

    /// Offers a frame; true if it was taken (merged or started a superframe), false if the
    /// caller must write it itself (after `flush`).
    @inline(__always)
    package func offer(_ f: UnsafeRawBufferPointer, trusted: Bool) -> Bool {
        // TCP over IPv4, not a fragment, no padding, with payload and only ACK/PSH set.
        guard f.count >= 14 + 20 + 20, f[12] == 0x08, f[13] == 0x00, f[14] >> 4 == 4, f[23] == 6 else { return false }
        let ihl = Int(f[14] & 0x0F) * 4
        let total = Int(f[16]) << 8 | Int(f[17])
        guard ihl >= 20, total == f.count - 14, f[20] & 0x3F == 0, f[21] == 0 else { return false }
        let l4 = 14 + ihl
        guard f.count >= l4 + 20 else { return false }
        let hdr = l4 + Int(f[l4 + 12] >> 4) * 4
        let flags = f[l4 + 13]
        guard hdr >= l4 + 20, f.count > hdr, flags & ~UInt8(0x18) == 0 else { return false }
        let payload = f.count - hdr
        if !trusted {
            var acc = shoal_csum_add(f.baseAddress! + 26, 8, 0)
            var w = (UInt32(6) << 16 | UInt32(f.count - l4)).bigEndian
            acc = shoal_csum_add(&w, 4, acc)
            acc = shoal_csum_add(f.baseAddress! + l4, f.count - l4, acc)
            guard shoal_csum_fold(acc) == 0 else { return false }
        }
        let seq = UInt32(f[l4 + 4]) << 24 | UInt32(f[l4 + 5]) << 16 | UInt32(f[l4 + 6]) << 8 | UInt32(f[l4 + 7])
        if length > 0 {
            if !closed, hdr == headerLength, l4 == l4Start, seq == nextSeq, payload <= mss,
                length + payload - 14 <= Self.maxIPBytes, sameFlow(f)
            {
                let frame = buffer + VirtioNetHeader.bytes
                (frame + length).copyMemory(from: f.baseAddress! + hdr, byteCount: payload)
                length += payload
                segments += 1
                nextSeq = seq &+ UInt32(payload)
                frame.storeBytes(
                    of: frame.load(fromByteOffset: l4 + 13, as: UInt8.self) | flags, toByteOffset: l4 + 13,
                    as: UInt8.self)
                if payload < mss { closed = true }
                return true
            }
            return false  // the caller flushes, then offers again
        }
        (buffer + VirtioNetHeader.bytes).copyMemory(from: f.baseAddress!, byteCount: f.count)
        length = f.count
        l4Start = l4
        headerLength = hdr
        mss = payload
        segments = 1
        nextSeq = seq &+ UInt32(payload)
        closed = false
        verified = true
        return true
    }

    /// Header bytes that must match, skipping IPv4 total length, id and checksum, the TCP
    /// sequence, flags and checksum.
    @inline(__always)
    private func sameFlow(_ f: UnsafeRawBufferPointer) -> Bool {
        let a = UnsafeRawPointer(buffer + VirtioNetHeader.bytes)
        let b = f.baseAddress!
        let l4 = l4Start
        return memcmp(a, b, 16) == 0 && memcmp(a + 20, b + 20, 4) == 0 && memcmp(a + 26, b + 26, l4 + 4 - 26) == 0
            && memcmp(a + l4 + 8, b + l4 + 8, 5) == 0 && memcmp(a + l4 + 14, b + l4 + 14, 2) == 0
            && memcmp(a + l4 + 18, b + l4 + 18, headerLength - l4 - 18) == 0
    }

    /// Writes the pending superframe (or single frame) to `fd`; returns false if the write failed.
    @inline(__always)
    package func flush(to fd: CInt) -> Bool {
        guard length > 0 else { return true }
        let frame = buffer + VirtioNetHeader.bytes
        defer { length = 0 }
        if segments == 1 {
            VirtioNetHeader.writePlain(buffer, flags: verified ? VirtioNetHeader.flagDataValid : 0)
        } else {
            let ihl = l4Start - 14
            let ipTotal = length - 14
            frame.storeBytes(of: UInt16(ipTotal).bigEndian, toByteOffset: 16, as: UInt16.self)
            frame.storeBytes(of: 0, toByteOffset: 24, as: UInt16.self)
            frame.storeBytes(of: shoal_csum_fold(shoal_csum_add(frame + 14, ihl, 0)), toByteOffset: 24, as: UInt16.self)
            // NEEDS_CSUM: the TCP checksum field holds the pseudo-header sum, not complemented.
            var acc = shoal_csum_add(frame + 26, 8, 0)
            var w = (UInt32(6) << 16 | UInt32(length - l4Start)).bigEndian
            acc = shoal_csum_add(&w, 4, acc)
            frame.storeBytes(of: ~shoal_csum_fold(acc), toByteOffset: l4Start + 16, as: UInt16.self)
            buffer.storeBytes(of: VirtioNetHeader.flagNeedsChecksum, as: UInt8.self)
            buffer.storeBytes(of: VirtioNetHeader.gsoTCPv4, toByteOffset: 1, as: UInt8.self)
            buffer.storeBytes(of: UInt16(headerLength).littleEndian, toByteOffset: 2, as: UInt16.self)
            buffer.storeBytes(of: UInt16(mss).littleEndian, toByteOffset: 4, as: UInt16.self)
            buffer.storeBytes(of: UInt16(l4Start).littleEndian, toByteOffset: 6, as: UInt16.self)
            buffer.storeBytes(of: UInt16(16).littleEndian, toByteOffset: 8, as: UInt16.self)
        }
        let total = VirtioNetHeader.bytes + length
        return Glibc.write(fd, buffer, total) == total
    }
}
