// The driver: runs one RawNode for real on its own thread.
//
//   inbox (messages, proposals, reads; any thread) ──► driver thread:
//     step inbound · tick on the clock · ready() → DurableStorage.save (group commit, fsync)
//     → transport.send → apply to the KV state machine → answer waiters → advance()
//     → snapshot + compaction every `snapshotEntries` applied entries
//
// Persist-before-send: no vote, vote answer or append acknowledgment leaves before the entries
// and hard state of its Ready are fsynced, so none is lost by a crash. Only a leader's appends
// and heartbeats go out while its own fsync runs (it counts itself only once persisted). A client
// is answered only when its command is applied (it is committed, hence durable on a majority).

import Dispatch
import Foundation
import ShoalStorage
import Synchronization

package protocol RaftTransport: Sendable {
    /// Best effort: Raft tolerates loss, duplication and reordering.
    func send(_ messages: [Message])
}

package enum RaftNodeError: Error, Sendable, Equatable, CustomStringConvertible {
    case notLeader(leader: NodeID)
    /// The command may or may not have been applied (leadership changed, or the wait timed out).
    case unknownOutcome
    case stopped
    /// The leader refused the request (a membership change that does not apply, is pending, or
    /// promotes a learner that has not caught up); the reason names the `RaftError`.
    case refused(String)
    package var description: String {
        switch self {
        case .refused(let why): return "refused by the leader: \(why)"
        case .notLeader(let l): return l == 0 ? "no leader known" : "not the leader; try node \(l)"
        case .unknownOutcome: return "outcome unknown (leadership changed or timed out)"
        case .stopped: return "node stopped"
        }
    }
}

package struct RaftNodeOptions: Sendable {
    package var id: NodeID
    package var voters: [NodeID]
    package var dataDirectory: String
    package var encrypt = false
    package var autolock = false
    package var unlockKey: String? = nil
    package var tickMilliseconds = 20
    package var electionTicks = 10
    package var snapshotEntries: UInt64 = 10_000
    package var seed: UInt64 = 0
    /// Start with an empty log instead of bootstrapping `voters` (a node joining a running
    /// cluster, which the leader then adds as a learner or voter).
    package var join = false

    package init(id: NodeID, voters: [NodeID], dataDirectory: String) {
        self.id = id
        self.voters = voters
        self.dataDirectory = dataDirectory
    }
}

package struct RaftNodeStatus: Sendable, Equatable {
    package var role: Role = .follower
    package var term: UInt64 = 0
    package var leader: NodeID = 0
    package var commit: UInt64 = 0
    package var applied: UInt64 = 0
    package var walSyncs = 0
    package var membership = Membership(voters: [])
}

package typealias KVCallback = @Sendable (Result<KVResult, RaftNodeError>) -> Void

