// Maglev consistent hashing (Eisenbud et al., NSDI 2016) on the client address: a lookup table
// of a prime size M in which each task owns entries in proportion to its weight. Tasks are
// identified by their address text, so a revision that adds or removes one task moves only
// about 1/N of clients; an ineligible task's clients go to the next entries' owners, and come
// back when it recovers.

package final class Maglev: Sendable {
    /// Table size: prime, well above the task count for an even spread.
    package static let size = 65_537
    /// Entry → task index.
    package let lookup: [UInt16]

    package init(keys: [String], weights: [Int]) {
        let m = Self.size
        let n = keys.count
        guard n > 0, weights.contains(where: { $0 > 0 }) else {
            lookup = []
            return
        }
        var offset = [Int](repeating: 0, count: n)
        var skip = [Int](repeating: 0, count: n)
        for i in 0..<n {
            let h1 = fnv1a(keys[i], seed: 0xcbf2_9ce4_8422_2325)
            let h2 = fnv1a(keys[i], seed: 0x8422_2325_cbf2_9ce4)
            offset[i] = Int(h1 % UInt64(m))
            skip[i] = Int(h2 % UInt64(m - 1)) + 1
        }
        let maxWeight = weights.max() ?? 1
        var next = [Int](repeating: 0, count: n)
        var credit = [Int](repeating: 0, count: n)
        var table = [Int32](repeating: -1, count: m)
        var filled = 0
        outer: while true {
            for i in 0..<n where weights[i] > 0 {
                credit[i] += weights[i]
                while credit[i] >= maxWeight {
                    credit[i] -= maxWeight
                    var c = (offset[i] + next[i] * skip[i]) % m
                    while table[c] >= 0 {
                        next[i] += 1
                        c = (offset[i] + next[i] * skip[i]) % m
                    }
                    table[c] = Int32(i)
                    next[i] += 1
                    filled += 1
                    if filled == m { break outer }
                }
            }
        }
        lookup = table.map { UInt16(truncatingIfNeeded: $0) }
    }

    /// The task owning `clientHash`'s entry, or the first eligible owner after it.
    @inline(__always)
    func pick(_ t: PortTable, clientHash: UInt64, nowMs: UInt64, exclude: Int) -> Int? {
        let m = lookup.count
        guard m > 0 else { return nil }
        var e = Int(clientHash % UInt64(m))
        var k = 0
        while k < m {
            let i = Int(lookup[e])
            if t.candidate(i, nowMs: nowMs, exclude: exclude) { return i }
            e += 1
            if e == m { e = 0 }
            k += 1
            // Every task owns entries all over the table: a full lap is only needed when none
            // is eligible, and then the fallback answers.
            if k >= 4 * t.endpoints.count + 64 { break }
        }
        return t.leastLoaded(from: Int(clientHash % UInt64(t.endpoints.count)), nowMs: nowMs, exclude: exclude)
    }

    /// The owner of `clientHash`'s entry regardless of health (for tests and inspection).
    package func owner(_ clientHash: UInt64) -> Int? {
        lookup.isEmpty ? nil : Int(lookup[Int(clientHash % UInt64(lookup.count))])
    }
}

private func fnv1a(_ s: String, seed: UInt64) -> UInt64 {
    var h = seed
    for b in s.utf8 {
        h ^= UInt64(b)
        h &*= 0x0000_0100_0000_01B3
    }
    return mix64(h)
}
