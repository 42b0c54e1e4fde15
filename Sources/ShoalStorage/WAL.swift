// Write-ahead log: numbered segment files of framed records, appended with group commit.
//
//   segment wal-<16-digit sequence>.log:  record*
//   record:  length u32 LE | crc32c(payload) u32 LE | payload
//   payload: plaintext: one record
//            encrypted: every record of one group commit, each `length u32 LE | record`, sealed
//            together by `KeyRing.sealBatch` (one AES-GCM call and one CRC per group commit);
//            a payload sealed by `KeyRing.seal` is one record (the format of earlier versions)
//
// `append` only buffers; `sync` writes the whole batch with one write and one fdatasync, so every
// record appended before a `sync` returns is durable (callers acknowledge nothing before that).
// Recovery reads every segment in order. A bad record in the last segment with nothing valid
// after it is a torn write: the tail is truncated. A bad record anywhere else (or followed by more
// records) is corruption: opening fails with `StorageError.corrupted`, naming the file and offset.

import Glibc

package final class WAL {
    package let directory: String
    private let keyRing: KeyRing?
    private let segmentBytes: Int
    private var fd: Int32 = -1
    package private(set) var segment: UInt64 = 0
    private var segmentSize = 0
    private var buffer: [UInt8] = []
    /// With encryption: the framed records of the pending group commit, sealed by `sync`.
    private var batch: [UInt8] = []
    package private(set) var syncs = 0

    static func name(_ seq: UInt64) -> String {
        let digits = String(seq)
        return "wal-" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits + ".log"
    }

    package static func segments(in directory: String) throws(StorageError) -> [UInt64] {
        try FileIO.list(directory).compactMap { n -> UInt64? in
            guard n.hasPrefix("wal-"), n.hasSuffix(".log") else { return nil }
            return UInt64(n.dropFirst(4).dropLast(4))
        }.sorted()
    }

    private init(directory: String, keyRing: KeyRing?, segmentBytes: Int) {
        self.directory = directory
        self.keyRing = keyRing
        self.segmentBytes = segmentBytes
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Opens (creating if needed) the log in `directory` and returns every valid record, in order.
    package static func open(
        directory: String, keyRing: KeyRing?, segmentBytes: Int = 64 << 20
    ) throws(StorageError) -> (WAL, [[UInt8]]) {
        try FileIO.makeDirectory(directory)
        let wal = WAL(directory: directory, keyRing: keyRing, segmentBytes: segmentBytes)
        var records: [[UInt8]] = []
        let segs = try segments(in: directory)
        for (i, seq) in segs.enumerated() {
            let path = directory + "/" + name(seq)
            let bytes = try FileIO.readAll(path)
            let isLast = i == segs.count - 1
            var off = 0
            while off < bytes.count {
                switch wal.parse(bytes, at: off) {
                case .record(let r, let next):
                    records += r
                    off = next
                case .bad(let reason):
                    if isLast && !wal.anyValidRecord(bytes, after: off) {
                        try FileIO.truncate(path, to: off)  // torn tail of the last write
                        off = bytes.count
                    } else {
                        throw .corrupted(path: path, offset: off, reason: reason)
                    }
                }
            }
        }
        if let last = segs.last {
            wal.segment = last
            wal.fd = try FileIO.openAppend(directory + "/" + name(last))
            wal.segmentSize = Int(lseek(wal.fd, 0, SEEK_END))
        } else {
            try wal.roll()
        }
        return (wal, records)
    }

    enum Parsed {
        case record([[UInt8]], next: Int)
        case bad(String)
    }

    private func parse(_ b: [UInt8], at off: Int) -> Parsed {
        guard off + 8 <= b.count else { return .bad("truncated header") }
        let len = Int(u32(b, off))
        let crc = u32(b, off + 4)
        if len == 0 && crc == 0 { return .bad("zero header") }
        guard len <= b.count - off - 8 else { return .bad("length \(len) beyond end of file") }
        let payload = Array(b[off + 8..<off + 8 + len])
        guard CRC32C.checksum(payload) == crc else { return .bad("checksum mismatch") }
        guard let ring = keyRing else { return .record([payload], next: off + 8 + len) }
        guard let (plain, isBatch) = ring.openRecord(payload) else {
            return .bad("does not authenticate with the data key")
        }
        guard isBatch else { return .record([plain], next: off + 8 + len) }
        var records: [[UInt8]] = []
        var o = 0
        while o < plain.count {
            guard o + 4 <= plain.count else { return .bad("sealed batch: truncated record header") }
            let n = Int(u32(plain, o))
            guard n <= plain.count - o - 4 else { return .bad("sealed batch: record beyond the batch") }
            records.append(Array(plain[o + 4..<o + 4 + n]))
            o += 4 + n
        }
        return .record(records, next: off + 8 + len)
    }

    /// Whether any record frame after a bad one checks out: then the damage is not a torn tail.
    private func anyValidRecord(_ b: [UInt8], after off: Int) -> Bool {
        var o = off + 1
        while o + 8 <= b.count {
            let len = Int(u32(b, o))
            if len > 0 && len <= b.count - o - 8 {
                if CRC32C.checksum(b[o + 8..<o + 8 + len]) == u32(b, o + 4) { return true }
            }
            o += 1
        }
        return false
    }

    private func u32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }

    /// Buffers one record; durable only after the next `sync()`.
    package func append(_ record: [UInt8]) {
        guard keyRing != nil else { return frame(record) }
        withUnsafeBytes(of: UInt32(record.count).littleEndian) { batch.append(contentsOf: $0) }
        batch.append(contentsOf: record)
    }

    private func frame(_ payload: [UInt8]) {
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { buffer.append(contentsOf: $0) }
        withUnsafeBytes(of: CRC32C.checksum(payload).littleEndian) { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: payload)
    }

    /// Group commit: one write and one fdatasync for everything appended since the last sync.
    package func sync() throws(StorageError) {
        if let ring = keyRing, !batch.isEmpty {
            frame(ring.sealBatch(batch))
            batch.removeAll(keepingCapacity: true)
        }
        guard !buffer.isEmpty else { return }
        if segmentSize > 0 && segmentSize + buffer.count > segmentBytes { try roll() }
        let path = directory + "/" + Self.name(segment)
        try FileIO.writeAll(fd, buffer, path: path)
        try FileIO.fsync(fd, path: path)
        segmentSize += buffer.count
        buffer.removeAll(keepingCapacity: true)
        syncs += 1
    }

    /// Starts a new segment (the current one is already synced).
    package func roll() throws(StorageError) {
        if fd >= 0 { close(fd) }
        segment += 1
        fd = try FileIO.openAppend(directory + "/" + Self.name(segment))
        segmentSize = 0
        try FileIO.fsyncDirectory(directory)
    }

    /// Removes every segment numbered below `seq` (after a snapshot made them redundant).
    package func removeSegments(before seq: UInt64) throws(StorageError) {
        for s in try Self.segments(in: directory) where s < seq {
            try FileIO.remove(directory + "/" + Self.name(s))
        }
        try FileIO.fsyncDirectory(directory)
    }
}
