// Encryption at rest: data keys (DEKs) seal every WAL record and snapshot with AES-256-GCM; the
// DEKs are stored wrapped by a key-encryption key (KEK).
//
//   keyring file:  "SHKR" v1 | autolock u8 | salt[16] | currentKeyID u32 | n u32 | n × (id u32, sealed DEK)
//   kek file:      32 raw bytes, present only without autolock (so keys rotate without rewriting logs)
//   autolock:      KEK = HKDF-SHA256(unlock key bytes, salt, "shoal storage kek"); never on disk.
//                  The unlock key is shown once as SHOAL-KEY-1-<64 hex digits>.
//
// Sealed record: keyID u32 | nonce[12] | ciphertext | tag[16]; AAD = keyID ‖ caller AAD. A WAL
// group commit is sealed as one batch: its key id field has the top bit (`batchFlag`) set, which
// the AAD covers, so a batch cannot pass for a single record of earlier versions. Nonces:
// a random 64-bit prefix per keyring instance (redrawn every 2^32 records) and a 32-bit counter.
// Not thread-safe: owned by the storage driver.

import ShoalCrypto

package final class KeyRing {
    package static let unlockKeyPrefix = "SHOAL-KEY-1-"
    static let magic: [UInt8] = Array("SHKR".utf8) + [1]

    package let directory: String
    package private(set) var autolock: Bool
    private var salt: [UInt8]
    private var kek: [UInt8]
    private var keys: [UInt32: AESGCM] = [:]
    private var rawKeys: [UInt32: [UInt8]] = [:]
    package private(set) var currentKeyID: UInt32

    var keyringPath: String { directory + "/keyring" }
    var kekPath: String { directory + "/kek" }

    private init(directory: String, autolock: Bool, salt: [UInt8], kek: [UInt8], currentKeyID: UInt32) {
        self.directory = directory
        self.autolock = autolock
        self.salt = salt
        self.kek = kek
        self.currentKeyID = currentKeyID
    }

    package static func exists(directory: String) -> Bool { FileIO.exists(directory + "/keyring") }

    /// Creates a keyring with one fresh data key. With autolock, returns the unlock key, which is
    /// the only way to open the data again: the caller shows it once to the operator.
    package static func create(directory: String, autolock: Bool) throws(StorageError) -> (KeyRing, String?) {
        try FileIO.makeDirectory(directory)
        let salt = secureRandomBytes(16)
        var unlock: String? = nil
        let kek: [UInt8]
        if autolock {
            let secret = secureRandomBytes(32)
            unlock = unlockKeyPrefix + hex(secret)
            kek = deriveKEK(secret, salt: salt)
        } else {
            kek = secureRandomBytes(32)
        }
        let ring = KeyRing(directory: directory, autolock: autolock, salt: salt, kek: kek, currentKeyID: 1)
        ring.install(id: 1, key: secureRandomBytes(32))
        try ring.persist()
        return (ring, unlock)
    }

    /// Opens an existing keyring. With autolock, refuses without the right unlock key.
    package static func open(directory: String, unlockKey: String? = nil) throws(StorageError) -> KeyRing {
        let bytes = try FileIO.readAll(directory + "/keyring")
        guard bytes.count >= 5 + 1 + 16 + 8, Array(bytes[0..<5]) == magic else {
            throw .badKeyring("\(directory)/keyring: not a Shoal keyring (bad magic or truncated)")
        }
        let autolock = bytes[5] == 1
        let salt = Array(bytes[6..<22])
        var off = 22
        func u32() -> UInt32 {
            defer { off += 4 }
            return (0..<4).reduce(0) { $0 | UInt32(bytes[off + $1]) << (8 * UInt32($1)) }
        }
        let current = u32()
        let n = u32()
        let kek: [UInt8]
        if autolock {
            guard let u = unlockKey else {
                throw .locked(
                    "storage in \(directory) is autolocked: start the node with --unlock-key SHOAL-KEY-1-... "
                        + "(the key printed when autolock was enabled)")
            }
            kek = deriveKEK(try parseUnlockKey(u), salt: salt)
        } else {
            kek = try FileIO.readAll(directory + "/kek")
            guard kek.count == 32 else { throw .badKeyring("\(directory)/kek: expected 32 bytes, found \(kek.count)") }
        }
        let ring = KeyRing(directory: directory, autolock: autolock, salt: salt, kek: kek, currentKeyID: current)
        let wrapper = AESGCM(key: kek)
        for _ in 0..<n {
            guard off + 4 + 60 <= bytes.count else { throw .badKeyring("\(directory)/keyring: truncated") }
            let id = u32()
            let sealed = Array(bytes[off..<off + 60])
            off += 60
            guard let key = KeyRing.openWith(wrapper, sealed, aad: keyAAD(id)) else {
                if autolock { throw .badUnlockKey("wrong unlock key for \(directory)") }
                throw .badKeyring("\(directory)/keyring: data key \(id) does not open with the KEK")
            }
            ring.install(id: id, key: key)
        }
        guard ring.keys[current] != nil else { throw .badKeyring("\(directory)/keyring: current key missing") }
        return ring
    }

    /// A new data key for everything written from now on; older keys stay to read older records.
    package func rotateDataKey() throws(StorageError) {
        let id = (rawKeys.keys.max() ?? 0) + 1
        install(id: id, key: secureRandomBytes(32))
        currentKeyID = id
        try persist()
    }

    /// Re-wraps the data keys under a new KEK. With `autolock` the new unlock key is returned (and
    /// the kek file removed); without, a new random KEK is written beside the data.
    package func rotateUnlockKey(autolock newAutolock: Bool) throws(StorageError) -> String? {
        salt = secureRandomBytes(16)
        var unlock: String? = nil
        if newAutolock {
            let secret = secureRandomBytes(32)
            unlock = Self.unlockKeyPrefix + Self.hex(secret)
            kek = Self.deriveKEK(secret, salt: salt)
        } else {
            kek = secureRandomBytes(32)
        }
        let wasAutolock = autolock
        autolock = newAutolock
        try persist()
        if newAutolock && !wasAutolock { try FileIO.remove(kekPath) }
        return unlock
    }

    /// Drops data keys not listed (after compaction removed every record sealed with them).
    package func retainKeys(_ ids: Set<UInt32>) throws(StorageError) {
        for id in rawKeys.keys where id != currentKeyID && !ids.contains(id) {
            rawKeys[id] = nil
            keys[id] = nil
        }
        try persist()
    }

    package var keyIDs: [UInt32] { rawKeys.keys.sorted() }

    /// Nonce = 8 random bytes, drawn again every 2^32 records, ‖ a 32-bit counter: unique per
    /// key without a RAND_bytes call per record (prefix collisions across restarts: ~n²/2^65).
    private var noncePrefix: [UInt8] = secureRandomBytes(8)
    private var nonceCounter: UInt32 = 0

    private func nextNonce(into out: inout [UInt8]) {
        if nonceCounter == .max {
            noncePrefix = secureRandomBytes(8)
            nonceCounter = 0
        }
        nonceCounter += 1
        out.append(contentsOf: noncePrefix)
        withUnsafeBytes(of: nonceCounter.littleEndian) { out.append(contentsOf: $0) }
    }

    /// Set in the key id field of a sealed WAL batch (key ids themselves stay far below it).
    package static let batchFlag: UInt32 = 0x8000_0000

    package func seal(_ plain: [UInt8], aad: [UInt8] = []) -> [UInt8] { seal(plain, aad: aad, flag: 0) }

    /// Seals a WAL group commit (the records, framed by the WAL) as one record.
    package func sealBatch(_ plain: [UInt8]) -> [UInt8] { seal(plain, aad: [], flag: Self.batchFlag) }

    private func seal(_ plain: [UInt8], aad: [UInt8], flag: UInt32) -> [UInt8] {
        let gcm = keys[currentKeyID]!
        let id = currentKeyID | flag
        var out = [UInt8]()
        out.reserveCapacity(4 + 12 + plain.count + 16)
        withUnsafeBytes(of: id.littleEndian) { out.append(contentsOf: $0) }
        nextNonce(into: &out)
        out.append(contentsOf: plain)
        out.append(contentsOf: [UInt8](repeating: 0, count: 16))
        let fullAAD = Self.keyAAD(id) + aad
        out.withUnsafeMutableBytes { b in
            fullAAD.withUnsafeBytes { a in
                gcm.seal(
                    nonce: UnsafeRawPointer(b.baseAddress! + 4), aad: a,
                    text: UnsafeMutableRawBufferPointer(rebasing: b[16..<16 + plain.count]),
                    tag: b.baseAddress! + 16 + plain.count)
            }
        }
        return out
    }

    /// Returns nil when the record does not authenticate (or names an unknown key, or is a batch).
    package func open(_ sealed: [UInt8], aad: [UInt8] = []) -> [UInt8]? {
        guard let (plain, isBatch) = openRecord(sealed, aad: aad), !isBatch else { return nil }
        return plain
    }

    /// Opens a single record or a batch (`sealBatch`); nil when it does not authenticate.
    package func openRecord(_ sealed: [UInt8], aad: [UInt8] = []) -> (plain: [UInt8], isBatch: Bool)? {
        guard sealed.count >= 32 else { return nil }
        let id = UInt32(sealed[0]) | UInt32(sealed[1]) << 8 | UInt32(sealed[2]) << 16 | UInt32(sealed[3]) << 24
        guard let gcm = keys[id & ~Self.batchFlag],
            let plain = Self.openWith(gcm, Array(sealed[4...]), aad: Self.keyAAD(id) + aad)
        else { return nil }
        return (plain, id & Self.batchFlag != 0)
    }

    // MARK: Internals.

    private func install(id: UInt32, key: [UInt8]) {
        rawKeys[id] = key
        keys[id] = AESGCM(key: key)
    }

    private func persist() throws(StorageError) {
        var out = Self.magic
        out.append(autolock ? 1 : 0)
        out += salt
        withUnsafeBytes(of: currentKeyID.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(rawKeys.count).littleEndian) { out.append(contentsOf: $0) }
        let wrapper = AESGCM(key: kek)
        for id in rawKeys.keys.sorted() {
            withUnsafeBytes(of: id.littleEndian) { out.append(contentsOf: $0) }
            out += Self.sealWith(wrapper, rawKeys[id]!, aad: Self.keyAAD(id))
        }
        if !autolock { try FileIO.writeAtomically(kek, to: kekPath, directory: directory) }
        try FileIO.writeAtomically(out, to: keyringPath, directory: directory)
    }

    static func keyAAD(_ id: UInt32) -> [UInt8] { withUnsafeBytes(of: id.littleEndian) { Array($0) } }

    /// nonce ‖ ciphertext ‖ tag
    static func sealWith(_ gcm: AESGCM, _ plain: [UInt8], aad: [UInt8]) -> [UInt8] {
        var out = secureRandomBytes(12) + plain + [UInt8](repeating: 0, count: 16)
        out.withUnsafeMutableBytes { b in
            aad.withUnsafeBytes { a in
                gcm.seal(
                    nonce: UnsafeRawPointer(b.baseAddress!), aad: a,
                    text: UnsafeMutableRawBufferPointer(rebasing: b[12..<12 + plain.count]),
                    tag: b.baseAddress! + 12 + plain.count)
            }
        }
        return out
    }

    static func openWith(_ gcm: AESGCM, _ sealed: [UInt8], aad: [UInt8]) -> [UInt8]? {
        guard sealed.count >= 28 else { return nil }
        var buf = sealed
        let n = sealed.count - 28
        let ok = buf.withUnsafeMutableBytes { b in
            aad.withUnsafeBytes { a in
                gcm.open(
                    nonce: UnsafeRawPointer(b.baseAddress!), aad: a,
                    text: UnsafeMutableRawBufferPointer(rebasing: b[12..<12 + n]),
                    tag: UnsafeRawPointer(b.baseAddress! + 12 + n))
            }
        }
        return ok ? Array(buf[12..<12 + n]) : nil
    }

    static func deriveKEK(_ secret: [UInt8], salt: [UInt8]) -> [UInt8] {
        HKDF.sha256(ikm: secret, salt: salt, info: Array("shoal storage kek".utf8), length: 32)
    }

    static func hex(_ b: [UInt8]) -> String {
        let d = Array("0123456789abcdef".utf8)
        var s: [UInt8] = []
        for x in b {
            s.append(d[Int(x >> 4)])
            s.append(d[Int(x & 15)])
        }
        return String(decoding: s, as: UTF8.self)
    }

    static func parseUnlockKey(_ s: String) throws(StorageError) -> [UInt8] {
        guard s.hasPrefix(unlockKeyPrefix) else { throw .badUnlockKey("unlock key must start with \(unlockKeyPrefix)") }
        let h = Array(s.utf8.dropFirst(unlockKeyPrefix.utf8.count))
        guard h.count == 64 else { throw .badUnlockKey("unlock key must have 64 hex digits after the prefix") }
        var out: [UInt8] = []
        for i in stride(from: 0, to: 64, by: 2) {
            guard let hi = hexVal(h[i]), let lo = hexVal(h[i + 1]) else {
                throw .badUnlockKey("unlock key has a non-hex digit")
            }
            out.append(hi << 4 | lo)
        }
        return out
    }

    static func hexVal(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }
}
