// Round robin (swarm's default), weighted: a precomputed smooth weighted sequence (nginx's
// algorithm, run once per revision) walked by one atomic counter, so weights interleave
// (a:5 b:1 gives a a b a a a, not a a a a a b) and reactors never lock.

import Synchronization

package final class RoundRobin: Sendable {
    /// Task indexes in visiting order; each appears weight/gcd times.
    package let schedule: [Int32]
    private let next = Atomic<Int>(0)

    /// The longest schedule built; larger weight sums are scaled down proportionally.
    static let maxSchedule = 4_096

    package init(weights: [Int]) {
        var w = weights
        let g = w.reduce(0) { gcd($0, $1) }
        if g > 1 { w = w.map { $0 / g } }
        let total = w.reduce(0, +)
        if total > Self.maxSchedule {
            w = w.map { $0 == 0 ? 0 : max(1, $0 * Self.maxSchedule / total) }
        }
        var current = [Int](repeating: 0, count: w.count)
        let sum = w.reduce(0, +)
        var out: [Int32] = []
        out.reserveCapacity(sum)
        for _ in 0..<sum {
            var best = -1
            for i in w.indices where w[i] > 0 {
                current[i] += w[i]
                if best < 0 || current[i] > current[best] { best = i }
            }
            current[best] -= sum
            out.append(Int32(best))
        }
        schedule = out
    }

    @inline(__always)
    func pick(_ t: PortTable, nowMs: UInt64, exclude: Int) -> Int? {
        let n = schedule.count
        guard n > 0 else { return nil }
        let start = next.add(1, ordering: .relaxed).oldValue % n
        var k = 0
        while k < n {
            var s = start + k
            if s >= n { s -= n }
            let i = Int(schedule[s])
            if t.candidate(i, nowMs: nowMs, exclude: exclude) {
                if k > 0 { _ = next.add(k, ordering: .relaxed) }  // skip the ineligible stretch
                return i
            }
            k += 1
        }
        return t.fallback(nowMs: nowMs, exclude: exclude)
    }
}

private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
