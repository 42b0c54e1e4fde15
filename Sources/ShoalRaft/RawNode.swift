// The Raft core: a pure state machine in the shape of etcd's RawNode. No I/O and no clock.
//
//   tick() / step(message) / propose(...) / readIndex(...) / transferLeader(...)
//        │
//        ▼
//   ready() ──► driver persists entries + hard state (fsync), sends messages, applies entries
//        │
//        ▼
//   advance(ready)
//
// Contract: between `ready()` and `advance(_:)` the caller makes no other call. Entries become
// "stable" only through `advance`; the leader counts itself in the commit quorum only for stable
// entries, and only stable committed entries are handed out to apply.
//
// Features: randomized election timeouts (seeded), pre-vote, check-quorum with leader lease,
// leader transfer (TimeoutNow), pipelined replication with an inflight window and batching,
// commit only of current-term entries by majority, ReadIndex, snapshots/InstallSnapshot, and
// single-server membership changes (add or remove a voter, add a learner, promote a learner) that
// take effect when applied, at most one pending, and only after the leader has committed an entry
// in its term. Learners get appends, heartbeats and snapshots like any follower, but only voters
// count: commit, votes, check-quorum and ReadIndex confirmations all take a majority of `voters`,
// and a learner never campaigns (its election timeout does nothing).

package struct RaftConfig: Sendable {
    package var id: NodeID
    package var electionTicks: Int = 10
    package var heartbeatTicks: Int = 1
    package var preVote: Bool = true
    package var checkQuorum: Bool = true
    package var maxEntriesPerMessage: Int = 256
    package var maxInflightMessages: Int = 64
    /// The leader refuses to promote a learner whose acknowledged log (`match`) is more than this
    /// many entries behind its commit index, or that has acknowledged nothing to this leader yet:
    /// a lagging new voter would count in the quorum while unable to help form one.
    package var maxPromotionLagEntries: UInt64 = 256
    package var seed: UInt64 = 1

    package init(id: NodeID, seed: UInt64 = 1) {
        self.id = id
        self.seed = seed
    }
}

package enum RaftError: Error, Sendable, Equatable {
    case notLeader(leader: NodeID)
    case transferInProgress
    case configurationChangePending
    case noCommittedEntryInTerm
    case notSingleServerChange
    /// The change does not apply to the current membership (adding a member, promoting a
    /// non-learner, removing a non-member or the last voter, node id 0).
    case invalidConfChange
    /// The learner's log is too far behind for promotion (see `RaftConfig.maxPromotionLagEntries`).
    case learnerNotCaughtUp(match: UInt64, commit: UInt64)
    case compactBeyondApplied
}

struct Progress {
    enum State { case probe, replicate, snapshot }
    var match: UInt64 = 0
    var next: UInt64
    var state: State = .probe
    /// Probe: one append in flight until a response or heartbeat response.
    var probeSent = false
    var pendingSnapshot: UInt64 = 0
    /// Replicate: last index of each in-flight append, oldest first.
    var inflights: [UInt64] = []
    var recentActive = false

    mutating func becomeProbe() {
        if state == .snapshot {
            next = max(match + 1, pendingSnapshot + 1)
        } else {
            next = match + 1
        }
        state = .probe
        probeSent = false
        pendingSnapshot = 0
        inflights.removeAll()
    }

    mutating func becomeReplicate() {
        state = .replicate
        next = match + 1
        probeSent = false
        inflights.removeAll()
    }
}

