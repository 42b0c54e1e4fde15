// `shoal raft run` runs one Raft node (plain TCP transport, durable optionally encrypted storage);
// `shoal raft kv put|get|cas` is a small client that finds the leader; `shoal raft load` drives a
// cluster of such processes with many outstanding puts and prints commits/s and latency.

import ArgumentParser
import Foundation
import ShoalRaft

struct RaftCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft",
        abstract: "Raft consensus node and client.",
        subcommands: [RaftRun.self, RaftKV.self, RaftMember.self, RaftLoad.self, RaftBenchCommand.self])
}

func parsePeers(_ s: String) throws -> [NodeID: String] {
    var out: [NodeID: String] = [:]
    for part in s.split(separator: ",") {
        let kv = part.split(separator: "=", maxSplits: 1)
        guard kv.count == 2, let id = NodeID(kv[0]), id != 0 else {
            throw ValidationError("--peers: expected id=host:port[,id=host:port...], got '\(part)'")
        }
        out[id] = String(kv[1])
    }
    return out
}

struct RaftRun: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run a Raft node.")

    @Option(help: "This node's id (a key of --peers).") var id: UInt64
    @Option(help: "Every node's address: 1=127.0.0.1:7001,2=127.0.0.1:7002,...") var peers: String
    @Option(help: "Voters of a new cluster, comma-separated (default: every node in --peers).") var voters: String?
    @Flag(help: "Start empty and wait for the leader to add this node (shoal raft member).") var join = false
    @Option(help: "Data directory (WAL, snapshots, keyring).") var data: String
    @Flag(help: "Encrypt the data at rest (on first start).") var encrypt = false
    @Flag(help: "With --encrypt: keep the KEK off disk; prints the unlock key once.") var autolock = false
    @Option(help: "Unlock key (SHOAL-KEY-1-...) for autolocked data.") var unlockKey: String?
    @Option(help: "Tick interval in milliseconds (election timeout is 10-20 ticks).") var tickMs = 20
    @Option(help: "Snapshot and compact the log every N applied entries.") var snapshotEntries: UInt64 = 10_000

    func run() throws {
        let peerMap = try parsePeers(peers)
        guard peerMap[id] != nil else { throw ValidationError("--id \(id) is not in --peers") }
        var initial = peerMap.keys.sorted()
        if let v = voters {
            initial = v.split(separator: ",").compactMap { NodeID($0) }
            guard !initial.isEmpty, initial.allSatisfy({ peerMap[$0] != nil }) else {
                throw ValidationError("--voters: expected ids from --peers, comma-separated, got '\(v)'")
            }
        }
        var o = RaftNodeOptions(id: id, voters: initial, dataDirectory: data)
        o.join = join
        o.encrypt = encrypt
        o.autolock = autolock
        o.unlockKey = unlockKey ?? ProcessInfo.processInfo.environment["SHOAL_UNLOCK_KEY"]
        o.tickMilliseconds = tickMs
        o.snapshotEntries = snapshotEntries
        let transport = TCPTransport(id: id, peers: peerMap)
        let node: RaftNode
        do {
            node = try RaftNode(options: o, transport: transport)
        } catch {
            throw ValidationError("cannot start node \(id): \(error)")
        }
        if let key = node.createdUnlockKey {
            FileHandle.standardOutput.write(
                Data("autolock enabled; keep this unlock key, it is not stored anywhere:\n\(key)\n".utf8))
        }
        try transport.start(node: node)
        FileHandle.standardOutput.write(Data("raft node \(id) listening on \(peerMap[id]!)\n".utf8))
        while true { sleep(3600) }
    }
}

struct RaftKV: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv", abstract: "Client: put KEY VALUE | get KEY | cas KEY EXPECTED NEW ('-' = absent).")

    @Option(help: "Cluster nodes: 1=127.0.0.1:7001,...") var peers: String
    @Option(help: "Request id (for retries); random by default.") var requestId: UInt64?
    @Argument(help: "put, get or cas") var op: String
    @Argument var args: [String] = []

    func run() throws {
        let client = RaftClient(peers: try parsePeers(peers))
        let rid = requestId ?? UInt64.random(in: 1...UInt64.max)
        let outcome: RaftClient.Outcome
        switch (op, args.count) {
        case ("put", 2):
            outcome = client.call(
                RaftClient.submitPayload(KVRequest(id: rid, command: .put(key: args[0], value: Array(args[1].utf8)))))
        case ("get", 1):
            outcome = client.call(RaftClient.readPayload(args[0]))
        case ("cas", 3):
            let expected: [UInt8]? = args[1] == "-" ? nil : Array(args[1].utf8)
            outcome = client.call(
                RaftClient.submitPayload(
                    KVRequest(id: rid, command: .cas(key: args[0], expected: expected, new: Array(args[2].utf8)))))
        default:
            throw ValidationError("usage: kv put KEY VALUE | kv get KEY | kv cas KEY EXPECTED NEW")
        }
        switch outcome {
        case .unknown:
            print("unknown")
            throw ExitCode(2)
        case .refused(let why):
            print("refused: \(why)")
            throw ExitCode(1)
        case .result(.ok): print("ok")
        case .result(.value(let v)): print(v.map { String(decoding: $0, as: UTF8.self) } ?? "(absent)")
        case .result(.cas(let ok, let cur)):
            print("\(ok ? "swapped" : "failed") \(cur.map { String(decoding: $0, as: UTF8.self) } ?? "(absent)")")
            if !ok { throw ExitCode(1) }
        }
    }
}

