import Foundation
import Glibc
import Testing

@testable import ShoalStorage

func withTempDir<T>(_ body: (String) throws -> T) throws -> T {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shoal-storage-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    return try body(dir)
}

func walPath(_ dir: String) throws -> String {
    dir + "/" + WAL.name(try WAL.segments(in: dir).last!)
}

@Suite struct CRC32CTests {
    /// RFC 3720 §B.4: the CRC32C check value of "123456789".
    @Test func knownVector() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8]()) == 0)
    }

    /// Slicing-by-8 against its naive twin, byte-at-a-time: every length and offset (alignment)
    /// up to 80, chained seeds, and non-contiguous sequences.
    @Test func slicedMatchesBytewise() {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<200).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for offset in 0..<9 {
            for length in 0...80 {
                let slice = data[offset..<offset + length]
                #expect(CRC32C.checksum(slice) == CRC32C.bytewise(slice), "offset \(offset) length \(length)")
            }
        }
        let whole = CRC32C.checksum(data)
        #expect(CRC32C.checksum(data[77...], seed: CRC32C.checksum(data[..<77])) == whole)
        #expect(CRC32C.checksum(data.lazy.map { $0 }) == whole)
    }
}

@Suite struct WALTests {
    static func records(_ n: Int) -> [[UInt8]] { (0..<n).map { Array("record-\($0)".utf8) } }

    @Test(arguments: [false, true]) func roundTripAcrossSegments(encrypted: Bool) throws {
        try withTempDir { dir in
            let ring = encrypted ? try KeyRing.create(directory: dir, autolock: false).0 : nil
            do {
                let (wal, recovered) = try WAL.open(directory: dir, keyRing: ring, segmentBytes: 64)
                #expect(recovered.isEmpty)
                for r in Self.records(20) {
                    wal.append(r)
                    try wal.sync()
                }
            }
            #expect(try WAL.segments(in: dir).count > 1)
            let (_, recovered) = try WAL.open(directory: dir, keyRing: ring, segmentBytes: 64)
            #expect(recovered == Self.records(20))
        }
    }

    @Test func tornTailIsTruncated() throws {
        try withTempDir { dir in
            do {
                let (wal, _) = try WAL.open(directory: dir, keyRing: nil)
                for r in Self.records(5) { wal.append(r) }
                try wal.sync()
            }
            let path = try walPath(dir)
            let good = try FileIO.readAll(path).count
            // A torn write: a header promising more bytes than made it to disk.
            let fd = try FileIO.openAppend(path)
            try FileIO.writeAll(fd, [40, 0, 0, 0, 1, 2, 3, 4, 9, 9], path: path)
            close(fd)
            do {
                let (wal, recovered) = try WAL.open(directory: dir, keyRing: nil)
                #expect(recovered == Self.records(5))
                #expect(try FileIO.readAll(path).count == good)
                wal.append(Array("after".utf8))
                try wal.sync()
            }
            let (_, again) = try WAL.open(directory: dir, keyRing: nil)
            #expect(again == Self.records(5) + [Array("after".utf8)])
        }
    }

    /// A crash can cut the last write anywhere: every cut recovers to a prefix of the records,
    /// never an error and never a record that was not written.
    @Test(arguments: [false, true]) func everyTruncationRecoversAPrefix(encrypted: Bool) throws {
        try withTempDir { dir in
            let ring = encrypted ? try KeyRing.create(directory: dir, autolock: false).0 : nil
            do {
                let (wal, _) = try WAL.open(directory: dir, keyRing: ring)
                for r in Self.records(12) {
                    wal.append(r)
                    if r.last! % 3 == 0 { try wal.sync() }
                }
                try wal.sync()
            }
            let path = try walPath(dir)
            let full = try FileIO.readAll(path)
            var lastCount = -1
            for cut in 0...full.count {
                try FileIO.writeAtomically(Array(full[0..<cut]), to: path, directory: dir)
                let (_, recovered) = try WAL.open(directory: dir, keyRing: ring)
                #expect(recovered == Array(Self.records(12).prefix(recovered.count)), "cut at \(cut)")
                #expect(recovered.count >= lastCount)
                lastCount = recovered.count
            }
            #expect(lastCount == 12)
        }
    }