package struct RawNode: Sendable {
    package let config: RaftConfig
    package var id: NodeID { config.id }
    package private(set) var term: UInt64
    package private(set) var vote: NodeID
    package private(set) var commit: UInt64
    /// Invariant: applied <= commit, applied <= stableIndex.
    package private(set) var applied: UInt64
    package private(set) var role: Role = .follower
    package private(set) var leader: NodeID = 0
    /// Voters as of the last applied (or recovered committed) configuration entry.
    package private(set) var voters: [NodeID]
    /// Learners as of the same entry; disjoint from `voters`.
    package private(set) var learners: [NodeID]

    // Log: entries[i].index == snapshot.index + 1 + i.
    package private(set) var snapshot: Snapshot
    package private(set) var entries: [Entry]
    /// Entries up to here are on stable storage.
    package private(set) var stableIndex: UInt64
    private var pendingSnapshot: Snapshot?
    private var configurationIndex: UInt64 = 0
    private var pendingConfigurationIndex: UInt64 = 0

    private var rng: SplitMix64
    private var electionElapsed = 0
    private var heartbeatElapsed = 0
    private var randomizedElectionTimeout = 0
    private var votes: [NodeID: Bool] = [:]
    private var progress: [NodeID: Progress] = [:]
    package private(set) var leadTransferee: NodeID = 0
    private var pendingReads: [(context: UInt64, index: UInt64, from: NodeID, acks: Set<NodeID>)] = []

    private var messages: [Message] = []
    private var readStates: [ReadState] = []
    private var prevHardState: HardState

    package init(config: RaftConfig, state: RaftInitialState) {
        self.config = config
        term = state.hardState.term
        vote = state.hardState.vote
        commit = state.hardState.commit
        snapshot = state.snapshot
        entries = state.entries
        precondition(entries.first.map { $0.index == state.snapshot.index + 1 } ?? true, "log does not follow snapshot")
        stableIndex = state.snapshot.index + UInt64(state.entries.count)
        precondition(commit <= stableIndex && commit >= snapshot.index, "commit \(commit) outside the log")
        applied = state.snapshot.index
        voters = state.snapshot.voters
        learners = state.snapshot.learners
        configurationIndex = state.snapshot.index
        for e in state.entries where e.kind == .configuration && e.index <= commit {
            let m = Configuration.decode(e.data)
            voters = m.voters
            learners = m.learners
            configurationIndex = e.index
        }
        prevHardState = state.hardState
        rng = SplitMix64(seed: config.seed ^ (config.id &* 0x9E37_79B9))
        resetTimers()
    }

    // MARK: Log helpers.

    package var lastIndex: UInt64 { snapshot.index + UInt64(entries.count) }
    package var lastTerm: UInt64 { entries.last?.term ?? snapshot.term }
    package var firstIndex: UInt64 { snapshot.index + 1 }

    package func termAt(_ index: UInt64) -> UInt64? {
        if index == snapshot.index { return snapshot.term }
        if index < snapshot.index || index > lastIndex { return nil }
        return entries[Int(index - snapshot.index - 1)].term
    }

    func entriesFrom(_ from: UInt64, through: UInt64, max: Int = Int.max) -> [Entry] {
        guard from <= through else { return [] }
        precondition(from > snapshot.index && through <= lastIndex)
        let lo = Int(from - snapshot.index - 1)
        let hi = Swift.min(Int(through - snapshot.index), lo + Swift.min(max, entries.count))
        return Array(entries[lo..<hi])
    }

    private var quorum: Int { voters.count / 2 + 1 }
    /// Only a voter may campaign; a learner (or a node outside the configuration) never does.
    package var isPromotable: Bool { voters.contains(id) }
    package var isLearner: Bool { learners.contains(id) }
    package var membership: Membership { Membership(voters: voters, learners: learners) }

    // MARK: Inputs.

    package mutating func tick() {
        if role == .leader {
            heartbeatElapsed += 1
            electionElapsed += 1
            if electionElapsed >= config.electionTicks {
                electionElapsed = 0
                if config.checkQuorum {
                    let active = voters.filter { $0 == id || progress[$0]?.recentActive == true }.count
                    for k in progress.keys where k != id { progress[k]!.recentActive = false }
                    if active < quorum {
                        becomeFollower(term: term, leader: 0)
                        return
                    }
                }
                leadTransferee = 0
            }
            if heartbeatElapsed >= config.heartbeatTicks {
                heartbeatElapsed = 0
                broadcastHeartbeat(context: pendingReads.last?.context ?? 0)
            }
        } else {
            electionElapsed += 1
            if isPromotable && electionElapsed >= randomizedElectionTimeout {
                electionElapsed = 0
                campaign(transfer: false)
            }
        }
    }

    /// Starts an election now (tests and `campaign` transcripts).
    package mutating func campaign() {
        guard role != .leader, isPromotable else { return }
        campaign(transfer: false)
    }

    package mutating func propose(_ data: [UInt8]) throws(RaftError) -> UInt64 {
        guard role == .leader else { throw .notLeader(leader: leader) }
        guard leadTransferee == 0 else { throw .transferInProgress }
        return appendLocal([Entry(term: term, index: 0, kind: .normal, data: data)])
    }

    /// Proposes a new voter set differing from the current one by exactly one node: an added node
    /// that is a learner is promoted, any other added node joins as a voter, a removed one leaves.
    package mutating func proposeConfiguration(_ newVoters: [NodeID]) throws(RaftError) -> UInt64 {
        let old = Set(voters)
        let new = Set(newVoters)
        guard old.symmetricDifference(new).count == 1, !new.isEmpty else { throw .notSingleServerChange }
        if let added = new.subtracting(old).first {
            return try proposeConfChange(learners.contains(added) ? .promote(added) : .addVoter(added))
        }
        return try proposeConfChange(.remove(old.subtracting(new).first!))
    }

    /// Proposes one membership change. Refused while another is pending (proposed but not yet
    /// applied here), before the leader has committed an entry of its term, and — for `promote` —
    /// while the learner has acknowledged nothing to this leader or its `match` is more than
    /// `maxPromotionLagEntries` behind the commit index (the caller retries once it caught up).
    package mutating func proposeConfChange(_ change: ConfChange) throws(RaftError) -> UInt64 {
        guard role == .leader else { throw .notLeader(leader: leader) }
        guard leadTransferee == 0 else { throw .transferInProgress }
        guard pendingConfigurationIndex <= applied else { throw .configurationChangePending }
        guard termAt(commit) == term else { throw .noCommittedEntryInTerm }
        guard let next = change.applied(to: membership) else { throw .invalidConfChange }
        if case .promote(let learner) = change {
            let match = progress[learner]?.match ?? 0
            guard match > 0, match + config.maxPromotionLagEntries >= commit else {
                throw .learnerNotCaughtUp(match: match, commit: commit)
            }
        }
        let index = appendLocal([Entry(term: term, index: 0, kind: .configuration, data: Configuration.encode(next))])
        pendingConfigurationIndex = index
        return index
    }

    /// Asks for a linearizable read point; the answer arrives in `Ready.readStates`.
    package mutating func readIndex(context: UInt64) throws(RaftError) {
        if role == .leader {
            guard termAt(commit) == term else { throw .noCommittedEntryInTerm }
            addRead(context: context, from: id)
        } else {
            guard leader != 0 else { throw .notLeader(leader: 0) }
            send(Message(kind: .readIndex, from: id, to: leader, term: term, context: context))
        }
    }

    package mutating func transferLeader(to target: NodeID) throws(RaftError) {
        guard role == .leader else { throw .notLeader(leader: leader) }
        guard target != id, voters.contains(target), progress[target] != nil else { return }
        leadTransferee = target
        electionElapsed = 0
        if progress[target]!.match == lastIndex {
            send(Message(kind: .timeoutNow, from: id, to: target, term: term))
        } else {
            sendAppend(to: target, sendIfEmpty: true)
        }
    }

    /// Compacts the log up to `applied`, replacing the prefix by a snapshot of the application.
    /// The driver persists the snapshot itself before calling this.
    package mutating func compact(snapshotData: [UInt8]) {
        let index = applied
        guard index > snapshot.index else { return }
        let t = termAt(index)!
        let cut = Int(index - snapshot.index)
        entries.removeFirst(cut)
        snapshot = Snapshot(index: index, term: t, voters: voters, learners: learners, data: snapshotData)
    }

    package mutating func step(_ m: Message) {
        if m.term > term {
            let isVote = m.kind == .vote || m.kind == .preVote
            if isVote && m.context == 0 && config.checkQuorum && leader != 0 && electionElapsed < config.electionTicks {
                return  // leader lease: ignore disruptive candidates
            }
            if m.kind == .preVote || (m.kind == .preVoteResp && !m.reject) {
                // pre-votes never change terms
            } else if m.kind == .append || m.kind == .heartbeat || m.kind == .snapshot {
                becomeFollower(term: m.term, leader: m.from)
            } else {
                becomeFollower(term: m.term, leader: 0)
            }
        } else if m.term < term {
            if (config.checkQuorum || config.preVote) && (m.kind == .append || m.kind == .heartbeat) {
                send(Message(kind: .appendResp, from: id, to: m.from, term: term))
            } else if m.kind == .preVote {
                send(Message(kind: .preVoteResp, from: id, to: m.from, term: term, reject: true))
            }
            return
        }

        switch m.kind {
        case .preVote, .vote:
            let canVote =
                vote == m.from || (vote == 0 && leader == 0) || (m.kind == .preVote && m.term > term)
            let upToDate = m.logTerm > lastTerm || (m.logTerm == lastTerm && m.index >= lastIndex)
            let respKind: MessageKind = m.kind == .vote ? .voteResp : .preVoteResp
            if canVote && upToDate {
                send(Message(kind: respKind, from: id, to: m.from, term: m.term))
                if m.kind == .vote {
                    electionElapsed = 0
                    vote = m.from
                }
            } else {
                send(Message(kind: respKind, from: id, to: m.from, term: term, reject: true))
            }
            return
        default: break
        }

        switch role {
        case .leader: stepLeader(m)
        case .candidate, .preCandidate: stepCandidate(m)
        case .follower: stepFollower(m)
        }
    }

    // MARK: Ready / advance.

    package var hasReady: Bool {
        !messages.isEmpty || !readStates.isEmpty || pendingSnapshot != nil || lastIndex > stableIndex
            || hardState != prevHardState || Swift.min(commit, stableIndex) > applied
    }

    package var hardState: HardState { HardState(term: term, vote: vote, commit: commit) }

    package mutating func ready() -> Ready {
        var rd = Ready()
        if hardState != prevHardState { rd.hardState = hardState }
        rd.snapshot = pendingSnapshot
        let unstableFrom = Swift.max(stableIndex, snapshot.index) + 1
        if lastIndex >= unstableFrom { rd.entries = entriesFrom(unstableFrom, through: lastIndex) }
        let applyFrom = pendingSnapshot.map { $0.index } ?? applied
        let applyTo = Swift.min(commit, stableIndex)
        if applyTo > applyFrom { rd.committedEntries = entriesFrom(applyFrom + 1, through: applyTo) }
        rd.messages = messages
        messages.removeAll()
        rd.readStates = readStates
        readStates.removeAll()
        return rd
    }

    package mutating func advance(_ rd: Ready) {
        if let hs = rd.hardState { prevHardState = hs }
        if let s = rd.snapshot {
            applied = Swift.max(applied, s.index)
            stableIndex = Swift.max(stableIndex, s.index)
            if pendingSnapshot?.index == s.index { pendingSnapshot = nil }
        }
        if let last = rd.entries.last, termAt(last.index) == last.term {
            stableIndex = Swift.max(stableIndex, last.index)
        }
        for e in rd.committedEntries {
            if e.kind == .configuration && e.index > configurationIndex {
                configurationIndex = e.index
                applyConfiguration(Configuration.decode(e.data))
            }
            applied = Swift.max(applied, e.index)
        }
        if role == .leader {
            progress[id]?.match = stableIndex
            progress[id]?.next = stableIndex + 1
            if maybeCommit() { broadcastAppend() }
        }
    }

    // MARK: Roles.

    private mutating func resetTimers() {
        electionElapsed = 0
        heartbeatElapsed = 0
        randomizedElectionTimeout = config.electionTicks + Int(rng.below(UInt64(config.electionTicks)))
    }

    private mutating func reset(term newTerm: UInt64) {
        if newTerm != term {
            term = newTerm
            vote = 0
        }
        leader = 0
        resetTimers()
        votes.removeAll()
        leadTransferee = 0
        pendingReads.removeAll()
        progress.removeAll()
    }

    private mutating func becomeFollower(term newTerm: UInt64, leader newLeader: NodeID) {
        reset(term: newTerm)
        role = .follower
        leader = newLeader
    }

    private mutating func campaign(transfer: Bool) {
        if config.preVote && !transfer {
            role = .preCandidate
            votes = [id: true]
            leader = 0
            resetTimers()
            if voters.count == 1 { becomeCandidateAndVote(transfer: false) }
            for v in voters where v != id {
                send(
                    Message(
                        kind: .preVote, from: id, to: v, term: term + 1, logTerm: lastTerm, index: lastIndex))
            }
        } else {
            becomeCandidateAndVote(transfer: transfer)
        }
    }

    private mutating func becomeCandidateAndVote(transfer: Bool) {
        reset(term: term + 1)
        role = .candidate
        vote = id
        votes = [id: true]
        if voters.count == 1 {
            becomeLeader()
            return
        }
        for v in voters where v != id {
            send(
                Message(
                    kind: .vote, from: id, to: v, term: term, logTerm: lastTerm, index: lastIndex,
                    context: transfer ? 1 : 0))
        }
    }

    private mutating func becomeLeader() {
        reset(term: term)
        role = .leader
        leader = id
        for v in voters + learners { progress[v] = Progress(next: lastIndex + 1) }
        progress[id]!.match = stableIndex
        progress[id]!.recentActive = true
        pendingConfigurationIndex = lastIndex  // conservatively wait for anything uncommitted
        _ = appendLocal([Entry(term: term, index: 0)])
    }

    private mutating func stepCandidate(_ m: Message) {
        switch m.kind {
        case .append, .heartbeat, .snapshot:
            becomeFollower(term: m.term, leader: m.from)
            stepFollower(m)
        case .preVoteResp where role == .preCandidate, .voteResp where role == .candidate:
            votes[m.from] = !m.reject
            let granted = voters.filter { votes[$0] == true }.count
            let rejected = voters.filter { votes[$0] == false }.count
            if granted >= quorum && isPromotable {
                if role == .preCandidate {
                    becomeCandidateAndVote(transfer: false)
                } else {
                    becomeLeader()
                    broadcastAppend()
                }
            } else if rejected >= quorum {
                becomeFollower(term: term, leader: 0)
            }
        default: break
        }
    }

    private mutating func stepFollower(_ m: Message) {
        switch m.kind {
        case .append:
            electionElapsed = 0
            leader = m.from
            handleAppend(m)
        case .heartbeat:
            electionElapsed = 0
            leader = m.from
            if m.commit > commit {
                precondition(m.commit <= lastIndex, "heartbeat commit \(m.commit) beyond last index \(lastIndex)")
                commit = m.commit
            }
            send(Message(kind: .heartbeatResp, from: id, to: m.from, term: term, context: m.context))
        case .snapshot:
            electionElapsed = 0
            leader = m.from
            handleSnapshot(m)
        case .timeoutNow:
            if isPromotable { campaign(transfer: true) }
        case .readIndexResp:
            readStates.append(ReadState(index: m.index, context: m.context))
        default: break
        }
    }

    private mutating func handleAppend(_ m: Message) {
        if m.index < commit {
            send(Message(kind: .appendResp, from: id, to: m.from, term: term, index: commit))
            return
        }
        guard termAt(m.index) == m.logTerm else {
            send(
                Message(
                    kind: .appendResp, from: id, to: m.from, term: term, index: m.index, reject: true,
                    rejectHint: Swift.min(m.index, lastIndex)))
            return
        }
        let lastNew = m.index + UInt64(m.entries.count)
        for (i, e) in m.entries.enumerated() where termAt(e.index) != e.term {
            precondition(e.index > commit, "conflict at committed index \(e.index)")
            if e.index <= lastIndex { entries.removeLast(Int(lastIndex - e.index + 1)) }
            stableIndex = Swift.min(stableIndex, e.index - 1)
            entries.append(contentsOf: m.entries[i...])
            break
        }
        let newCommit = Swift.min(m.commit, lastNew)
        if newCommit > commit { commit = newCommit }
        send(Message(kind: .appendResp, from: id, to: m.from, term: term, index: lastNew))
    }

    private mutating func handleSnapshot(_ m: Message) {
        let s = m.snapshot!
        if s.index <= commit {
            send(Message(kind: .appendResp, from: id, to: m.from, term: term, index: commit))
            return
        }
        if termAt(s.index) == s.term {
            commit = s.index  // we already hold this prefix; just fast-forward
        } else {
            snapshot = s
            entries.removeAll()
            commit = s.index
            stableIndex = Swift.min(stableIndex, s.index)
            pendingSnapshot = s
            voters = s.voters
            learners = s.learners
            configurationIndex = s.index
        }
        send(Message(kind: .appendResp, from: id, to: m.from, term: term, index: lastIndex))
    }

    private mutating func stepLeader(_ m: Message) {
        guard progress[m.from] != nil || m.kind == .readIndex else { return }
        switch m.kind {
        case .appendResp:
            progress[m.from]!.recentActive = true
            if m.reject {
                handleReject(m)
            } else {
                handleAppendAck(from: m.from, index: m.index)
            }
        case .heartbeatResp:
            progress[m.from]!.recentActive = true
            var p = progress[m.from]!
            p.probeSent = false
            // A lost snapshot, or a full window of lost appends, is retried from the match point.
            if p.state == .snapshot || (p.state == .replicate && isPaused(p)) { p.becomeProbe() }
            progress[m.from] = p
            if p.match < lastIndex { sendAppend(to: m.from, sendIfEmpty: true) }
            if m.context != 0 { ackRead(context: m.context, from: m.from) }
        case .readIndex:
            guard termAt(commit) == term else { return }  // the follower's client times out and retries
            addRead(context: m.context, from: m.from)
        default: break
        }
    }

    private mutating func handleReject(_ m: Message) {
        var p = progress[m.from]!
        switch p.state {
        case .replicate:
            if m.index <= p.match { return }  // stale
            p.becomeProbe()
        case .probe:
            if m.index != p.next - 1 { return }  // stale
        case .snapshot:
            return
        }
        p.next = Swift.max(Swift.min(m.index, m.rejectHint + 1), p.match + 1)
        p.probeSent = false
        progress[m.from] = p
        sendAppend(to: m.from, sendIfEmpty: true)
    }

    private mutating func handleAppendAck(from: NodeID, index: UInt64) {
        var p = progress[from]!
        let oldPaused = isPaused(p)
        var updated = false
        if index > p.match {
            p.match = index
            p.probeSent = false
            updated = true
        }
        p.next = Swift.max(p.next, index + 1)
        while let f = p.inflights.first, f <= index { p.inflights.removeFirst() }
        switch p.state {
        case .probe: if updated || p.match >= index { p.becomeReplicate() }
        case .snapshot: if p.match >= p.pendingSnapshot { p.becomeProbe() }
        case .replicate: break
        }
        progress[from] = p
        if maybeCommit() {
            broadcastAppend()
        } else if oldPaused || updated {
            // A follower that was paused may have missed a commit advance: tell it even if empty.
            sendAppend(to: from, sendIfEmpty: oldPaused && progress[from]!.match < lastIndex + 1 && commit > 0)
        }
        while progress[from].map({ !isPaused($0) && $0.next <= lastIndex }) == true {
            let before = progress[from]!.next
            sendAppend(to: from, sendIfEmpty: false)
            if progress[from]!.next == before { break }
        }
        if from == leadTransferee && progress[from]!.match == lastIndex {
            send(Message(kind: .timeoutNow, from: id, to: from, term: term))
        }
    }

    private func isPaused(_ p: Progress) -> Bool {
        switch p.state {
        case .probe: return p.probeSent
        case .replicate: return p.inflights.count >= config.maxInflightMessages
        case .snapshot: return true
        }
    }

    private mutating func appendLocal(_ new: [Entry]) -> UInt64 {
        var index = lastIndex
        for var e in new {
            index += 1
            e.index = index
            e.term = term
            entries.append(e)
        }
        broadcastAppend()
        return index
    }

    private mutating func maybeCommit() -> Bool {
        var matches = voters.map { $0 == id ? stableIndex : (progress[$0]?.match ?? 0) }
        guard !matches.isEmpty else { return false }
        matches.sort(by: >)
        let candidate = matches[quorum - 1]
        if candidate > commit && termAt(candidate) == term {
            commit = candidate
            return true
        }
        return false
    }

    private mutating func broadcastAppend() {
        for k in progress.keys.sorted() where k != id { sendAppend(to: k, sendIfEmpty: true) }
    }

    private mutating func broadcastHeartbeat(context: UInt64) {
        for k in progress.keys.sorted() where k != id {
            let c = Swift.min(progress[k]!.match, commit)
            send(Message(kind: .heartbeat, from: id, to: k, term: term, commit: c, context: context))
        }
    }

    private mutating func sendAppend(to: NodeID, sendIfEmpty: Bool) {
        guard var p = progress[to], !isPaused(p) else { return }
        let prev = p.next - 1
        guard let prevTerm = termAt(prev) else {
            // The entries are compacted: send the snapshot.
            p.state = .snapshot
            p.pendingSnapshot = snapshot.index
            p.inflights.removeAll()
            progress[to] = p
            send(Message(kind: .snapshot, from: id, to: to, term: term, snapshot: snapshot))
            return
        }
        let ents = entriesFrom(p.next, through: lastIndex, max: config.maxEntriesPerMessage)
        if ents.isEmpty && !sendIfEmpty { return }
        send(
            Message(
                kind: .append, from: id, to: to, term: term, logTerm: prevTerm, index: prev, entries: ents,
                commit: commit))
        switch p.state {
        case .replicate:
            if let last = ents.last {
                p.next = last.index + 1
                p.inflights.append(last.index)
            }
        case .probe: p.probeSent = true
        case .snapshot: break
        }
        progress[to] = p
    }

    private mutating func send(_ m: Message) { messages.append(m) }

    private mutating func addRead(context: UInt64, from: NodeID) {
        if voters.count == 1 {
            respondRead(context: context, index: commit, to: from)
            return
        }
        pendingReads.append((context, commit, from, [id]))
        broadcastHeartbeat(context: context)
    }

    private mutating func ackRead(context: UInt64, from: NodeID) {
        guard let i = pendingReads.firstIndex(where: { $0.context == context }) else { return }
        pendingReads[i].acks.insert(from)
        guard voters.filter({ pendingReads[i].acks.contains($0) }).count >= quorum else { return }
        // An ack of a later request confirms leadership for all earlier ones too.
        let done = pendingReads[...i]
        pendingReads.removeFirst(i + 1)
        for r in done { respondRead(context: r.context, index: r.index, to: r.from) }
    }

    private mutating func respondRead(context: UInt64, index: UInt64, to: NodeID) {
        if to == id {
            readStates.append(ReadState(index: index, context: context))
        } else {
            send(Message(kind: .readIndexResp, from: id, to: to, term: term, index: index, context: context))
        }
    }

    private mutating func applyConfiguration(_ m: Membership) {
        voters = m.voters
        learners = m.learners
        if role != .leader && role != .follower && !voters.contains(id) {
            becomeFollower(term: term, leader: 0)  // a removed node stops campaigning
            return
        }
        guard role == .leader else { return }
        if !voters.contains(id) {
            becomeFollower(term: term, leader: 0)
            return
        }
        for v in voters + learners where progress[v] == nil { progress[v] = Progress(next: lastIndex + 1) }
        for k in progress.keys where !m.contains(k) { progress[k] = nil }
        if leadTransferee != 0 && !voters.contains(leadTransferee) { leadTransferee = 0 }
        if maybeCommit() { broadcastAppend() }
        broadcastAppend()
    }
}
