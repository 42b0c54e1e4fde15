// Load client for a cluster of `shoal raft run` processes (plain TCP, the KV client protocol):
// commits/s and commit latency with many requests outstanding, so the leader batches them into
// group commits. Used by `shoal raft load` and bench/raft/processes.sh.
//
//   find the leader (the node that applies a probe put; followers name the leader)
//   → `clients` threads, each with one persistent connection to the leader, each looping
//     put → wait for the reply (answered once applied on the leader, so durable on a majority)
//   → latencies of the replies that arrive after the warm-up, until the deadline
//
// The server serves each connection on its own thread, so `clients` connections are `clients`
// proposals in flight. A reply other than success (leader change, unknown outcome) is counted
// as a failure and the thread stops: the figures are for a stable leader.

import Dispatch
import Foundation
import Glibc
import Synchronization

package enum RaftLoadClient {
    /// The leader's id: only the leader applies a put (followers answer reads too, through
    /// ReadIndex, so a read would not tell); a follower's refusal names the leader to try next.
    package static func findLeader(_ peers: [NodeID: String], timeoutSeconds: Double) -> NodeID? {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        let client = RaftClient(peers: peers)
        var probe = UInt64.random(in: 1...UInt64.max >> 1)
        var target = peers.keys.sorted().first!
        while Date() < deadline {
            probe += 1
            let put = KVRequest(id: probe, command: .put(key: "bench-probe", value: [1]))
            if let reply = client.roundTrip(peers[target]!, RaftClient.submitPayload(put)) {
                var r = ByteReader(reply)
                let status = (try? r.u8()) ?? 255
                let hint = (try? r.u64()) ?? 0
                if status == 0 { return target }
                if status == 1 && hint != 0 && peers[hint] != nil {
                    target = hint
                    continue
                }
            }
            let ids = peers.keys.sorted()
            target = ids[(ids.firstIndex(of: target)! + 1) % ids.count]
            usleep(100_000)
        }
        return nil
    }

    /// Runs the load against the leader; `nodes`/`encrypted` only label the result.
    package static func run(
        peers: [NodeID: String], clients: Int, seconds: Double, warmupSeconds: Double = 1, valueBytes: Int = 128,
        nodes: Int, encrypted: Bool
    ) throws(TCPError) -> (result: RaftBenchResult, failures: Int) {
        guard let leader = findLeader(peers, timeoutSeconds: 30) else {
            throw .protocolError("no leader among \(peers.values.sorted()) within 30 s")
        }
        let address = peers[leader]!
        let value = [UInt8](repeating: 0x5A, count: valueBytes)
        let latencies = Mutex<[UInt64]>([])
        let failures = Atomic<Int>(0)
        let base = DispatchTime.now().uptimeNanoseconds
        let measureFrom = base + UInt64(warmupSeconds * 1e9)
        let stopAt = measureFrom + UInt64(seconds * 1e9)
        let group = DispatchGroup()
        for c in 0..<clients {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let fd = try? Sock.connect(address, timeoutSeconds: 10) else {
                    failures.add(1, ordering: .relaxed)
                    return
                }
                defer { close(fd) }
                var local: [UInt64] = []
                var i: UInt64 = 0
                while true {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    guard t0 < stopAt else { break }
                    i += 1
                    let req = KVRequest(
                        id: UInt64(c + 1) << 40 | i, command: .put(key: "k\(c)-\(i % 100)", value: value))
                    guard Sock.writeAll(fd, Sock.frame(2, RaftClient.submitPayload(req))),
                        let (type, reply) = Sock.readFrame(fd), type == 3, reply.first == 0
                    else {
                        failures.add(1, ordering: .relaxed)
                        break
                    }
                    let t1 = DispatchTime.now().uptimeNanoseconds
                    if t0 >= measureFrom && t1 <= stopAt { local.append(t1 - t0) }
                }
                latencies.withLock { $0 += local }
            }.start()
        }
        group.wait()
        let lat = latencies.withLock { $0 }.sorted()
        let result = RaftBenchResult(
            nodes: nodes, encrypted: encrypted, commits: lat.count, seconds: seconds,
            p50Micros: percentileMicros(lat, 0.5), p99Micros: percentileMicros(lat, 0.99), walSyncs: 0)
        return (result, failures.load(ordering: .relaxed))
    }
}
