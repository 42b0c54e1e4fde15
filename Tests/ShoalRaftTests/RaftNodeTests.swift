import Foundation
import ShoalStorage
import Testing

@testable import ShoalRaft

/// A cluster of real nodes (threads, fsynced storage) over the in-process network.
final class LocalCluster {
    let network = LocalNetwork()
    var nodes: [NodeID: RaftNode] = [:]
    let root: String
    let ids: [NodeID]
    let encrypt: Bool

    init(size: Int, encrypt: Bool = false) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("shoal-cluster-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        ids = (1...UInt64(size)).map { $0 }
        self.encrypt = encrypt
        for id in ids { try start(id) }
    }

    func start(_ id: NodeID) throws {
        var o = RaftNodeOptions(id: id, voters: ids, dataDirectory: root + "/n\(id)")
        o.encrypt = encrypt
        o.tickMilliseconds = 10
        o.snapshotEntries = 500
        o.seed = id &* 7919
        let n = try RaftNode(options: o, transport: network)
        nodes[id] = n
        network.register(n)
    }

    func stop(_ id: NodeID) {
        network.unregister(id)
        nodes.removeValue(forKey: id)?.stop()
    }

    func leader(timeoutSeconds: Double = 5) -> NodeID? {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            let leaders = nodes.values.filter { $0.status.role == .leader }
            if let l = leaders.max(by: { $0.status.term < $1.status.term }) { return l.id }
            usleep(5000)
        }
        return nil
    }

    deinit {
        for id in nodes.keys.sorted() { stop(id) }
        try? FileManager.default.removeItem(atPath: root)
    }
}

@Suite(.serialized) struct RaftNodeTests {
    @Test func writesSurviveLeaderCrashAndRestart() throws {
        let c = try LocalCluster(size: 3)
        var acknowledged: [String: [UInt8]] = [:]
        var rid: UInt64 = 1
        func write(_ key: String, _ value: String) -> Bool {
            guard let l = c.leader(), let node = c.nodes[l] else { return false }
            rid += 1
            let r = node.submitAndWait(KVRequest(id: rid, command: .put(key: key, value: Array(value.utf8))))
            if case .success(.ok) = r {
                acknowledged[key] = Array(value.utf8)
                return true
            }
            return false
        }
        for i in 0..<50 { _ = write("k\(i % 10)", "v\(i)") }
        #expect(acknowledged.count == 10)
        let old = try #require(c.leader())
        c.stop(old)
        let start = Date()
        let newLeader = try #require(c.leader())
        #expect(newLeader != old)
        #expect(Date().timeIntervalSince(start) < 2)
        for i in 50..<80 { _ = write("k\(i % 10)", "v\(i)") }
        try c.start(old)
        for i in 80..<100 { _ = write("k\(i % 10)", "v\(i)") }
        // Every acknowledged write is visible through a linearizable read on the leader.
        let l = try #require(c.leader())
        for (k, v) in acknowledged {
            let r = c.nodes[l]!.readAndWait(k)
            #expect(r == .success(.value(v)), "key \(k)")
        }
        // CAS: succeeds once with the right expectation, fails with a stale one.
        rid += 1
        let cur = acknowledged["k0"]!
        #expect(
            c.nodes[l]!.submitAndWait(KVRequest(id: rid, command: .cas(key: "k0", expected: cur, new: [9])))
                == .success(.cas(succeeded: true, current: [9])))
        rid += 1
        #expect(
            c.nodes[l]!.submitAndWait(KVRequest(id: rid, command: .cas(key: "k0", expected: cur, new: [8])))
                == .success(.cas(succeeded: false, current: [9])))
    }

    @Test func followerRedirectsToLeader() throws {
        let c = try LocalCluster(size: 3, encrypt: true)
        let l = try #require(c.leader())
        let f = c.ids.first { $0 != l }!
        let r = c.nodes[f]!.submitAndWait(KVRequest(id: 1, command: .put(key: "a", value: [1])))
        // The follower knows the leader once it has heard from it.
        if case .failure(.notLeader(let hint)) = r { #expect(hint == l || hint == 0) } else { Issue.record("\(r)") }
    }

    /// Autolock: the node refuses to start without the unlock key it printed, and with it reads
    /// its data back.
    @Test func autolockedNodeNeedsItsUnlockKey() throws {
        try withTempDir { dir in
            var o = RaftNodeOptions(id: 1, voters: [1], dataDirectory: dir + "/n1")
            o.encrypt = true
            o.autolock = true
            o.tickMilliseconds = 5
            let net = LocalNetwork()
            let first = try RaftNode(options: o, transport: net)
            let key = try #require(first.createdUnlockKey)
            var ok = false
            for i in 0..<200 where !ok {
                if case .success = first.submitAndWait(
                    KVRequest(id: UInt64(i + 1), command: .put(key: "s", value: [42])))
                {
                    ok = true
                }
                usleep(10_000)
            }
            #expect(ok)
            first.stop()
            #expect(throws: StorageError.self) { _ = try RaftNode(options: o, transport: net) }
            o.unlockKey = key
            let second = try RaftNode(options: o, transport: net)
            defer { second.stop() }
            var value: Result<KVResult, RaftNodeError> = .failure(.unknownOutcome)
            for _ in 0..<200 {
                value = second.readAndWait("s")
                if case .success = value { break }
                usleep(10_000)
            }
            #expect(value == .success(.value([42])))
        }
    }

    @Test func messageCodecRoundTrips() throws {
        let m = Message(
            kind: .append, from: 1, to: 2, term: 7, logTerm: 6, index: 41,
            entries: [
                Entry(term: 7, index: 42, kind: .normal, data: [1, 2, 3]),
                Entry(term: 7, index: 43, kind: .configuration, data: Configuration.encode([1, 2])),
            ],
            commit: 40, reject: true, rejectHint: 39,
            snapshot: Snapshot(index: 30, term: 5, voters: [1, 2, 3], learners: [4], data: [9]), context: 77)
        #expect(try MessageCodec.decode(MessageCodec.encode(m)) == m)
        let snap = m.snapshot!
        #expect(try DurableStorage.decodeSnapshot(DurableStorage.encodeSnapshot(snap)) == snap)
        // Voter-only configurations keep the earlier encoding (plain ids), so old logs still decode.
        #expect(Configuration.encode([2, 1]) == Configuration.encode([1, 2], learners: []))
        #expect(Configuration.encode([1, 2]).count == 16)
        #expect(
            Configuration.decode(Configuration.encode([3, 1], learners: [5, 4]))
                == Membership(voters: [1, 3], learners: [4, 5]))
        #expect(throws: KVDecodeError.self) { _ = try MessageCodec.decode(Array(MessageCodec.encode(m).dropLast())) }
    }
}
