// The balancers, one file each. A closed enum rather than a protocol existential: the reactor's
// pick is a switch, no witness-table call and no boxing on the per-connection path.

import ShoalSystem

package enum Balancer: Sendable {
    case roundRobin(RoundRobin)
    case leastConnections(LeastConnections)
    case powerOfTwo(PowerOfTwoChoices)
    case maglev(Maglev)

    package init(kind: BalancerKind, endpoints: [EndpointSpec]) {
        let weights = endpoints.map(\.weight)
        switch kind {
        case .roundRobin: self = .roundRobin(RoundRobin(weights: weights))
        case .leastConnections: self = .leastConnections(LeastConnections())
        case .powerOfTwo: self = .powerOfTwo(PowerOfTwoChoices(weights: weights))
        case .maglev: self = .maglev(Maglev(keys: endpoints.map { "\($0.address)" }, weights: weights))
        }
    }

    /// The index of the task for a new connection, or nil when no task is eligible.
    @inline(__always)
    package func pick(
        _ t: PortTable, clientHash: UInt64, nowMs: UInt64, rng: inout SplitMix64, exclude: Int
    ) -> Int? {
        switch self {
        case .roundRobin(let b): b.pick(t, nowMs: nowMs, exclude: exclude)
        case .leastConnections(let b): b.pick(t, nowMs: nowMs, exclude: exclude)
        case .powerOfTwo(let b): b.pick(t, nowMs: nowMs, rng: &rng, exclude: exclude)
        case .maglev(let b): b.pick(t, clientHash: clientHash, nowMs: nowMs, exclude: exclude)
        }
    }
}

extension PortTable {
    /// Whether `i` may be picked for this attempt: eligible and not the task that just failed,
    /// unless it is the only choice (checked by the caller's fallback).
    @inline(__always)
    func candidate(_ i: Int, nowMs: UInt64, exclude: Int) -> Bool {
        i != exclude && eligible(i, nowMs: nowMs)
    }

    /// The task that just failed, when it is still the only eligible one.
    @inline(__always)
    func fallback(nowMs: UInt64, exclude: Int) -> Int? {
        exclude >= 0 && eligible(exclude, nowMs: nowMs) ? exclude : nil
    }

    /// Least load by active connections per unit of weight, scanning from `start`:
    /// a.active / a.weight < b.active / b.weight, cross-multiplied.
    @inline(__always)
    func leastLoaded(from start: Int, nowMs: UInt64, exclude: Int) -> Int? {
        let n = endpoints.count
        var best = -1
        var bestActive = 0
        var bestWeight = 1
        var k = 0
        while k < n {
            var i = start &+ k
            if i >= n { i -= n }
            k += 1
            guard candidate(i, nowMs: nowMs, exclude: exclude) else { continue }
            let a = endpoints[i].active.load(ordering: .relaxed)
            if best < 0 || a * bestWeight < bestActive * weights[i] {
                best = i
                bestActive = a
                bestWeight = weights[i]
            }
        }
        return best >= 0 ? best : fallback(nowMs: nowMs, exclude: exclude)
    }
}

/// A 64-bit hash of a client's IP address (not its port: affinity is per client host).
@inline(__always)
package func clientHash(_ ip: IPAddress) -> UInt64 {
    switch ip {
    case .v4(let a): return mix64(UInt64(a) ^ 0x4_0000_0000)
    case .v6(let hi, let lo): return mix64(hi ^ mix64(lo))
    }
}

/// Murmur3's 64-bit finalizer.
@inline(__always)
package func mix64(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 33)) &* 0xFF51_AFD7_ED55_8CCD
    z = (z ^ (z >> 33)) &* 0xC4CE_B9FE_1A85_EC53
    return z ^ (z >> 33)
}
