// A snapshot on disk: one framed record (length, CRC32C, payload sealed like WAL records), written
// atomically (temp file, fsync, rename, fsync of the directory), so a crash leaves either the old
// snapshot or the new one, never a mix.

package enum SnapshotFile {
    package static func path(_ directory: String) -> String { directory + "/snapshot" }

    package static func write(_ bytes: [UInt8], directory: String, keyRing: KeyRing?) throws(StorageError) {
        let payload = keyRing.map { $0.seal(bytes, aad: Array("snapshot".utf8)) } ?? bytes
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: CRC32C.checksum(payload).littleEndian) { out.append(contentsOf: $0) }
        out += payload
        try FileIO.writeAtomically(out, to: path(directory), directory: directory)
    }

    /// nil when there is no snapshot yet.
    package static func read(directory: String, keyRing: KeyRing?) throws(StorageError) -> [UInt8]? {
        let p = path(directory)
        guard FileIO.exists(p) else { return nil }
        let b = try FileIO.readAll(p)
        guard b.count >= 8 else { throw .corrupted(path: p, offset: 0, reason: "truncated snapshot") }
        let len = Int(UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24)
        let crc = UInt32(b[4]) | UInt32(b[5]) << 8 | UInt32(b[6]) << 16 | UInt32(b[7]) << 24
        guard len == b.count - 8 else { throw .corrupted(path: p, offset: 0, reason: "snapshot length mismatch") }
        let payload = Array(b[8...])
        guard CRC32C.checksum(payload) == crc else { throw .corrupted(path: p, offset: 8, reason: "checksum mismatch") }
        if let ring = keyRing {
            guard let plain = ring.open(payload, aad: Array("snapshot".utf8)) else {
                throw .corrupted(path: p, offset: 8, reason: "snapshot does not authenticate with the data key")
            }
            return plain
        }
        return payload
    }
}
