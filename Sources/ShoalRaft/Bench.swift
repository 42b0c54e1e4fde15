// In-process benchmark of real nodes (threads, fsynced WAL, optional encryption at rest) over the
// LocalNetwork: commit throughput and latency under concurrent clients, and leader failover time.
// Used by `shoal raft bench` and bench/raft/run.sh.

import Dispatch
import Foundation
import Synchronization

package struct RaftBenchResult: Sendable {
    package var nodes: Int
    package var encrypted: Bool
    package var commits: Int
    package var seconds: Double
    package var p50Micros: Double
    package var p99Micros: Double
    package var walSyncs: Int
    /// CPU time (user + system) of the whole process over the run: every node and client thread
    /// in-process; 0 when not measured (the load client cannot see the nodes).
    package var cpuSeconds: Double = 0
    package var commitsPerSecond: Double { Double(commits) / seconds }
    /// CPU per commit: steadier than commits/s on a shared machine whose fsync latency wanders.
    package var cpuMicrosPerCommit: Double { commits == 0 ? 0 : cpuSeconds * 1e6 / Double(commits) }
}

/// User + system CPU seconds consumed so far by this process (all threads).
func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return s(u.ru_utime) + s(u.ru_stime)
}

/// The `p` quantile (0...1) of sorted nanosecond latencies, in microseconds; 0 when empty.
package func percentileMicros(_ sortedNanos: [UInt64], _ p: Double) -> Double {
    guard !sortedNanos.isEmpty else { return 0 }
    return Double(sortedNanos[min(sortedNanos.count - 1, Int(Double(sortedNanos.count) * p))]) / 1000
}

package enum RaftBench {
    static func makeCluster(
        size: Int, encrypt: Bool, root: String, network: LocalNetwork, tickMs: Int
    ) throws -> [NodeID: RaftNode] {
        let ids = (1...UInt64(size)).map { $0 }
        var nodes: [NodeID: RaftNode] = [:]
        for id in ids {
            nodes[id] = try start(id, ids: ids, encrypt: encrypt, root: root, network: network, tickMs: tickMs)
        }
        return nodes
    }

    static func start(
        _ id: NodeID, ids: [NodeID], encrypt: Bool, root: String, network: LocalNetwork, tickMs: Int
    ) throws -> RaftNode {
        var o = RaftNodeOptions(id: id, voters: ids, dataDirectory: root + "/n\(id)")
        o.encrypt = encrypt
        o.tickMilliseconds = tickMs
        o.snapshotEntries = 50_000
        let n = try RaftNode(options: o, transport: network)
        network.register(n)
        return n
    }

    static func waitLeader(_ nodes: [NodeID: RaftNode], timeoutSeconds: Double = 10) -> NodeID? {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if let l = nodes.values.filter({ $0.status.role == .leader }).max(by: { $0.status.term < $1.status.term }) {
                return l.id
            }
            usleep(1000)
        }
        return nil
    }

    /// `clients` threads each put in a loop for `seconds` against the leader.
    package static func throughput(
        nodes size: Int, encrypt: Bool, clients: Int, seconds: Double, directory: String, valueBytes: Int = 128
    ) throws -> RaftBenchResult {
        let root = directory + "/raft-bench-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let network = LocalNetwork()
        let nodes = try makeCluster(size: size, encrypt: encrypt, root: root, network: network, tickMs: 20)
        defer { for n in nodes.values { n.stop() } }
        guard let l = waitLeader(nodes) else { throw RaftNodeError.notLeader(leader: 0) }
        let leader = nodes[l]!
        // Warm up (the leader's first entry of its term must commit).
        _ = leader.submitAndWait(KVRequest(id: 1, command: .put(key: "warm", value: [1])))
        let syncsBefore = leader.status.walSyncs
        let latencies = Mutex<[UInt64]>([])
        let stop = Date().addingTimeInterval(seconds)
        let group = DispatchGroup()
        let value = [UInt8](repeating: 0x5A, count: valueBytes)
        let start = DispatchTime.now().uptimeNanoseconds
        let cpuStart = processCPUSeconds()
        for c in 0..<clients {
            group.enter()
            Thread {
                var local: [UInt64] = []
                var i: UInt64 = 0
                while Date() < stop {
                    i += 1
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let r = leader.submitAndWait(
                        KVRequest(id: UInt64(c + 1) << 40 | i, command: .put(key: "k\(c)-\(i % 100)", value: value)))
                    if case .success = r { local.append(DispatchTime.now().uptimeNanoseconds - t0) }
                }
                latencies.withLock { $0 += local }
                group.leave()
            }.start()
        }
        group.wait()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let cpu = processCPUSeconds() - cpuStart
        let lat = latencies.withLock { $0 }.sorted()
        return RaftBenchResult(
            nodes: size, encrypted: encrypt, commits: lat.count, seconds: elapsed,
            p50Micros: percentileMicros(lat, 0.5), p99Micros: percentileMicros(lat, 0.99),
            walSyncs: leader.status.walSyncs - syncsBefore, cpuSeconds: cpu)
    }

    /// Crashes (stops) the leader `kills` times; returns the milliseconds from each crash until a
    /// write commits on a new leader.
    package static func failover(nodes size: Int, kills: Int, tickMs: Int, directory: String) throws -> [Double] {
        let root = directory + "/raft-failover-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let network = LocalNetwork()
        let ids = (1...UInt64(size)).map { $0 }
        var nodes = try makeCluster(size: size, encrypt: false, root: root, network: network, tickMs: tickMs)
        defer { for n in nodes.values { n.stop() } }
        var out: [Double] = []
        var rid: UInt64 = 1
        for _ in 0..<kills {
            guard let l = waitLeader(nodes) else { break }
            rid += 1
            _ = nodes[l]!.submitAndWait(KVRequest(id: rid, command: .put(key: "x", value: [1])))
            let t0 = DispatchTime.now().uptimeNanoseconds
            network.unregister(l)
            nodes.removeValue(forKey: l)!.stop()
            var done = false
            while !done {
                guard let nl = waitLeader(nodes, timeoutSeconds: 30) else { break }
                rid += 1
                if case .success = nodes[nl]!.submitAndWait(
                    KVRequest(id: rid, command: .put(key: "x", value: [2])), timeoutSeconds: 1)
                {
                    done = true
                }
            }
            out.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            nodes[l] = try start(l, ids: ids, encrypt: false, root: root, network: network, tickMs: tickMs)
            usleep(UInt32(tickMs * 1000 * 25))  // let the restarted node catch up and the lease settle
        }
        return out
    }
}