struct RaftMember: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "member",
        abstract: "Membership change on the leader: add-learner ID | promote ID | add-voter ID | remove ID.",
        discussion: """
            One change at a time (single-server). Grow the cluster by starting the new node with \
            `raft run --join`, then `add-learner`, then `promote` once it has caught up (the leader \
            refuses while its log lags; retry).
            """)

    @Option(help: "Cluster nodes: 1=127.0.0.1:7001,...") var peers: String
    @Argument(help: "add-learner, promote, add-voter or remove") var change: String
    @Argument(help: "The node id.") var node: UInt64

    func run() throws {
        let changes: [String: ConfChange] = [
            "add-learner": .addLearner(node), "promote": .promote(node), "add-voter": .addVoter(node),
            "remove": .remove(node),
        ]
        guard let c = changes[change] else {
            throw ValidationError("unknown change '\(change)': add-learner, promote, add-voter or remove")
        }
        switch RaftClient(peers: try parsePeers(peers)).call(RaftClient.confChangePayload(c)) {
        case .result: print("ok")
        case .refused(let why):
            print("refused: \(why)")
            throw ExitCode(1)
        case .unknown:
            print("unknown")
            throw ExitCode(2)
        }
    }
}

/// One markdown row of the Raft benchmark tables (in-process and processes).
func raftBenchRow(_ r: RaftBenchResult, extra: String) -> String {
    "| \(r.nodes) | \(r.encrypted ? "AES-GCM" : "off") | \(Int(r.commitsPerSecond)) | "
        + String(format: "%.2f | %.2f | ", r.p50Micros / 1000, r.p99Micros / 1000) + extra + " |"
}

struct RaftLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Load client: puts with many requests in flight against the leader; prints a benchmark row.")

    @Option(help: "Cluster nodes: 1=127.0.0.1:7001,...") var peers: String
    @Option(help: "Connections to the leader, each with one put in flight.") var clients = 128
    @Option(help: "Seconds measured (after a 1 s warm-up).") var seconds = 5.0
    @Option(help: "Bytes per value.") var valueBytes = 128
    @Option(help: "Label: 'off' or 'AES-GCM' (the client cannot see the nodes' storage).") var encryption = "off"

    func run() throws {
        let p = try parsePeers(peers)
        let (r, failures) = try RaftLoadClient.run(
            peers: p, clients: clients, seconds: seconds, valueBytes: valueBytes, nodes: p.count,
            encrypted: encryption != "off")
        print(raftBenchRow(r, extra: "\(failures)"))
    }
}

struct RaftBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "In-process benchmark: commits/s, commit latency, failover time.")

    @Option(help: "Cluster sizes, comma-separated.") var nodes = "3,5"
    @Option(help: "Concurrent clients.") var clients = 64
    @Option(help: "Seconds per throughput run.") var seconds = 5.0
    @Option(help: "Leader kills for the failover measurement (0 to skip).") var kills = 20
    @Option(help: "Tick interval in milliseconds for the failover runs.") var tickMs = 20
    @Option(help: "Directory on a real disk for the data.") var dir = "/var/tmp"

    func run() throws {
        print("| nodes | encryption | commits/s | p50 ms | p99 ms | fsyncs/s (leader) | CPU µs/commit |")
        print("|---|---|---|---|---|---|---|")
        for n in nodes.split(separator: ",").compactMap({ Int($0) }) {
            for enc in [false, true] {
                let r = try RaftBench.throughput(
                    nodes: n, encrypt: enc, clients: clients, seconds: seconds, directory: dir)
                print(
                    raftBenchRow(
                        r, extra: String(format: "%.0f | %.1f", Double(r.walSyncs) / r.seconds, r.cpuMicrosPerCommit)))
            }
        }
        if kills > 0 {
            let ms = try RaftBench.failover(nodes: 3, kills: kills, tickMs: tickMs, directory: dir).sorted()
            guard !ms.isEmpty else { return }
            func pct(_ p: Double) -> Double { ms[min(ms.count - 1, Int(Double(ms.count) * p))] }
            print(
                "\nfailover (3 nodes, tick \(tickMs) ms, election timeout \(10 * tickMs)-\(20 * tickMs) ms, \(ms.count) kills): "
                    + String(format: "p50 %.0f ms, p99 %.0f ms, max %.0f ms", pct(0.5), pct(0.99), ms.last!))
        }
    }
}
