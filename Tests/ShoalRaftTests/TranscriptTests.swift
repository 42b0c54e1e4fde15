// Transcript tests in the style of etcd's datadriven tests: each testdata/*.txt file is a list of
//
//   # comment
//   command args
//   ----
//   expected output
//   <blank line>
//
// Commands: add-nodes N | campaign ID | propose ID DATA | propose-conf ID V1,V2,.. |
// conf-change ID add-voter|add-learner|promote|remove N | add-empty-node ID | tick ID N |
// deliver | stabilize | process-ready ID | partition A B | heal | crash ID | restart ID |
// read-index ID CTX | transfer-leader FROM TO | compact ID | status.
// `SHOAL_REWRITE=1` rewrites the expected output on purpose; review the diff before committing.

import Foundation
import Testing

@testable import ShoalRaft

struct TranscriptEnv {
    struct Node {
        var raft: RawNode?
        var disk = RaftInitialState()
        var sm = KVStateMachine()
    }
    var nodes: [NodeID: Node] = [:]
    var queue: [Message] = []
    var cut: Set<[NodeID]> = []

    static func config(_ id: NodeID) -> RaftConfig {
        var c = RaftConfig(id: id)
        c.heartbeatTicks = 3
        c.maxPromotionLagEntries = 2
        return c
    }

    static func describe(_ m: Message) -> String {
        var s = "\(m.from)->\(m.to) \(m.kind) term:\(m.term)"
        switch m.kind {
        case .append:
            s += " log:\(m.logTerm)/\(m.index) commit:\(m.commit)"
            if !m.entries.isEmpty { s += " entries:[" + m.entries.map(describe).joined(separator: " ") + "]" }
        case .appendResp:
            s += " index:\(m.index)"
            if m.reject { s += " rejected hint:\(m.rejectHint)" }
        case .vote, .preVote:
            s += " log:\(m.logTerm)/\(m.index)"
            if m.context != 0 { s += " transfer" }
        case .voteResp, .preVoteResp:
            if m.reject { s += " rejected" }
        case .heartbeat:
            s += " commit:\(m.commit)"
            if m.context != 0 { s += " ctx:\(m.context)" }
        case .heartbeatResp, .readIndex:
            if m.context != 0 { s += " ctx:\(m.context)" }
        case .readIndexResp:
            s += " index:\(m.index) ctx:\(m.context)"
        case .snapshot:
            s += " snapshot:\(m.snapshot!.term)/\(m.snapshot!.index) voters:\(m.snapshot!.voters)"
            s += learnersSuffix(m.snapshot!.learners)
        case .timeoutNow:
            break
        }
        return s
    }

    static func describe(_ e: Entry) -> String {
        switch e.kind {
        case .configuration:
            let m = Configuration.decode(e.data)
            return "\(e.term)/\(e.index) conf\(m.voters)" + learnersSuffix(m.learners)
        case .normal: return "\(e.term)/\(e.index) \"\(String(decoding: e.data, as: UTF8.self))\""
        }
    }

    /// Learners are shown only when there are some, so voter-only transcripts read as before.
    static func learnersSuffix(_ learners: [NodeID]) -> String {
        learners.isEmpty ? "" : " learners:\(learners)"
    }

    func status(_ id: NodeID) -> String {
        guard let r = nodes[id]?.raft else { return "\(id): down" }
        return
            "\(id): \(r.role) term:\(r.term) leader:\(r.leader) commit:\(r.commit) applied:\(r.applied) last:\(r.lastTerm)/\(r.lastIndex) voters:\(r.voters)"
            + Self.learnersSuffix(r.learners)
    }

    mutating func processReady(_ id: NodeID, _ out: inout [String]) -> Bool {
        guard var r = nodes[id]?.raft, r.hasReady else { return false }
        let rd = r.ready()
        out.append("> \(id) handling Ready")
        if let hs = rd.hardState { out.append("  HardState term:\(hs.term) vote:\(hs.vote) commit:\(hs.commit)") }
        if let s = rd.snapshot {
            out.append("  Snapshot \(s.term)/\(s.index) voters:\(s.voters)" + Self.learnersSuffix(s.learners))
            nodes[id]!.disk.snapshot = s
            nodes[id]!.disk.entries = []
            nodes[id]!.sm = (try? KVStateMachine.restore(s)) ?? KVStateMachine()
        }
        if !rd.entries.isEmpty {
            out.append("  Entries: " + rd.entries.map(Self.describe).joined(separator: " "))
            let keep = Int(rd.entries[0].index - nodes[id]!.disk.snapshot.index - 1)
            nodes[id]!.disk.entries.removeLast(nodes[id]!.disk.entries.count - keep)
            nodes[id]!.disk.entries += rd.entries
        }
        if let hs = rd.hardState { nodes[id]!.disk.hardState = hs }
        if !rd.committedEntries.isEmpty {
            out.append("  Committed: " + rd.committedEntries.map(Self.describe).joined(separator: " "))
            for e in rd.committedEntries { _ = nodes[id]!.sm.apply(e) }
        }
        for rs in rd.readStates { out.append("  ReadState index:\(rs.index) ctx:\(rs.context)") }
        for m in rd.messages { out.append("  " + Self.describe(m)) }
        queue += rd.messages
        r.advance(rd)
        nodes[id]!.raft = r
        return true
    }