    /// Encrypted group commits are sealed as one batch; records sealed one by one (the format of
    /// earlier versions) still read, before and after batches.
    @Test func sealedBatchesAndSingleSealedRecordsRead() throws {
        try withTempDir { dir in
            let ring = try KeyRing.create(directory: dir, autolock: false).0
            let recs = Self.records(7)
            do {
                let (wal, _) = try WAL.open(directory: dir, keyRing: ring)
                for r in recs[0..<3] { wal.append(r) }
                try wal.sync()
            }
            let path = try walPath(dir)
            #expect(try FileIO.readAll(path).count < 3 * (8 + 32 + 8))  // one frame, not three
            var old: [UInt8] = []
            for r in recs[3..<5] {
                let sealed = ring.seal(r)
                withUnsafeBytes(of: UInt32(sealed.count).littleEndian) { old.append(contentsOf: $0) }
                withUnsafeBytes(of: CRC32C.checksum(sealed).littleEndian) { old.append(contentsOf: $0) }
                old += sealed
            }
            let fd = try FileIO.openAppend(path)
            try FileIO.writeAll(fd, old, path: path)
            close(fd)
            do {
                let (wal, recovered) = try WAL.open(directory: dir, keyRing: ring)
                #expect(recovered == Array(recs[0..<5]))
                for r in recs[5...] { wal.append(r) }
                try wal.sync()
            }
            let (_, all) = try WAL.open(directory: dir, keyRing: ring)
            #expect(all == recs)
            // A batch is not accepted where a single sealed record is expected (the flag is in the AAD).
            #expect(ring.open(ring.sealBatch([1, 2, 3])) == nil)
        }
    }

    @Test func corruptedMiddleIsRefused() throws {
        try withTempDir { dir in
            do {
                let (wal, _) = try WAL.open(directory: dir, keyRing: nil)
                for r in Self.records(5) { wal.append(r) }
                try wal.sync()
            }
            let path = try walPath(dir)
            var bytes = try FileIO.readAll(path)
            bytes[8 + 2] ^= 0xFF  // inside the first record's payload
            try FileIO.writeAtomically(bytes, to: path, directory: dir)
            #expect {
                _ = try WAL.open(directory: dir, keyRing: nil)
            } throws: { e in
                guard case .corrupted(_, let offset, let reason) = e as? StorageError else { return false }
                return offset == 0 && reason == "checksum mismatch"
            }
        }
    }
}

@Suite struct KeyRingTests {
    @Test func autolockRefusesWithoutTheUnlockKey() throws {
        try withTempDir { dir in
            let (ring, unlock) = try KeyRing.create(directory: dir, autolock: true)
            let key = try #require(unlock)
            #expect(key.hasPrefix("SHOAL-KEY-1-"))
            #expect(!FileIO.exists(dir + "/kek"))
            let sealed = ring.seal(Array("secret".utf8))
            #expect(throws: StorageError.self) { _ = try KeyRing.open(directory: dir) }
            do {
                _ = try KeyRing.open(directory: dir)
            } catch {
                guard case .locked = error as? StorageError else {
                    Issue.record("expected .locked, got \(error)")
                    return
                }
            }
            let wrong = "SHOAL-KEY-1-" + String(repeating: "ab", count: 32)
            #expect(throws: StorageError.badUnlockKey("wrong unlock key for \(dir)")) {
                _ = try KeyRing.open(directory: dir, unlockKey: wrong)
            }
            let opened = try KeyRing.open(directory: dir, unlockKey: key)
            #expect(opened.open(sealed) == Array("secret".utf8))
        }
    }

    @Test func dataKeyRotationKeepsOldRecordsReadable() throws {
        try withTempDir { dir in
            let (ring, _) = try KeyRing.create(directory: dir, autolock: false)
            let (wal, _) = try WAL.open(directory: dir, keyRing: ring)
            wal.append(Array("old".utf8))
            try wal.sync()
            try ring.rotateDataKey()
            #expect(ring.keyIDs == [1, 2])
            wal.append(Array("new".utf8))
            try wal.sync()
            let reopened = try KeyRing.open(directory: dir)
            #expect(reopened.currentKeyID == 2)
            let (_, recs) = try WAL.open(directory: dir, keyRing: reopened)
            #expect(recs == [Array("old".utf8), Array("new".utf8)])
        }
    }

    @Test func unlockKeyRotation() throws {
        try withTempDir { dir in
            let (ring, _) = try KeyRing.create(directory: dir, autolock: false)
            let sealed = ring.seal(Array("payload".utf8))
            #expect(FileIO.exists(dir + "/kek"))
            let first = try #require(try ring.rotateUnlockKey(autolock: true))
            #expect(!FileIO.exists(dir + "/kek"))
            let second = try #require(
                try KeyRing.open(directory: dir, unlockKey: first).rotateUnlockKey(autolock: true))
            #expect(first != second)
            #expect(throws: StorageError.self) { _ = try KeyRing.open(directory: dir, unlockKey: first) }
            #expect(try KeyRing.open(directory: dir, unlockKey: second).open(sealed) == Array("payload".utf8))
            // And back to a KEK beside the data.
            _ = try KeyRing.open(directory: dir, unlockKey: second).rotateUnlockKey(autolock: false)
            #expect(try KeyRing.open(directory: dir).open(sealed) == Array("payload".utf8))
        }
    }

    @Test func tamperedRecordDoesNotOpen() throws {
        try withTempDir { dir in
            let (ring, _) = try KeyRing.create(directory: dir, autolock: false)
            var sealed = ring.seal(Array("payload".utf8))
            sealed[20] ^= 1
            #expect(ring.open(sealed) == nil)
        }
    }
}
