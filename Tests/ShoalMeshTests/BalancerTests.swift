import Testing

@testable import ShoalMesh
@testable import ShoalSystem

@Suite struct BalancerTests {
    func table(_ kind: BalancerKind, weights: [Int], healthy: [Bool]? = nil) throws -> PortTable {
        var yaml = "revision: 1\nports:\n  - port: 80\n    balancer: \(kind.rawValue)\n    endpoints:\n"
        for (i, w) in weights.enumerated() {
            let h = healthy?[i] ?? true
            yaml += "      - {address: \"198.18.1.\(i + 1):80\", weight: \(w), healthy: \(h)}\n"
        }
        return MeshTable.build(try MeshConfig.parse(yaml), previous: nil).ports[0]
    }

    func picks(_ t: PortTable, _ n: Int, hash: (Int) -> UInt64 = { UInt64($0) }) -> [Int] {
        var rng = SplitMix64(seed: 7)
        return (0..<n).map { t.pick(clientHash: mix64(hash($0)), nowMs: 1, rng: &rng)! }
    }

    func histogram(_ p: [Int], _ n: Int) -> [Int] {
        var h = [Int](repeating: 0, count: n)
        for i in p { h[i] += 1 }
        return h
    }

    @Test func roundRobinInterleavesByWeight() throws {
        let t = try table(.roundRobin, weights: [5, 1, 2])
        let p = picks(t, 80)
        #expect(histogram(p, 3) == [50, 10, 20])
        // Smooth: the heavy task never takes more than its share in a row.
        var run = 0
        var longest = 0
        for (i, x) in p.enumerated() {
            run = (i > 0 && p[i - 1] == x) ? run + 1 : 1
            longest = max(longest, run)
        }
        #expect(longest <= 3)
    }

    @Test func unhealthyAndZeroWeightTasksGetNothing() throws {
        for kind in BalancerKind.allCases {
            let t = try table(kind, weights: [1, 0, 1, 1], healthy: [true, true, false, true])
            let h = histogram(picks(t, 400), 4)
            #expect(h[1] == 0 && h[2] == 0, "\(kind)")
            #expect(h[0] > 0 && h[3] > 0, "\(kind)")
        }
    }

    @Test func noEligibleTaskPicksNothing() throws {
        for kind in BalancerKind.allCases {
            let t = try table(kind, weights: [1, 1], healthy: [false, false])
            var rng = SplitMix64(seed: 1)
            #expect(t.pick(clientHash: 1, nowMs: 1, rng: &rng) == nil, "\(kind)")
        }
    }

    @Test func excludeAvoidsTheFailedTaskUnlessAlone() throws {
        for kind in BalancerKind.allCases {
            let t = try table(kind, weights: [1, 1, 1])
            var rng = SplitMix64(seed: 3)
            for h in 0..<50 {
                #expect(t.pick(clientHash: UInt64(h), nowMs: 1, rng: &rng, exclude: 1) != 1, "\(kind)")
            }
            let alone = try table(kind, weights: [1, 1], healthy: [false, true])
            #expect(alone.pick(clientHash: 5, nowMs: 1, rng: &rng, exclude: 1) == 1, "\(kind)")
        }
    }

    @Test func leastConnectionsFollowsActiveCountsPerWeight() throws {
        let t = try table(.leastConnections, weights: [1, 2, 1])
        t.endpoints[0].active.store(3, ordering: .relaxed)
        t.endpoints[1].active.store(4, ordering: .relaxed)  // 2 per unit of weight
        t.endpoints[2].active.store(5, ordering: .relaxed)
        var rng = SplitMix64(seed: 1)
        #expect(t.pick(clientHash: 0, nowMs: 1, rng: &rng) == 1)
        t.endpoints[1].active.store(8, ordering: .relaxed)
        #expect(t.pick(clientHash: 0, nowMs: 1, rng: &rng) == 0)
    }