    mutating func deliver(_ out: inout [String]) -> Bool {
        guard !queue.isEmpty else { return false }
        let batch = queue
        queue = []
        for to in Set(batch.map(\.to)).sorted() {
            let ms = batch.filter { $0.to == to }
            var lines: [String] = []
            for m in ms {
                if cut.contains([m.from, m.to]) {
                    lines.append("  " + Self.describe(m) + " DROPPED (partition)")
                } else if nodes[to]?.raft == nil {
                    lines.append("  " + Self.describe(m) + " DROPPED (down)")
                } else {
                    lines.append("  " + Self.describe(m))
                    nodes[to]!.raft!.step(m)
                }
            }
            out.append("> \(to) receiving messages")
            out += lines
        }
        return true
    }

    static func proposal(_ propose: () throws -> UInt64) -> String {
        do { return "proposed at index \(try propose())" } catch { return "error: \(error)" }
    }

    mutating func run(_ line: String) -> String {
        let f = line.split(separator: " ").map(String.init)
        var out: [String] = []
        func id(_ i: Int) -> NodeID { NodeID(f[i])! }
        switch f[0] {
        case "add-nodes":
            let n = Int(f[1])!
            let voters = (1...UInt64(n)).map { $0 }
            for v in voters {
                let st = RaftInitialState.bootstrap(voters: voters)
                nodes[v] = Node(raft: RawNode(config: Self.config(v), state: st), disk: st)
                out.append(status(v))
            }
        case "add-empty-node":
            nodes[id(1)] = Node(raft: RawNode(config: Self.config(id(1)), state: RaftInitialState()))
            out.append(status(id(1)))
        case "campaign":
            nodes[id(1)]!.raft!.campaign()
            out.append(status(id(1)))
        case "propose":
            out.append(Self.proposal { try nodes[id(1)]!.raft!.propose(Array(f[2].utf8)) })
        case "propose-conf":
            out.append(
                Self.proposal {
                    try nodes[id(1)]!.raft!.proposeConfiguration(f[2].split(separator: ",").map { NodeID($0)! })
                })
        case "conf-change":
            let target = id(3)
            let changes: [String: ConfChange] = [
                "add-voter": .addVoter(target), "add-learner": .addLearner(target), "promote": .promote(target),
                "remove": .remove(target),
            ]
            guard let change = changes[f[2]] else {
                out.append("unknown change \(f[2])")
                break
            }
            out.append(Self.proposal { try nodes[id(1)]!.raft!.proposeConfChange(change) })
        case "tick":
            for _ in 0..<Int(f[2])! { nodes[id(1)]!.raft!.tick() }
            out.append(status(id(1)))
        case "process-ready":
            if !processReady(id(1), &out) { out.append("no Ready") }
        case "deliver":
            if !deliver(&out) { out.append("no messages") }
        case "stabilize":
            while true {
                var any = false
                for i in nodes.keys.sorted() where processReady(i, &out) { any = true }
                if deliver(&out) { any = true }
                if !any { break }
            }
            for i in nodes.keys.sorted() { out.append(status(i)) }
        case "partition":
            cut.insert([id(1), id(2)])
            cut.insert([id(2), id(1)])
            out.append("ok")
        case "heal":
            cut.removeAll()
            out.append("ok")
        case "crash":
            nodes[id(1)]!.raft = nil
            out.append(status(id(1)))
        case "restart":
            nodes[id(1)]!.raft = RawNode(config: Self.config(id(1)), state: nodes[id(1)]!.disk)
            nodes[id(1)]!.sm = (try? KVStateMachine.restore(nodes[id(1)]!.disk.snapshot)) ?? KVStateMachine()
            out.append(status(id(1)))
        case "read-index":
            do {
                try nodes[id(1)]!.raft!.readIndex(context: UInt64(f[2])!)
                out.append("ok")
            } catch { out.append("error: \(error)") }
        case "transfer-leader":
            do {
                try nodes[id(1)]!.raft!.transferLeader(to: id(2))
                out.append("ok")
            } catch { out.append("error: \(error)") }
        case "compact":
            var r = nodes[id(1)]!.raft!
            r.compact(snapshotData: nodes[id(1)]!.sm.snapshot())
            nodes[id(1)]!.raft = r
            nodes[id(1)]!.disk.snapshot = r.snapshot
            nodes[id(1)]!.disk.entries = r.entries.filter { $0.index <= r.stableIndex }
            out.append("snapshot at \(r.snapshot.term)/\(r.snapshot.index)")
        case "status":
            for i in nodes.keys.sorted() { out.append(status(i)) }
        default:
            out.append("unknown command \(f[0])")
        }
        return out.joined(separator: "\n")
    }
}

@Suite struct TranscriptTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata")

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasSuffix(".txt") }
            .sorted()
    }

    @Test(arguments: files) func transcript(_ name: String) throws {
        let path = Self.dir.appendingPathComponent(name).path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var env = TranscriptEnv()
        var rewritten: [String] = []
        var lines = text.components(separatedBy: "\n")[...]
        while let line = lines.first {
            lines = lines.dropFirst()
            if line.isEmpty || line.hasPrefix("#") {
                rewritten.append(line)
                continue
            }
            var expected: [String] = []
            guard lines.first == "----" else {
                Issue.record("\(name): command '\(line)' not followed by ----")
                return
            }
            lines = lines.dropFirst()
            while let l = lines.first, !l.isEmpty {
                expected.append(l)
                lines = lines.dropFirst()
            }
            let actual = env.run(line)
            rewritten += [line, "----", actual]
            #expect(actual == expected.joined(separator: "\n"), "\(name): \(line)")
        }
        if ProcessInfo.processInfo.environment["SHOAL_REWRITE"] == "1" {
            var out = rewritten.joined(separator: "\n")
            if !out.hasSuffix("\n") { out += "\n" }
            try out.write(toFile: path, atomically: true, encoding: .utf8)
        }
    }
}
