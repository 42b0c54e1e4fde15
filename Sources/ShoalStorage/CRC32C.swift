// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by the WAL: slicing-by-8 (eight
// 256-entry tables, one 8-byte word per step), checked against the byte-at-a-time form in tests.
// Known vector: crc32c("123456789") == 0xE3069283 (RFC 3720 §B.4 check value).
//
// Why not byte-at-a-time: the WAL checksums every record it writes, and the generic per-byte loop
// took ~5% of all CPU cycles of a 5-node in-process benchmark (perf, bench/raft/RESULTS.md).

package enum CRC32C {
    /// tables[k * 256 + b]: table k of slicing-by-8; table 0 is the classic byte table.
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }()

    package static func checksum(_ bytes: some Sequence<UInt8>, seed: UInt32 = 0) -> UInt32 {
        if let c = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0), seed: seed) }) {
            return c
        }
        return bytewise(bytes, seed: seed)
    }

    package static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        var c = ~seed
        tables.withUnsafeBufferPointer { t in
            var i = 0
            let n = bytes.count
            while i + 8 <= n {
                let w = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                let lo = c ^ UInt32(truncatingIfNeeded: w)
                let hi = UInt32(truncatingIfNeeded: w >> 32)
                c =
                    t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(bytes[i])) & 0xFF)] ^ (c >> 8)
                i += 1
            }
        }
        return ~c
    }

    /// The byte-at-a-time form: the reference the sliced one is tested against.
    package static func bytewise(_ bytes: some Sequence<UInt8>, seed: UInt32 = 0) -> UInt32 {
        var c = ~seed
        for b in bytes { c = tables[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }
}