package final class RaftNode: Sendable {
    fileprivate struct Inbox {
        var messages: [Message] = []
        var proposals: [(KVRequest, KVCallback)] = []
        var reads: [(String, KVCallback)] = []
        var transfers: [NodeID] = []
        var confChanges: [(ConfChange, KVCallback)] = []
        var stopped = false
    }

    package let id: NodeID
    private let inbox = Mutex(Inbox())
    private let wake = DispatchSemaphore(value: 0)
    private let statusBox = Mutex(RaftNodeStatus())
    private let done = DispatchSemaphore(value: 0)
    /// The unlock key created with autolock, shown once to the operator.
    package let createdUnlockKey: String?

    package var status: RaftNodeStatus { statusBox.withLock { $0 } }

    /// Opens (or creates) the node's storage and starts the driver thread.
    package init(options: RaftNodeOptions, transport: any RaftTransport) throws {
        id = options.id
        try FileIO.makeDirectory(options.dataDirectory)
        var ring: KeyRing? = nil
        var created: String? = nil
        if options.encrypt || KeyRing.exists(directory: options.dataDirectory) {
            if KeyRing.exists(directory: options.dataDirectory) {
                ring = try KeyRing.open(directory: options.dataDirectory, unlockKey: options.unlockKey)
            } else {
                (ring, created) = try KeyRing.create(directory: options.dataDirectory, autolock: options.autolock)
            }
        }
        createdUnlockKey = created
        let storage = try DurableStorage(directory: options.dataDirectory, keyRing: ring)
        var state = storage.initialState
        if storage.isEmpty && !options.join {
            state = RaftInitialState.bootstrap(voters: options.voters)
            try storage.save(Ready(hardState: state.hardState, entries: state.entries))
        }
        var config = RaftConfig(
            id: options.id, seed: options.seed == 0 ? UInt64.random(in: 1...UInt64.max) : options.seed)
        config.electionTicks = options.electionTicks
        let driver = Driver(
            raft: RawNode(config: config, state: state), storage: storage,
            sm: try KVStateMachine.restore(state.snapshot), transport: transport, options: options)
        let box = UnsafeTransfer(driver)
        let thread = Thread { [self] in
            box.value.run(node: self)
            self.done.signal()
        }
        thread.name = "raft-\(options.id)"
        thread.start()
    }

    // MARK: Inputs (any thread).

    package func deliver(_ m: Message) {
        inbox.withLock { $0.messages.append(m) }
        wake.signal()
    }

    package func deliver(_ ms: [Message]) {
        guard !ms.isEmpty else { return }
        inbox.withLock { $0.messages += ms }
        wake.signal()
    }

    package func submit(_ request: KVRequest, _ callback: @escaping KVCallback) {
        inbox.withLock { $0.proposals.append((request, callback)) }
        wake.signal()
    }

    /// A linearizable read through ReadIndex.
    package func read(_ key: String, _ callback: @escaping KVCallback) {
        inbox.withLock { $0.reads.append((key, callback)) }
        wake.signal()
    }

    /// Proposes a membership change on the leader; the callback gets `.ok` once the change is
    /// applied here (so committed), or why not.
    package func changeMembership(_ change: ConfChange, _ callback: @escaping KVCallback) {
        inbox.withLock { $0.confChanges.append((change, callback)) }
        wake.signal()
    }

    package func transferLeadership(to target: NodeID) {
        inbox.withLock { $0.transfers.append(target) }
        wake.signal()
    }

    /// Blocking helpers for tests, the CLI server and the benchmark.
    package func submitAndWait(_ request: KVRequest, timeoutSeconds: Double = 5) -> Result<KVResult, RaftNodeError> {
        Self.wait(timeoutSeconds) { submit(request, $0) }
    }

    package func readAndWait(_ key: String, timeoutSeconds: Double = 5) -> Result<KVResult, RaftNodeError> {
        Self.wait(timeoutSeconds) { read(key, $0) }
    }

    package func changeMembershipAndWait(
        _ change: ConfChange, timeoutSeconds: Double = 5
    ) -> Result<KVResult, RaftNodeError> {
        Self.wait(timeoutSeconds) { changeMembership(change, $0) }
    }

    private static func wait(
        _ timeoutSeconds: Double, _ start: (@escaping KVCallback) -> Void
    ) -> Result<KVResult, RaftNodeError> {
        let box = Mutex<Result<KVResult, RaftNodeError>?>(nil)
        let sem = DispatchSemaphore(value: 0)
        start { r in
            box.withLock { $0 = r }
            sem.signal()
        }
        guard sem.wait(timeout: .now() + timeoutSeconds) == .success else { return .failure(.unknownOutcome) }
        return box.withLock { $0! }
    }

    /// Stops the driver thread and waits for it (storage is closed with it).
    package func stop() {
        inbox.withLock { $0.stopped = true }
        wake.signal()
        done.wait()
    }

    fileprivate func take() -> Inbox {
        inbox.withLock { b in
            let out = b
            b.messages = []
            b.proposals = []
            b.reads = []
            b.transfers = []
            b.confChanges = []
            return out
        }
    }

    fileprivate func waitForWork(until deadline: DispatchTime) { _ = wake.wait(timeout: deadline) }
    fileprivate func publish(_ s: RaftNodeStatus) { statusBox.withLock { $0 = s } }
}

/// Moves a non-Sendable value into the one thread that will own it from then on.
/// Safe here because the creating thread drops its reference right after starting the driver
/// thread, so the value is only ever touched by that thread.
private struct UnsafeTransfer<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

/// Lives on the driver thread only.
private final class Driver {
    var raft: RawNode
    let storage: DurableStorage
    var sm: KVStateMachine
    let transport: any RaftTransport
    let options: RaftNodeOptions
    var waiting: [UInt64: (KVCallback, UInt64)] = [:]  // request id -> (callback, proposal index)
    var reads: [UInt64: (String, KVCallback, UInt64?)] = [:]  // context -> (key, callback, read index)
    var nextContext: UInt64 = 1
    var confWaiting: [(index: UInt64, callback: KVCallback)] = []

    init(
        raft: RawNode, storage: DurableStorage, sm: KVStateMachine, transport: any RaftTransport,
        options: RaftNodeOptions
    ) {
        self.raft = raft
        self.storage = storage
        self.sm = sm
        self.transport = transport
        self.options = options
    }

