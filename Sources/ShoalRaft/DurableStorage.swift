// Raft's durable state on top of ShoalStorage: the WAL holds entries and hard states, the snapshot
// file holds the latest snapshot (state machine image + membership).
//
//   record: kind u8 | body;  1 = entry (term u64, index u64, kind u8, data blob), 2 = hard state
//   (term, vote, commit u64)
//
// `save(_:)` persists one Ready with a single group commit (snapshot first, then entries, then the
// hard state). `saveSnapshot` writes the snapshot atomically, then starts a new segment holding
// the hard state and the entries after the snapshot, then deletes the older segments: at every
// instant the files on disk recover to a valid state.

import ShoalStorage

package enum RaftStorageError: Error, Sendable, CustomStringConvertible {
    case storage(StorageError)
    case malformed(String)
    package var description: String {
        switch self {
        case .storage(let e): return e.description
        case .malformed(let s): return "raft storage: \(s)"
        }
    }
}

package final class DurableStorage {
    package let directory: String
    package let keyRing: KeyRing?
    private let wal: WAL
    package private(set) var initialState: RaftInitialState
    /// Mirrors the durable log (entries after the snapshot) so snapshots can re-home the tail.
    private var snapshotIndex: UInt64
    private var entries: [Entry]
    private var hardState: HardState

    package init(directory: String, keyRing: KeyRing?, segmentBytes: Int = 64 << 20) throws(RaftStorageError) {
        self.directory = directory
        self.keyRing = keyRing
        do {
            var snap = Snapshot()
            if let b = try SnapshotFile.read(directory: directory, keyRing: keyRing) {
                snap = try Self.decodeSnapshot(b)
            }
            let (w, records) = try WAL.open(directory: directory, keyRing: keyRing, segmentBytes: segmentBytes)
            wal = w
            var ents: [Entry] = []
            var hs = HardState()
            for r in records {
                var rd = ByteReader(r)
                switch try rd.u8() {
                case 1:
                    let e = Entry(
                        term: try rd.u64(), index: try rd.u64(), kind: EntryKind(rawValue: try rd.u8()) ?? .normal,
                        data: try rd.blob())
                    if e.index <= snap.index { continue }
                    let expected = snap.index + UInt64(ents.count) + 1
                    if e.index < expected { ents.removeLast(Int(expected - e.index)) }
                    guard e.index == snap.index + UInt64(ents.count) + 1 else {
                        throw RaftStorageError.malformed(
                            "log gap: entry \(e.index) after \(snap.index + UInt64(ents.count))")
                    }
                    ents.append(e)
                case 2:
                    hs = HardState(term: try rd.u64(), vote: try rd.u64(), commit: try rd.u64())
                case let k:
                    throw RaftStorageError.malformed("unknown record kind \(k)")
                }
            }
            hs.commit = max(hs.commit, snap.index)
            snapshotIndex = snap.index
            entries = ents
            hardState = hs
            initialState = RaftInitialState(hardState: hs, snapshot: snap, entries: ents)
        } catch let e as StorageError {
            throw .storage(e)
        } catch let e as KVDecodeError {
            throw .malformed("truncated record: \(e)")
        } catch let e as RaftStorageError {
            throw e
        } catch {
            throw .malformed("\(error)")
        }
    }

    package var isEmpty: Bool { initialState.hardState == HardState() && initialState.entries.isEmpty }
    package var walSyncs: Int { wal.syncs }

    /// Persists a Ready (group commit: one write, one fdatasync) before its messages are sent.
    package func save(_ rd: Ready) throws(RaftStorageError) {
        if let s = rd.snapshot {
            try writeSnapshot(s, hardState: rd.hardState ?? hardState, tail: [])
        }
        for e in rd.entries { appendEntry(e) }
        if let hs = rd.hardState {
            appendHardState(hs)
        }
        do { try wal.sync() } catch { throw .storage(error) }
    }

    /// Saves a snapshot taken by the application (after `RawNode.compact`) and drops old segments.
    package func saveSnapshot(_ s: Snapshot) throws(RaftStorageError) {
        guard s.index > snapshotIndex else { return }
        let tail = entries.filter { $0.index > s.index }
        try writeSnapshot(s, hardState: hardState, tail: tail)
    }

    private func writeSnapshot(_ s: Snapshot, hardState hs: HardState, tail: [Entry]) throws(RaftStorageError) {
        do {
            try SnapshotFile.write(Self.encodeSnapshot(s), directory: directory, keyRing: keyRing)
            try wal.sync()
            try wal.roll()
            let newSegment = wal.segment
            snapshotIndex = s.index
            entries = []
            for e in tail { appendEntry(e) }
            appendHardState(hs)
            try wal.sync()
            try wal.removeSegments(before: newSegment)
        } catch {
            throw .storage(error)
        }
    }

    private func appendEntry(_ e: Entry) {
        let expected = snapshotIndex + UInt64(entries.count) + 1
        if e.index < expected { entries.removeLast(Int(expected - e.index)) }
        entries.append(e)
        var w = ByteWriter()
        w.u8(1)
        w.u64(e.term)
        w.u64(e.index)
        w.u8(e.kind.rawValue)
        w.blob(e.data)
        wal.append(w.bytes)
    }

    private func appendHardState(_ hs: HardState) {
        hardState = hs
        var w = ByteWriter()
        w.u8(2)
        w.u64(hs.term)
        w.u64(hs.vote)
        w.u64(hs.commit)
        wal.append(w.bytes)
    }

    static func encodeSnapshot(_ s: Snapshot) -> [UInt8] {
        var w = ByteWriter()
        w.u64(s.index)
        w.u64(s.term)
        w.blob(Configuration.encode(s.voters, learners: s.learners))
        w.blob(s.data)
        return w.bytes
    }

    static func decodeSnapshot(_ b: [UInt8]) throws(KVDecodeError) -> Snapshot {
        var r = ByteReader(b)
        let index = try r.u64()
        let term = try r.u64()
        let members = Configuration.decode(try r.blob())
        return Snapshot(
            index: index, term: term, voters: members.voters, learners: members.learners, data: try r.blob())
    }
}
