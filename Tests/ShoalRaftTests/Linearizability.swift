// A Wing–Gong linearizability checker for a single-register-per-key KV with compare-and-set, in the
// style of Porcupine: the history is split per key (P-compositionality), then a depth-first search
// over "which operation takes effect next", memoized on (set of linearized operations, value).
//
// Operations whose outcome the client never learned (timeouts, crashed server) have return time
// `.max`: they may take effect at any point after their call, or never.

struct KVOperation: Sendable {
    enum Kind: Sendable, Equatable {
        case put([UInt8])
        case cas(expected: [UInt8]?, new: [UInt8])
        case get
    }
    enum Outcome: Sendable, Equatable {
        case unknown
        case ok
        case value([UInt8]?)
        case cas(Bool)
    }
    var client: Int
    var key: String
    var kind: Kind
    var call: UInt64
    var ret: UInt64 = .max
    var outcome: Outcome = .unknown
}

enum Linearizability {
    /// Returns nil when linearizable, else the offending key.
    static func check(_ history: [KVOperation]) -> String? {
        var byKey: [String: [KVOperation]] = [:]
        for op in history {
            if op.kind == .get && op.outcome == .unknown { continue }  // unanswered reads change nothing
            byKey[op.key, default: []].append(op)
        }
        for key in byKey.keys.sorted() where !checkKey(byKey[key]!) { return key }
        return nil
    }

    private struct Memo: Hashable {
        var done: [UInt64]
        var value: [UInt8]?
    }

    static func checkKey(_ ops: [KVOperation]) -> Bool {
        let n = ops.count
        let words = (n + 63) / 64
        var memo = Set<Memo>()
        let completed = ops.indices.filter { ops[$0].outcome != .unknown }

        func isDone(_ d: [UInt64], _ i: Int) -> Bool { d[i / 64] & (1 << UInt64(i % 64)) != 0 }

        func dfs(_ done: [UInt64], _ value: [UInt8]?) -> Bool {
            if completed.allSatisfy({ isDone(done, $0) }) { return true }
            let key = Memo(done: done, value: value)
            if memo.contains(key) { return false }
            memo.insert(key)
            var minReturn = UInt64.max
            for i in 0..<n where !isDone(done, i) { minReturn = min(minReturn, ops[i].ret) }
            for i in 0..<n where !isDone(done, i) && ops[i].call < minReturn {
                let op = ops[i]
                var next = value
                switch (op.kind, op.outcome) {
                case (.get, .value(let v)):
                    guard v == value else { continue }
                case (.get, _):
                    continue
                case (.put(let v), .ok), (.put(let v), .unknown):
                    next = v
                case (.cas(let e, let new), .cas(let ok)):
                    guard ok == (value == e) else { continue }
                    if ok { next = new }
                case (.cas(let e, let new), .unknown):
                    if value == e { next = new }
                default:
                    continue
                }
                var d = done
                d[i / 64] |= 1 << UInt64(i % 64)
                if dfs(d, next) { return true }
            }
            return false
        }
        return dfs([UInt64](repeating: 0, count: words), nil)
    }
}