    func run(node: RaftNode) {
        let tick = UInt64(options.tickMilliseconds) * 1_000_000
        var nextTick = DispatchTime.now().uptimeNanoseconds + tick
        while true {
            node.waitForWork(until: DispatchTime(uptimeNanoseconds: nextTick))
            let inbox = node.take()
            if inbox.stopped {
                failAll(.stopped)
                return
            }
            for m in inbox.messages { raft.step(m) }
            for (req, cb) in inbox.proposals {
                do {
                    let index = try raft.propose(req.encode())
                    waiting[req.id] = (cb, index)
                } catch {
                    cb(.failure(.notLeader(leader: raft.leader)))
                }
            }
            for (key, cb) in inbox.reads {
                let ctx = nextContext
                nextContext += 1
                do {
                    try raft.readIndex(context: ctx)
                    reads[ctx] = (key, cb, nil)
                } catch {
                    cb(.failure(.notLeader(leader: raft.leader)))
                }
            }
            for t in inbox.transfers { try? raft.transferLeader(to: t) }
            for (change, cb) in inbox.confChanges {
                do {
                    confWaiting.append((try raft.proposeConfChange(change), cb))
                } catch .notLeader(let l) {
                    cb(.failure(.notLeader(leader: l)))
                } catch {
                    cb(.failure(.refused("\(error)")))
                }
            }
            let now = DispatchTime.now().uptimeNanoseconds
            while now >= nextTick {
                let wasLeader = raft.role == .leader
                raft.tick()
                if wasLeader && raft.role != .leader { failAll(.unknownOutcome) }
                nextTick += tick
            }
            do {
                try handleReadies()
            } catch {
                // A node that cannot persist must not keep voting or acknowledging.
                FileHandle.standardError.write(Data("raft \(options.id): storage failure: \(error); stopping\n".utf8))
                failAll(.stopped)
                return
            }
            node.publish(
                RaftNodeStatus(
                    role: raft.role, term: raft.term, leader: raft.leader, commit: raft.commit, applied: raft.applied,
                    walSyncs: storage.walSyncs, membership: raft.membership))
        }
    }

    func handleReadies() throws {
        while raft.hasReady {
            let wasLeader = raft.role == .leader
            let rd = raft.ready()
            if wasLeader {
                // A leader may replicate while it writes its own log (Raft thesis §10.2.1): it
                // counts itself in the commit quorum only for entries it has persisted, and its
                // term and vote were persisted before it could become leader. Everything else
                // (votes, acknowledgments) waits for the fsync.
                let early = rd.messages.filter { Self.leaderMaySendEarly($0.kind) }
                transport.send(early)
                try storage.save(rd)
                transport.send(rd.messages.filter { !Self.leaderMaySendEarly($0.kind) })
            } else {
                try storage.save(rd)
                transport.send(rd.messages)
            }
            if let s = rd.snapshot { sm = try KVStateMachine.restore(s) }
            for e in rd.committedEntries {
                guard e.index > sm.appliedIndex else { continue }
                if let (req, result) = sm.apply(e), let (cb, index) = waiting[req.id], index == e.index {
                    waiting[req.id] = nil
                    cb(.success(result))
                }
            }
            for rs in rd.readStates { if reads[rs.context] != nil { reads[rs.context]!.2 = rs.index } }
            raft.advance(rd)
            for ctx in reads.keys.sorted() {
                guard let (key, cb, idx) = reads[ctx], let i = idx, sm.appliedIndex >= i else { continue }
                reads[ctx] = nil
                cb(.success(.value(sm.get(key))))
            }
            while let w = confWaiting.first, raft.applied >= w.index {
                confWaiting.removeFirst()
                w.callback(.success(.ok))
            }
            if wasLeader && raft.role != .leader { failAll(.unknownOutcome) }
            if raft.applied >= raft.snapshot.index + options.snapshotEntries {
                raft.compact(snapshotData: sm.snapshot())
                try storage.saveSnapshot(raft.snapshot)
            }
        }
    }

    static func leaderMaySendEarly(_ k: MessageKind) -> Bool {
        k == .append || k == .heartbeat || k == .snapshot
    }

    func failAll(_ e: RaftNodeError) {
        for (_, (cb, _)) in waiting { cb(.failure(e)) }
        waiting = [:]
        for (_, (_, cb, _)) in reads { cb(.failure(e)) }
        reads = [:]
        for w in confWaiting { w.callback(.failure(e)) }
        confWaiting = []
    }
}

/// An in-process network for tests and benchmarks: delivers directly, with optional cuts.
package final class LocalNetwork: RaftTransport {
    private let nodes = Mutex<[NodeID: RaftNode]>([:])
    private let down = Mutex<Set<NodeID>>([])

    package init() {}

    package func register(_ node: RaftNode) { nodes.withLock { $0[node.id] = node } }
    package func unregister(_ id: NodeID) { _ = nodes.withLock { $0.removeValue(forKey: id) } }
    /// Isolates (or reconnects) a node: its messages in both directions are dropped.
    package func setIsolated(_ id: NodeID, _ isolated: Bool) {
        down.withLock { if isolated { $0.insert(id) } else { $0.remove(id) } }
    }

    package func send(_ messages: [Message]) {
        guard !messages.isEmpty else { return }
        let cut = down.withLock { $0 }
        var byNode: [NodeID: [Message]] = [:]
        for m in messages where !cut.contains(m.from) && !cut.contains(m.to) { byNode[m.to, default: []].append(m) }
        let targets = nodes.withLock { n in byNode.keys.compactMap { n[$0] } }
        for t in targets { t.deliver(byNode[t.id]!) }
    }
}
