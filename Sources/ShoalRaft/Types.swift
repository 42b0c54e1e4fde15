// Raft value types shared by the core, the driver and the tests.
//
// Everything here is a plain value: the core (`RawNode`) consumes `Message`s and produces a `Ready`
// holding entries, a hard state, a snapshot and messages; the driver persists, sends and applies.

/// A node identifier; 0 means "none".
package typealias NodeID = UInt64

package enum EntryKind: UInt8, Sendable, Equatable {
    /// Application data (may be empty: the no-op a new leader appends).
    case normal = 0
    /// A configuration: `data` is the full new membership, voters and learners (see `Configuration`).
    case configuration = 1
}

package struct Entry: Sendable, Equatable {
    package var term: UInt64
    package var index: UInt64
    package var kind: EntryKind
    package var data: [UInt8]

    package init(term: UInt64, index: UInt64, kind: EntryKind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }
}

/// State that must be on stable storage before any message of the same `Ready` is sent.
package struct HardState: Sendable, Equatable {
    package var term: UInt64 = 0
    package var vote: NodeID = 0
    /// Invariant: `commit` never exceeds the last persisted index.
    package var commit: UInt64 = 0

    package init(term: UInt64 = 0, vote: NodeID = 0, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// A compacted prefix of the log: the state machine image at `index` and the membership (voters
/// and learners) at that point.
package struct Snapshot: Sendable, Equatable {
    package var index: UInt64 = 0
    package var term: UInt64 = 0
    package var voters: [NodeID] = []
    package var learners: [NodeID] = []
    package var data: [UInt8] = []

    package init(
        index: UInt64 = 0, term: UInt64 = 0, voters: [NodeID] = [], learners: [NodeID] = [], data: [UInt8] = []
    ) {
        self.index = index
        self.term = term
        self.voters = voters
        self.learners = learners
        self.data = data
    }
}

package enum MessageKind: UInt8, Sendable, Equatable, CaseIterable {
    case preVote = 1
    case preVoteResp, vote, voteResp
    case append, appendResp, heartbeat, heartbeatResp, snapshot
    case timeoutNow, readIndex, readIndexResp
}

package struct Message: Sendable, Equatable {
    package var kind: MessageKind
    package var from: NodeID
    package var to: NodeID
    package var term: UInt64
    /// append: term of `index`; votes: term of the candidate's last entry.
    package var logTerm: UInt64 = 0
    /// append: index preceding `entries`; appendResp: the last matching (or rejected) index;
    /// votes: the candidate's last index; readIndexResp: the read index.
    package var index: UInt64 = 0
    package var entries: [Entry] = []
    package var commit: UInt64 = 0
    package var reject: Bool = false
    /// appendResp with reject: the follower's last index, to skip back quickly.
    package var rejectHint: UInt64 = 0
    package var snapshot: Snapshot? = nil
    /// votes: 1 when campaigning for a leader transfer (bypasses the leader lease);
    /// heartbeats and reads: the ReadIndex request context.
    package var context: UInt64 = 0

    package init(
        kind: MessageKind, from: NodeID, to: NodeID, term: UInt64, logTerm: UInt64 = 0, index: UInt64 = 0,
        entries: [Entry] = [], commit: UInt64 = 0, reject: Bool = false, rejectHint: UInt64 = 0,
        snapshot: Snapshot? = nil, context: UInt64 = 0
    ) {
        self.kind = kind
        self.from = from
        self.to = to
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.reject = reject
        self.rejectHint = rejectHint
        self.snapshot = snapshot
        self.context = context
    }
}

/// A linearizable read point: once the local state machine has applied `index`, reading it answers
/// the request identified by `context`.
package struct ReadState: Sendable, Equatable {
    package var index: UInt64
    package var context: UInt64
}

package enum Role: String, Sendable, Equatable {
    case follower, preCandidate, candidate, leader
}

/// What the driver must do, in order: persist `snapshot`, `entries` (truncating any stored suffix
/// from the first entry's index) and `hardState`, fsync; then send `messages`; then apply
/// `snapshot` and `committedEntries`; then call `RawNode.advance(_:)`.
package struct Ready: Sendable {
    package var hardState: HardState? = nil
    package var entries: [Entry] = []
    package var snapshot: Snapshot? = nil
    package var committedEntries: [Entry] = []
    package var messages: [Message] = []
    package var readStates: [ReadState] = []

    package var isEmpty: Bool {
        hardState == nil && entries.isEmpty && snapshot == nil && committedEntries.isEmpty && messages.isEmpty
            && readStates.isEmpty
    }
}

/// Cluster membership. Voters elect the leader and make up every quorum (commit, votes,
/// check-quorum, ReadIndex); learners receive the log and snapshots and nothing else counts them.
/// Invariant: both lists sorted, disjoint, and free of 0.
package struct Membership: Sendable, Equatable {
    package var voters: [NodeID]
    package var learners: [NodeID]

    package init(voters: [NodeID], learners: [NodeID] = []) {
        self.voters = voters.sorted()
        self.learners = learners.sorted()
    }

    package func contains(_ id: NodeID) -> Bool { voters.contains(id) || learners.contains(id) }
}

/// One membership change. Changes are single-server: each moves one node, and the voter set
/// changes by at most one node, so old and new voter majorities always intersect.
package enum ConfChange: Sendable, Equatable {
    /// A new voter (it starts empty and catches up while already counted in the quorum).
    case addVoter(NodeID)
    /// A new non-voting member: replicated to, never counted, never campaigns.
    case addLearner(NodeID)
    /// A caught-up learner becomes a voter (see `RawNode.proposeConfChange`).
    case promote(NodeID)
    /// Removes a voter or a learner.
    case remove(NodeID)

    package var node: NodeID {
        switch self {
        case .addVoter(let id), .addLearner(let id), .promote(let id), .remove(let id): return id
        }
    }

    /// The change's code in the client protocol (TCPTransport): 1 add voter, 2 add learner,
    /// 3 promote, 4 remove.
    package var wireCode: UInt8 {
        switch self {
        case .addVoter: return 1
        case .addLearner: return 2
        case .promote: return 3
        case .remove: return 4
        }
    }

    package init?(wireCode: UInt8, node: NodeID) {
        let make: [UInt8: (NodeID) -> ConfChange] = [
            1: Self.addVoter, 2: Self.addLearner, 3: Self.promote, 4: Self.remove,
        ]
        guard let m = make[wireCode] else { return nil }
        self = m(node)
    }

    /// The membership after this change, or nil when it does not apply to `m`.
    package func applied(to m: Membership) -> Membership? {
        switch self {
        case .addVoter(let id):
            guard id != 0, !m.contains(id) else { return nil }
            return Membership(voters: m.voters + [id], learners: m.learners)
        case .addLearner(let id):
            guard id != 0, !m.contains(id) else { return nil }
            return Membership(voters: m.voters, learners: m.learners + [id])
        case .promote(let id):
            guard m.learners.contains(id) else { return nil }
            return Membership(voters: m.voters + [id], learners: m.learners.filter { $0 != id })
        case .remove(let id):
            guard m.contains(id), m.voters != [id] else { return nil }
            return Membership(voters: m.voters.filter { $0 != id }, learners: m.learners.filter { $0 != id })
        }
    }
}

/// The membership as carried by configuration entries and snapshots: the voters as little-endian
/// UInt64s, then, only when there are learners, a 0 (never a node id) and the learners. A list
/// without learners is therefore the voter-only format of earlier versions, which still decodes.
package enum Configuration {
    package static func encode(_ voters: [NodeID], learners: [NodeID] = []) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity((voters.count + learners.count + 1) * 8)
        func put(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        for v in voters.sorted() { put(v) }
        if !learners.isEmpty {
            put(0)
            for l in learners.sorted() { put(l) }
        }
        return out
    }

    package static func encode(_ m: Membership) -> [UInt8] { encode(m.voters, learners: m.learners) }

    package static func decode(_ bytes: [UInt8]) -> Membership {
        precondition(bytes.count % 8 == 0, "configuration entry of \(bytes.count) bytes")
        var voters: [NodeID] = []
        var learners: [NodeID] = []
        var seenSeparator = false
        var i = 0
        while i < bytes.count {
            var v: UInt64 = 0
            for j in 0..<8 { v |= UInt64(bytes[i + j]) << (8 * UInt64(j)) }
            i += 8
            if v == 0 {
                seenSeparator = true
            } else if seenSeparator {
                learners.append(v)
            } else {
                voters.append(v)
            }
        }
        return Membership(voters: voters, learners: learners)
    }
}

/// State recovered from storage (or the bootstrap state) to build a `RawNode`.
package struct RaftInitialState: Sendable {
    package var hardState: HardState
    package var snapshot: Snapshot
    package var entries: [Entry]

    package init(hardState: HardState = HardState(), snapshot: Snapshot = Snapshot(), entries: [Entry] = []) {
        self.hardState = hardState
        self.snapshot = snapshot
        self.entries = entries
    }

    /// The first members of a cluster all start from this identical, committed state: one
    /// configuration entry at index 1, term 1. A node joining later starts empty.
    package static func bootstrap(voters: [NodeID]) -> RaftInitialState {
        RaftInitialState(
            hardState: HardState(term: 1, vote: 0, commit: 1), snapshot: Snapshot(),
            entries: [Entry(term: 1, index: 1, kind: .configuration, data: Configuration.encode(voters))])
    }
}

/// SplitMix64: the core's only source of randomness, seeded by the caller so runs replay.
package struct SplitMix64: Sendable {
    private var state: UInt64
    package init(seed: UInt64) { state = seed }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in 0..<bound.
    package mutating func below(_ bound: UInt64) -> UInt64 { bound == 0 ? 0 : next() % bound }
    package mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }
}
