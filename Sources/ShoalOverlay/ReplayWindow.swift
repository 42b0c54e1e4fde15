// Anti-replay window for 64-bit extended sequence numbers (RFC 4303 §3.4.3 and Appendix A),
// kept as a ring of 64-bit blocks (RFC 6479) so sliding is a few word stores, never a shift
// of the whole bitmap.
//
// Contract: `check` before decrypting (cheap rejection of replays and stale packets), `accept`
// only after the ICV verified (RFC 4303 §3.4.3: the window must not move on forged packets).
// `inferSequence` rebuilds the 64-bit number from the 32 low bits on the wire (Appendix A2.2).
// Not thread-safe: one window per receive SA, used by the thread that opens its packets.

package struct ReplayWindow: Sendable {
    /// Ring size in 64-bit blocks (power of two).
    package static let blocks = 64
    /// Bits in the ring.
    package static let bitmapBits = blocks * 64
    /// Packets behind the highest seen that can still be accepted: one block is the slack
    /// RFC 6479 reserves so a slide never clears a live bit.
    package static let windowPackets = bitmapBits - 64

    /// Highest authenticated sequence number (0: none yet; ESP numbers start at 1).
    package private(set) var top: UInt64 = 0
    private var bitmap = [UInt64](repeating: 0, count: blocks)

    package init() {}

    /// Rebuilds the full 64-bit sequence number from its low 32 bits (RFC 4303 Appendix A2.2),
    /// or nil when it would fall before the first sequence number (high bits below zero).
    package func inferSequence(low: UInt32) -> UInt64? {
        let w = UInt32(Self.windowPackets)
        let tl = UInt32(truncatingIfNeeded: top)
        let th = UInt32(truncatingIfNeeded: top >> 32)
        let bottom = tl &- w &+ 1
        var seqh = th
        if tl >= w - 1 {
            // Case A: the window lies within one 2^32 block of sequence space.
            if low < bottom { seqh = th &+ 1 }
        } else {
            // Case B: the window spans two blocks; low numbers high in the space are from the
            // previous block.
            if low >= bottom {
                guard th > 0 else { return nil }
                seqh = th - 1
            }
        }
        return UInt64(seqh) << 32 | UInt64(low)
    }

    /// True when `seq` is new and inside the window (not yet seen, not too old).
    @inline(__always)
    package func check(_ seq: UInt64) -> Bool {
        if seq == 0 { return false }
        if seq > top { return true }
        if top - seq >= UInt64(Self.windowPackets) { return false }
        let bit = Int(truncatingIfNeeded: seq) & (Self.bitmapBits - 1)
        return bitmap[bit >> 6] & (1 << UInt64(bit & 63)) == 0
    }

    /// Records an authenticated `seq`; returns false (and changes nothing) for a replay.
    @discardableResult
    package mutating func accept(_ seq: UInt64) -> Bool {
        guard check(seq) else { return false }
        if seq > top {
            let oldBlock = top >> 6
            let newBlock = seq >> 6
            let toClear = min(newBlock - oldBlock, UInt64(Self.blocks))
            var b = oldBlock
            for _ in 0..<toClear {
                b &+= 1
                bitmap[Int(b & UInt64(Self.blocks - 1))] = 0
            }
            top = seq
        }
        let bit = Int(truncatingIfNeeded: seq) & (Self.bitmapBits - 1)
        bitmap[bit >> 6] |= 1 << UInt64(bit & 63)
        return true
    }
}
