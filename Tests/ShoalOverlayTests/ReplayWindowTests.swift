import Testing

@testable import ShoalOverlay

/// The obvious implementation: every accepted number in a set. Slow, clearly right.
private struct NaiveReplayWindow {
    var top: UInt64 = 0
    var seen = Set<UInt64>()
    let width = UInt64(ReplayWindow.windowPackets)

    func check(_ seq: UInt64) -> Bool {
        if seq == 0 { return false }
        if seq > top { return true }
        if top - seq >= width { return false }
        return !seen.contains(seq)
    }

    mutating func accept(_ seq: UInt64) -> Bool {
        guard check(seq) else { return false }
        top = max(top, seq)
        seen.insert(seq)
        return true
    }
}

/// A tiny deterministic generator so failures replay.
private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct ReplayWindowTests {
    /// RFC 4303 §3.4.3: the window is at least 1024 packets wide (Shoal: 4032).
    @Test func rfc4303WindowIsAtLeast1024Packets() {
        #expect(ReplayWindow.windowPackets >= 1024)
        var w = ReplayWindow()
        let edge = 5000 - UInt64(ReplayWindow.windowPackets)
        let results = [w.accept(5000), w.accept(edge + 1), w.accept(edge), w.accept(5000), w.accept(0)]
        #expect(results == [true, true, false, false, false])
    }

    /// Differential test against the naive twin over reordered, duplicated and jumping streams.
    @Test(arguments: [1, 2, 3, 42, 1234])
    func matchesNaiveTwin(seed: UInt64) {
        var rng = SplitMix(state: seed)
        var fast = ReplayWindow()
        var naive = NaiveReplayWindow()
        var next: UInt64 = 1
        for step in 0..<50_000 {
            let r = rng.next() % 100
            let seq: UInt64
            switch r {
            case 0..<60:
                seq = next
                next += 1
            case 60..<80: seq = next > 64 ? next - rng.next() % 64 : next  // reorder
            case 80..<90: seq = next > 5000 ? next - rng.next() % 5000 : 1  // near and beyond the edge
            case 90..<98:
                next += rng.next() % 3000  // jump ahead (loss)
                seq = next
            default:
                next += rng.next() % 200_000  // big jump: clears the whole ring
                seq = next
            }
            #expect(fast.check(seq) == naive.check(seq), "check(\(seq)) at step \(step), seed \(seed)")
            let (f, n) = (fast.accept(seq), naive.accept(seq))
            #expect(f == n, "accept(\(seq)) at step \(step), seed \(seed)")
            #expect(fast.top == naive.top)
        }
    }

    /// RFC 4303 Appendix A2.2: the high 32 bits are inferred across the 2^32 boundary.
    @Test func rfc4303AppendixA2InfersHighBitsAcrossWrap() {
        var w = ReplayWindow()
        let nearWrap: UInt64 = (1 << 32) - 10
        w.accept(nearWrap - 100)
        #expect(w.inferSequence(low: UInt32(truncatingIfNeeded: nearWrap)) == nearWrap)
        w.accept(nearWrap)
        // Just past the wrap: high bits advance.
        #expect(w.inferSequence(low: 5) == (1 << 32) + 5)
        w.accept((1 << 32) + 5)
        // A late packet from before the wrap: high bits go back (case B).
        #expect(w.inferSequence(low: UInt32(truncatingIfNeeded: nearWrap + 3)) == nearWrap + 3)
        // Before any packet, numbers high in the space would precede 1: refused.
        #expect(ReplayWindow().inferSequence(low: UInt32.max) == nil)
    }
}
