// The replicated key-value state machine with compare-and-set, and its binary command encoding.
//
// Commands travel as `Entry.data`; every replica applies the same committed sequence and so computes
// the same results. `requestID` lets the node that proposed a command find its result.

package enum KVCommand: Sendable, Equatable {
    case put(key: String, value: [UInt8])
    /// Succeeds when the current value equals `expected` (`nil`: the key is absent).
    case cas(key: String, expected: [UInt8]?, new: [UInt8])
    /// A read through the log (the simulation and the CLI prefer ReadIndex).
    case get(key: String)
    case delete(key: String)

    package var key: String {
        switch self {
        case .put(let k, _), .cas(let k, _, _), .get(let k), .delete(let k): return k
        }
    }
}

package struct KVRequest: Sendable, Equatable {
    package var id: UInt64
    package var command: KVCommand

    package init(id: UInt64, command: KVCommand) {
        self.id = id
        self.command = command
    }
}

package enum KVResult: Sendable, Equatable {
    case ok
    case value([UInt8]?)
    case cas(succeeded: Bool, current: [UInt8]?)
}

package enum KVDecodeError: Error, Sendable {
    case truncated
    case unknownKind(UInt8)
}

/// Little-endian writer/reader for the KV and wire encodings.
package struct ByteWriter: Sendable {
    package var bytes: [UInt8] = []
    package init() {}
    package mutating func u8(_ v: UInt8) { bytes.append(v) }
    package mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    package mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    package mutating func blob(_ b: [UInt8]) {
        u32(UInt32(b.count))
        bytes.append(contentsOf: b)
    }
    package mutating func string(_ s: String) { blob(Array(s.utf8)) }
}

package struct ByteReader {
    let bytes: [UInt8]
    package private(set) var offset: Int
    package init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }
    package var remaining: Int { bytes.count - offset }
    package mutating func u8() throws(KVDecodeError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated }
        defer { offset += 1 }
        return bytes[offset]
    }
    package mutating func u32() throws(KVDecodeError) -> UInt32 {
        guard remaining >= 4 else { throw .truncated }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[offset + i]) << (8 * UInt32(i)) }
        offset += 4
        return v
    }
    package mutating func u64() throws(KVDecodeError) -> UInt64 {
        guard remaining >= 8 else { throw .truncated }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        offset += 8
        return v
    }
    package mutating func blob() throws(KVDecodeError) -> [UInt8] {
        let n = Int(try u32())
        guard remaining >= n else { throw .truncated }
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }
    package mutating func string() throws(KVDecodeError) -> String { String(decoding: try blob(), as: UTF8.self) }
}

extension KVRequest {
    package func encode() -> [UInt8] {
        var w = ByteWriter()
        switch command {
        case .put(let k, let v):
            w.u8(1)
            w.u64(id)
            w.string(k)
            w.blob(v)
        case .cas(let k, let e, let n):
            w.u8(2)
            w.u64(id)
            w.string(k)
            w.u8(e == nil ? 0 : 1)
            w.blob(e ?? [])
            w.blob(n)
        case .get(let k):
            w.u8(3)
            w.u64(id)
            w.string(k)
        case .delete(let k):
            w.u8(4)
            w.u64(id)
            w.string(k)
        }
        return w.bytes
    }

    package static func decode(_ bytes: [UInt8]) throws(KVDecodeError) -> KVRequest {
        var r = ByteReader(bytes)
        let kind = try r.u8()
        let id = try r.u64()
        let key = try r.string()
        switch kind {
        case 1: return KVRequest(id: id, command: .put(key: key, value: try r.blob()))
        case 2:
            let has = try r.u8()
            let e = try r.blob()
            return KVRequest(id: id, command: .cas(key: key, expected: has == 1 ? e : nil, new: try r.blob()))
        case 3: return KVRequest(id: id, command: .get(key: key))
        case 4: return KVRequest(id: id, command: .delete(key: key))
        default: throw .unknownKind(kind)
        }
    }
}

package struct KVStateMachine: Sendable, Equatable {
    package private(set) var values: [String: [UInt8]] = [:]
    package private(set) var appliedIndex: UInt64 = 0

    package init() {}

    package func get(_ key: String) -> [UInt8]? { values[key] }

    /// Applies one committed entry; returns the request and its result for normal KV entries.
    package mutating func apply(_ e: Entry) -> (KVRequest, KVResult)? {
        precondition(e.index > appliedIndex, "apply out of order: \(e.index) after \(appliedIndex)")
        appliedIndex = e.index
        guard e.kind == .normal, !e.data.isEmpty, let req = try? KVRequest.decode(e.data) else { return nil }
        switch req.command {
        case .put(let k, let v):
            values[k] = v
            return (req, .ok)
        case .delete(let k):
            values[k] = nil
            return (req, .ok)
        case .get(let k):
            return (req, .value(values[k]))
        case .cas(let k, let expected, let new):
            let cur = values[k]
            if cur == expected {
                values[k] = new
                return (req, .cas(succeeded: true, current: new))
            }
            return (req, .cas(succeeded: false, current: cur))
        }
    }

    package func snapshot() -> [UInt8] {
        var w = ByteWriter()
        w.u64(appliedIndex)
        w.u32(UInt32(values.count))
        for k in values.keys.sorted() {
            w.string(k)
            w.blob(values[k]!)
        }
        return w.bytes
    }

    package static func restore(_ bytes: [UInt8]) throws(KVDecodeError) -> KVStateMachine {
        var sm = KVStateMachine()
        guard !bytes.isEmpty else { return sm }
        var r = ByteReader(bytes)
        sm.appliedIndex = try r.u64()
        let n = try r.u32()
        for _ in 0..<n {
            let k = try r.string()
            sm.values[k] = try r.blob()
        }
        return sm
    }

    /// Restores from a Raft snapshot taken at `index` (the snapshot data may be empty at index 0).
    package static func restore(_ s: Snapshot) throws(KVDecodeError) -> KVStateMachine {
        var sm = try restore(s.data)
        sm.appliedIndex = s.index
        return sm
    }
}
