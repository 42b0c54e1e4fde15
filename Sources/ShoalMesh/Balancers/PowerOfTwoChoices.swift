// Power of two choices: draw two tasks at random (in proportion to weight) and take the less
// loaded. Near least-connections balance at O(1) per pick, and no herd on one idle task when
// several reactors pick at once.

package final class PowerOfTwoChoices: Sendable {
    /// Running sums of the weights: task i owns [cumulative[i-1], cumulative[i]).
    private let cumulative: [Int]

    package init(weights: [Int]) {
        var sum = 0
        cumulative = weights.map {
            sum += $0
            return sum
        }
    }

    @inline(__always)
    private func draw(_ rng: inout SplitMix64) -> Int {
        let total = cumulative[cumulative.count - 1]
        let r = Int(rng.next() % UInt64(total))
        var lo = 0
        var hi = cumulative.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if cumulative[mid] > r { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    @inline(__always)
    func pick(_ t: PortTable, nowMs: UInt64, rng: inout SplitMix64, exclude: Int) -> Int? {
        guard let total = cumulative.last, total > 0 else { return nil }
        var first = -1
        var second = -1
        // A few draws find two eligible tasks unless most are out; then scan.
        var tries = 0
        while tries < 8 && second < 0 {
            tries += 1
            let i = draw(&rng)
            guard t.candidate(i, nowMs: nowMs, exclude: exclude) else { continue }
            if first < 0 {
                first = i
            } else if i != first {
                second = i
            }
        }
        if first >= 0 && second >= 0 {
            let a = t.endpoints[first].active.load(ordering: .relaxed)
            let b = t.endpoints[second].active.load(ordering: .relaxed)
            return a * t.weights[second] <= b * t.weights[first] ? first : second
        }
        if first >= 0 { return first }
        return t.leastLoaded(from: Int(rng.next() % UInt64(t.endpoints.count)), nowMs: nowMs, exclude: exclude)
    }
}
