// Deterministic simulation of a Raft cluster: one seed decides every event.
//
// Each step: deliver due messages (in random order; lossy, duplicating, delaying, reordering,
// through symmetric and asymmetric partitions), tick every live node, let clients submit
// put/CAS (through the log) and get (through ReadIndex), let some nodes handle their Ready (persist,
// then send, then apply; a node that crashes before doing so loses its unsynced state), inject
// faults (crash, restart, partition, heal, membership changes — add/remove a voter, add/remove a
// learner, promote a learner —, leader transfer, compaction). Two spare nodes can join.
// After every step the safety invariants are checked (besides the Raft ones: a learner never
// leads, and every index a leader commits is durable on a majority of its voters, so a learner
// never counts); at the end the cluster heals, must make progress, and the client history must be
// linearizable.

@testable import ShoalRaft

struct SimulationFailure: Error, CustomStringConvertible {
    var seed: UInt64
    var step: Int
    var reason: String
    var description: String {
        "raft simulation failed (seed \(seed), step \(step)): \(reason)\nreplay: SHOAL_RAFT_SEED=\(seed) swift test --filter ShoalRaftTests.SimulationTests"
    }
}

struct SimOptions {
    var nodes = 3
    var steps = 800
    var lossRate = 0.05
    var dupRate = 0.03
    var maxDelay: UInt64 = 3
    var crashRate = 0.004
    var partitionRate = 0.01
    var membershipRate = 0.004
    var transferRate = 0.003
    var clientRate = 0.3
    var compactEvery: UInt64 = 16
}

struct Simulation {
    struct Disk {
        var hardState = HardState()
        var snapshot = Snapshot()
        var entries: [Entry] = []
    }
    struct Node {
        var raft: RawNode?
        var disk: Disk
        var sm = KVStateMachine()
        var incarnation = 0
        var downUntil: UInt64 = 0
        var readsWaiting: [(context: UInt64, index: UInt64?)] = []
        var checkedCommit: UInt64 = 0
        /// The commit index up to which this node's commits as leader were checked for a quorum.
        var leaderCheckedCommit: UInt64 = 0
    }
    struct InFlight {
        var at: UInt64
        var message: Message
    }
    struct Pending {
        var op: Int  // index in history
        var node: NodeID
        var incarnation: Int
        var deadline: UInt64
    }

    let seed: UInt64
    let options: SimOptions
    var rng: SplitMix64
    var now: UInt64 = 0
    var clock: UInt64 = 0  // event order for the history
    var nodes: [NodeID: Node] = [:]
    var allIDs: [NodeID]
    var network: [InFlight] = []
    var blocked: Set<[NodeID]> = []  // [from, to]
    var history: [KVOperation] = []
    var pending: [UInt64: Pending] = [:]  // request id / read context -> pending
    var clientBusy: [Bool]
    var nextRequest: UInt64 = 1
    var committed: [UInt64: Entry] = [:]
    var leaderOfTerm: [UInt64: NodeID] = [:]
    var knownValues: [String: [[UInt8]]] = [:]
    var faultsOn = true
    var stats = (
        elections: 0, commits: 0, crashes: 0, configChanges: 0, snapshotsSent: 0, learnersAdded: 0, promotions: 0,
        promotionsRefused: 0
    )
    let keys = ["a", "b", "c"]

    init(seed: UInt64, options: SimOptions) {
        self.seed = seed
        self.options = options
        rng = SplitMix64(seed: seed)
        let initial = (1...UInt64(options.nodes)).map { $0 }
        allIDs = initial + [UInt64(options.nodes + 1), UInt64(options.nodes + 2)]
        clientBusy = Array(repeating: false, count: 4)
        for id in initial {
            let st = RaftInitialState.bootstrap(voters: initial)
            nodes[id] = Node(
                raft: makeRaft(id, st), disk: Disk(hardState: st.hardState, snapshot: st.snapshot, entries: st.entries))
        }
    }

    func makeRaft(_ id: NodeID, _ st: RaftInitialState) -> RawNode {
        var c = RaftConfig(id: id, seed: seed &+ id)
        c.electionTicks = 10
        c.maxEntriesPerMessage = 8
        c.maxInflightMessages = 4
        c.maxPromotionLagEntries = 8
        return RawNode(config: c, state: st)
    }

    mutating func fail(_ reason: String) throws(SimulationFailure) -> Never {
        throw SimulationFailure(seed: seed, step: Int(now), reason: reason)
    }

    // MARK: Run.