    @Test func powerOfTwoChoicesPrefersTheLessLoadedAndSpreadsByWeight() throws {
        let t = try table(.powerOfTwo, weights: [1, 1, 1, 1])
        t.endpoints[2].active.store(1_000, ordering: .relaxed)
        let h = histogram(picks(t, 4_000), 4)
        #expect(h[2] < 200)  // picked only when drawn with itself (never) or as sole candidate
        let w = try table(.powerOfTwo, weights: [3, 1])
        let hw = histogram(picks(w, 8_000), 2)
        #expect(hw[0] > hw[1])
    }

    @Test func maglevIsStickyAndMovesFewClientsWhenATaskLeaves() throws {
        let n = 10
        let before = try table(.maglev, weights: [Int](repeating: 1, count: n))
        let clients = 20_000
        let a = picks(before, clients)
        #expect(picks(before, clients) == a)  // same client, same task
        let share = histogram(a, n)
        #expect(share.allSatisfy { abs($0 - clients / n) < clients / n / 5 })  // within 20%
        // Task 4 leaves: its clients move, others (almost) all stay.
        var yaml = "revision: 2\nports:\n  - port: 80\n    balancer: maglev\n    endpoints:\n"
        for i in 0..<n where i != 4 { yaml += "      - {address: \"198.18.1.\(i + 1):80\"}\n" }
        let after = MeshTable.build(try MeshConfig.parse(yaml), previous: nil).ports[0]
        let b = picks(after, clients)
        var moved = 0
        for c in 0..<clients where a[c] != 4 {
            let oldAddress = before.endpoints[a[c]].address
            if after.endpoints[b[c]].address != oldAddress { moved += 1 }
        }
        #expect(Double(moved) / Double(clients) < 0.03, "moved \(moved) of \(clients)")
        // While a task is unhealthy its clients go elsewhere, and come back when it recovers.
        before.endpoints[4].ejectedUntilMs.store(100, ordering: .relaxed)
        #expect(!picks(before, clients).contains(4))
        before.endpoints[4].ejectedUntilMs.store(0, ordering: .relaxed)
        #expect(picks(before, clients) == a)
    }

    @Test func maglevHonoursWeights() throws {
        let t = try table(.maglev, weights: [3, 1])
        let h = histogram(picks(t, 40_000), 2)
        let ratio = Double(h[0]) / Double(h[1])
        #expect(ratio > 2.5 && ratio < 3.5, "ratio \(ratio)")
    }

    @Test func runtimeStateSurvivesARevision() throws {
        let t1 = try table(.roundRobin, weights: [1, 1])
        t1.endpoints[0].active.store(7, ordering: .relaxed)
        let spec = try MeshConfig.parse(
            "revision: 2\nports:\n  - port: 80\n    endpoints:\n      - {address: \"198.18.1.1:80\"}\n      - {address: \"198.18.1.9:80\"}\n"
        )
        let old = MeshTable(spec: try MeshConfig.parse("revision: 1\nports: []"), ports: [t1])
        let t2 = MeshTable.build(spec, previous: old).ports[0]
        #expect(t2.endpoints[0] === t1.endpoints[0])
        #expect(t2.endpoints[0].active.load(ordering: .relaxed) == 7)
        #expect(t2.runtime === t1.runtime)
        #expect(t1.endpoints[1].present.load(ordering: .relaxed) == false)  // 198.18.1.2 left: drains
    }
}

@Suite struct TimerWheelTests {
    @Test func firesInOrderAndNotEarly() {
        var w = TimerWheel(capacity: 8, nowMs: 0)
        w.schedule(0, atMs: 100)
        w.schedule(1, atMs: 20)
        w.schedule(2, atMs: 20_000)  // beyond one lap
        w.schedule(3, atMs: 50)
        w.cancel(3)
        var fired: [Int] = []
        var now: UInt64 = 0
        while now < 25_000 {
            now += 4
            w.collect(nowMs: now)
            while let id = w.popDue() {
                let deadline: UInt64 = [100, 20, 20_000][id]
                if now < deadline {
                    w.schedule(id, atMs: deadline)  // lazy: early fire re-arms
                } else {
                    fired.append(id)
                    #expect(now - deadline < 2 * TimerWheel.tickMs)
                }
            }
        }
        #expect(fired == [1, 0, 2])
        #expect(w.count == 0)
    }
}