    mutating func run() throws(SimulationFailure) {
        for _ in 0..<options.steps {
            try step(faults: true)
        }
        // Heal, restart everyone, and require progress.
        faultsOn = false
        blocked.removeAll()
        for id in allIDs where nodes[id] != nil && nodes[id]!.raft == nil { restart(id) }
        let before = committed.keys.max() ?? 0
        var progressed = false
        for _ in 0..<600 {
            try step(faults: false)
            if let l = currentLeader(), (committed.keys.max() ?? 0) > before,
                let r = nodes[l]?.raft, r.termAt(r.commit) == r.term
            {
                progressed = true
                if clientBusy.allSatisfy({ !$0 }) { break }
            }
        }
        if !progressed { try fail("no progress after healing (liveness)\n\(describeNodes())") }
        if let key = Linearizability.check(history) {
            try fail("history not linearizable for key \(key): \(describeHistory(key))")
        }
    }

    func describeHistory(_ key: String) -> String {
        history.filter { $0.key == key }.map { "\n  c\($0.client) \($0.kind) \($0.outcome) [\($0.call), \($0.ret)]" }
            .joined()
    }

    func describeNodes() -> String {
        allIDs.compactMap { id in
            nodes[id]?.raft.map {
                "  \(id): \($0.role) term \($0.term) vote \($0.vote) leader \($0.leader) commit \($0.commit) applied \($0.applied) last \($0.lastIndex)/\($0.lastTerm) stable \($0.stableIndex) snap \($0.snapshot.index) voters \($0.voters)"
            }
        }.joined(separator: "\n")
    }

    func currentLeader() -> NodeID? {
        var best: (UInt64, NodeID)? = nil
        for id in allIDs {
            guard let r = nodes[id]?.raft, r.role == .leader else { continue }
            if best == nil || r.term > best!.0 { best = (r.term, id) }
        }
        return best?.1
    }

    mutating func step(faults: Bool) throws(SimulationFailure) {
        now += 1
        let loss = faults ? options.lossRate : 0
        let dup = faults ? options.dupRate : 0
        // Deliver due messages in random order.
        var due: [Message] = []
        var rest: [InFlight] = []
        for f in network { if f.at <= now { due.append(f.message) } else { rest.append(f) } }
        network = rest
        shuffle(&due)
        for m in due {
            guard nodes[m.to]?.raft != nil, !blocked.contains([m.from, m.to]) else { continue }
            if rng.chance(loss) { continue }
            if rng.chance(dup) { network.append(InFlight(at: now + 1 + rng.below(options.maxDelay + 1), message: m)) }
            nodes[m.to]!.raft!.step(m)
            try checkInvariants(m.to)
        }
        // Tick.
        for id in allIDs where nodes[id]?.raft != nil {
            nodes[id]!.raft!.tick()
            try checkInvariants(id)
        }
        // Clients.
        for c in clientBusy.indices where !clientBusy[c] && rng.chance(options.clientRate) { submit(client: c) }
        expirePending()
        // Ready handling: most nodes sync each step; some lag (their state is unsynced).
        for id in allIDs where nodes[id]?.raft != nil {
            if faults && rng.chance(0.2) { continue }
            try handleReady(id)
        }
        if now % 10 == 0 { try checkLogMatching() }
        guard faults else { return }
        try injectFaults()
    }

    mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = Int(rng.below(UInt64(i + 1)))
            a.swapAt(i, j)
        }
    }

    mutating func send(_ m: Message) {
        network.append(InFlight(at: now + 1 + rng.below(options.maxDelay), message: m))
    }

    // MARK: Ready.

    mutating func handleReady(_ id: NodeID) throws(SimulationFailure) {
        guard var node = nodes[id], var raft = node.raft, raft.hasReady else { return }
        let rd = raft.ready()
        // The driver lets a leader send appends, heartbeats and snapshots while it writes its own
        // log. Model the worst case: they leave, then the leader crashes before the fsync.
        if faultsOn && raft.role == .leader && rng.chance(options.crashRate * 2) {
            for m in rd.messages where m.kind == .append || m.kind == .heartbeat || m.kind == .snapshot { send(m) }
            nodes[id]!.raft = nil
            nodes[id]!.readsWaiting = []
            nodes[id]!.incarnation += 1
            nodes[id]!.downUntil = now + 5 + rng.below(40)
            stats.crashes += 1
            return
        }
        // 1. Persist.
        if let s = rd.snapshot {
            node.disk.snapshot = s
            node.disk.entries = []
        }
        if let first = rd.entries.first {
            let base = node.disk.snapshot.index
            let keep = Int(first.index - base - 1)
            guard keep <= node.disk.entries.count else { try fail("node \(id) persisted a gap at \(first.index)") }
            node.disk.entries.removeLast(node.disk.entries.count - keep)
            node.disk.entries.append(contentsOf: rd.entries)
        }
        if let hs = rd.hardState { node.disk.hardState = hs }
        // 2. Send.
        for m in rd.messages {
            if m.kind == .snapshot { stats.snapshotsSent += 1 }
            send(m)
        }
        // 3. Apply.
        if let s = rd.snapshot {
            guard let sm = try? KVStateMachine.restore(s) else { try fail("bad snapshot data") }
            node.sm = sm
        }
        for e in rd.committedEntries {
            if let c = committed[e.index], c != e {
                try fail("node \(id) applies \(e) at \(e.index) but \(c) was committed there")
            }
            committed[e.index] = e
            guard e.index == node.sm.appliedIndex + 1 else {
                try fail("node \(id) applies \(e.index) after \(node.sm.appliedIndex)")
            }
            if let (req, result) = node.sm.apply(e) {
                complete(req.id, result, node: id, incarnation: node.incarnation)
            }
        }
        for rs in rd.readStates {
            if let i = node.readsWaiting.firstIndex(where: { $0.context == rs.context }) {
                node.readsWaiting[i].index = rs.index
            }
        }
        raft.advance(rd)
        // Answer reads whose index is applied.
        var still: [(context: UInt64, index: UInt64?)] = []
        for r in node.readsWaiting {
            if let idx = r.index, node.sm.appliedIndex >= idx, let p = pending[r.context],
                p.incarnation == node.incarnation
            {
                finish(r.context, .value(node.sm.get(history[p.op].key)))
            } else {
                still.append(r)
            }
        }
        node.readsWaiting = still
        // 4. Compact.
        if raft.applied >= raft.snapshot.index + options.compactEvery && rng.chance(0.5) {
            raft.compact(snapshotData: node.sm.snapshot())
            node.disk.snapshot = raft.snapshot
            let drop = Int(raft.snapshot.index - (node.disk.entries.first?.index ?? raft.snapshot.index + 1) + 1)
            node.disk.entries.removeFirst(max(0, min(drop, node.disk.entries.count)))
        }
        node.raft = raft
        nodes[id] = node
        try checkInvariants(id)
    }

    // MARK: Clients.

    mutating func submit(client c: Int) {
        let live = allIDs.filter { nodes[$0]?.raft != nil }
        guard !live.isEmpty else { return }
        // Clients mostly find the leader; sometimes they ask a follower (reads work there).
        var target = live[Int(rng.below(UInt64(live.count)))]
        // Any node that believes it leads, including a deposed one that has not noticed yet.
        let leaders = live.filter { nodes[$0]!.raft!.role == .leader }
        if !leaders.isEmpty, rng.chance(0.8) { target = leaders[Int(rng.below(UInt64(leaders.count)))] }
        let key = keys[Int(rng.below(UInt64(keys.count)))]
        let rid = nextRequest
        nextRequest += 1
        clock += 1
        let roll = rng.below(10)
        var raft = nodes[target]!.raft!
        if roll < 3 {
            // ReadIndex get.
            do {
                try raft.readIndex(context: rid)
            } catch { return }
            nodes[target]!.raft = raft
            nodes[target]!.readsWaiting.append((rid, nil))
            history.append(KVOperation(client: c, key: key, kind: .get, call: clock))
        } else {
            let value = withUnsafeBytes(of: rid.littleEndian) { Array($0) }
            let kind: KVOperation.Kind
            let cmd: KVCommand
            if roll < 6 {
                kind = .put(value)
                cmd = .put(key: key, value: value)
            } else {
                let known = knownValues[key] ?? []
                let expected: [UInt8]? =
                    known.isEmpty || rng.chance(0.1) ? nil : known[Int(rng.below(UInt64(known.count)))]
                kind = .cas(expected: expected, new: value)
                cmd = .cas(key: key, expected: expected, new: value)
            }
            do {
                _ = try raft.propose(KVRequest(id: rid, command: cmd).encode())
            } catch { return }
            nodes[target]!.raft = raft
            history.append(KVOperation(client: c, key: key, kind: kind, call: clock))
        }
        clientBusy[c] = true
        pending[rid] = Pending(
            op: history.count - 1, node: target, incarnation: nodes[target]!.incarnation, deadline: now + 60)
    }

    mutating func complete(_ rid: UInt64, _ result: KVResult, node: NodeID, incarnation: Int) {
        guard let p = pending[rid], p.node == node, p.incarnation == incarnation else { return }
        switch result {
        case .ok: finish(rid, .ok)
        case .value(let v): finish(rid, .value(v))
        case .cas(let ok, _): finish(rid, .cas(ok))
        }
    }

    mutating func finish(_ rid: UInt64, _ outcome: KVOperation.Outcome) {
        guard let p = pending.removeValue(forKey: rid) else { return }
        clock += 1
        history[p.op].ret = clock
        history[p.op].outcome = outcome
        clientBusy[history[p.op].client] = false
        let key = history[p.op].key
        if case .value(let v?) = outcome { knownValues[key, default: []].append(v) }
        if case .put(let v) = history[p.op].kind { knownValues[key, default: []].append(v) }
        stats.commits += 1
    }

    mutating func expirePending() {
        for rid in pending.keys.sorted() where pending[rid]!.deadline <= now {
            let p = pending.removeValue(forKey: rid)!
            clientBusy[history[p.op].client] = false  // outcome stays unknown
        }
    }

    // MARK: Faults.

    mutating func injectFaults() throws(SimulationFailure) {
        let live = allIDs.filter { nodes[$0]?.raft != nil }
        // Crash: drop the node object (unsynced state is lost) and its queued messages stay in flight.
        if rng.chance(options.crashRate), !live.isEmpty {
            let id = live[Int(rng.below(UInt64(live.count)))]
            nodes[id]!.raft = nil
            nodes[id]!.readsWaiting = []
            nodes[id]!.incarnation += 1
            nodes[id]!.downUntil = now + 5 + rng.below(40)
            stats.crashes += 1
        }
        for id in allIDs where nodes[id] != nil && nodes[id]!.raft == nil && nodes[id]!.downUntil <= now {
            restart(id)
        }
        if rng.chance(options.partitionRate) {
            switch rng.below(3) {
            case 0:
                blocked.removeAll()
            case 1:  // isolate one node (symmetric)
                let id = allIDs[Int(rng.below(UInt64(allIDs.count)))]
                for o in allIDs where o != id {
                    blocked.insert([id, o])
                    blocked.insert([o, id])
                }
            default:  // one-way link failure
                let a = allIDs[Int(rng.below(UInt64(allIDs.count)))]
                let b = allIDs[Int(rng.below(UInt64(allIDs.count)))]
                if a != b { blocked.insert([a, b]) }
            }
        }
        if rng.chance(options.membershipRate), let l = currentLeader() { changeMembership(leader: l) }
        if rng.chance(options.transferRate), let l = currentLeader() {
            var raft = nodes[l]!.raft!
            let others = raft.voters.filter { $0 != l }
            if !others.isEmpty {
                try? raft.transferLeader(to: others[Int(rng.below(UInt64(others.count)))])
                nodes[l]!.raft = raft
            }
        }
    }

    /// One single-server change on the leader: remove a voter (keeping at least two), add a
    /// learner or (less often) a voter straight away, promote a learner, or remove a learner.
    mutating func changeMembership(leader l: NodeID) {
        var raft = nodes[l]!.raft!
        let outside = allIDs.filter { !raft.membership.contains($0) }
        let pick = { (ids: [NodeID], rng: inout SplitMix64) in ids[Int(rng.below(UInt64(ids.count)))] }
        var change: ConfChange? = nil
        if !raft.learners.isEmpty && rng.chance(0.6) {
            let learner = pick(raft.learners, &rng)
            change = rng.chance(0.8) ? .promote(learner) : .remove(learner)
        } else {
            switch rng.below(4) {
            case 0...1 where raft.voters.count > 2: change = .remove(pick(raft.voters, &rng))
            case 3 where !outside.isEmpty: change = .addVoter(pick(outside, &rng))
            default: change = outside.isEmpty ? nil : .addLearner(pick(outside, &rng))
            }
        }
        guard let change else { return }
        switch change {
        case .addVoter(let id), .addLearner(let id):
            if nodes[id] == nil { nodes[id] = Node(raft: makeRaft(id, RaftInitialState()), disk: Disk()) }
        default: break
        }
        do {
            _ = try raft.proposeConfChange(change)
        } catch .learnerNotCaughtUp {
            stats.promotionsRefused += 1
            return
        } catch { return }
        stats.configChanges += 1
        if case .addLearner = change { stats.learnersAdded += 1 }
        if case .promote = change { stats.promotions += 1 }
        nodes[l]!.raft = raft
    }

    mutating func restart(_ id: NodeID) {
        var n = nodes[id]!
        let st = RaftInitialState(hardState: n.disk.hardState, snapshot: n.disk.snapshot, entries: n.disk.entries)
        n.raft = makeRaft(id, st)
        n.sm = (try? KVStateMachine.restore(n.disk.snapshot)) ?? KVStateMachine()
        n.checkedCommit = 0
        nodes[id] = n
    }

    // MARK: Invariants.

    mutating func checkInvariants(_ id: NodeID) throws(SimulationFailure) {
        guard let r = nodes[id]?.raft else { return }
        // Election safety: one leader per term.
        if r.role == .leader {
            if let other = leaderOfTerm[r.term], other != id {
                try fail("two leaders in term \(r.term): \(other) and \(id)")
            }
            if leaderOfTerm[r.term] == nil {
                leaderOfTerm[r.term] = id
                stats.elections += 1
                // Leader completeness: a new leader holds every committed entry.
                for (i, e) in committed where i > r.snapshot.index {
                    guard let t = r.termAt(i), t == e.term else {
                        try fail("leader \(id) of term \(r.term) lacks committed entry \(i) (term \(e.term))")
                    }
                }
                if let maxC = committed.keys.max(), maxC > r.lastIndex {
                    try fail("leader \(id) of term \(r.term) log ends at \(r.lastIndex) before commit \(maxC)")
                }
            }
        }
        // State machine safety at commit time: a committed index never holds two different entries.
        if r.commit > nodes[id]!.checkedCommit {
            var i = max(nodes[id]!.checkedCommit + 1, r.snapshot.index + 1)
            while i <= r.commit {
                let e = r.entries[Int(i - r.snapshot.index - 1)]
                if let c = committed[i], c != e {
                    try fail("node \(id) committed \(e) at \(i) but \(c) was committed there")
                }
                committed[i] = e
                i += 1
            }
            nodes[id]!.checkedCommit = r.commit
        }
        if r.applied > r.commit { try fail("node \(id) applied \(r.applied) > commit \(r.commit)") }
        try checkCommitQuorum(r)
    }

    /// A learner never leads, and each index a leader commits is already durable (on the simulated
    /// disk) on a majority of that leader's voters: counting a learner, or a voter that has not
    /// persisted, would show here.
    mutating func checkCommitQuorum(_ r: RawNode) throws(SimulationFailure) {
        if r.role == .leader && !r.voters.contains(r.id) {
            try fail("node \(r.id) leads term \(r.term) but is not a voter (learners \(r.learners))")
        }
        if !Set(r.voters).isDisjoint(with: r.learners) {
            try fail("node \(r.id): voters \(r.voters) and learners \(r.learners) overlap")
        }
        defer { nodes[r.id]!.leaderCheckedCommit = r.commit }
        guard r.role == .leader, r.commit > nodes[r.id]!.leaderCheckedCommit, let t = r.termAt(r.commit) else {
            return
        }
        let holders = r.voters.filter { v in
            guard let d = nodes[v]?.disk else { return false }
            if r.commit <= d.snapshot.index { return true }
            let i = Int(r.commit - d.snapshot.index - 1)
            return i < d.entries.count && d.entries[i].term == t
        }
        if holders.count < r.voters.count / 2 + 1 {
            try fail(
                "leader \(r.id) committed \(r.commit) held durably only by \(holders) of voters \(r.voters) (learners \(r.learners))"
            )
        }
    }

    /// Log matching: two logs with the same term at an index are identical up to it.
    func checkLogMatching() throws(SimulationFailure) {
        let live = allIDs.compactMap { nodes[$0]?.raft }
        for a in live.indices {
            for b in live.indices where b > a {
                let x = live[a]
                let y = live[b]
                let lo = max(x.snapshot.index, y.snapshot.index)
                var i = min(x.lastIndex, y.lastIndex)
                while i > lo {
                    if x.termAt(i) == y.termAt(i) {
                        var j = i
                        while j > lo {
                            let ex = x.entries[Int(j - x.snapshot.index - 1)]
                            let ey = y.entries[Int(j - y.snapshot.index - 1)]
                            if ex != ey {
                                throw SimulationFailure(
                                    seed: seed, step: Int(now),
                                    reason: "log matching: nodes \(x.id) and \(y.id) agree at \(i) but differ at \(j)")
                            }
                            j -= 1
                        }
                        break
                    }
                    i -= 1
                }
            }
        }
    }
}
