// Key epochs and the per-pair security associations derived from them.
//
// The leader (or an operator, standalone) hands every node the same key ring: up to three
// epochs, each a random key with a state. A node installs an epoch for receive as soon as it
// learns it (rx-only), sends with the one promoted to `tx`, and keeps `retiring` epochs for
// receive until they are removed, so a rotation done in that order loses no packet.
//
// Per ordered node pair (sender → receiver) and epoch, key, salt and SPI come from HKDF-SHA256
// of the epoch key: no per-pair signalling exists, and both ends derive the same SA.

import ShoalConfig
import ShoalCrypto

/// An epoch's state in the rotation (DESIGN.md §3).
package enum KeyEpochState: String, Codable, Sendable {
    /// Installed for receive only: peers may already send with it.
    case rxOnly = "rx-only"
    /// Used to send, and to receive.
    case tx
    /// Receive only, on its way out.
    case retiring
}

/// One key epoch.
package struct KeyEpoch: Codable, Sendable, Equatable {
    /// Epoch number, unique in the ring.
    package var id: UInt32
    /// The epoch key, hex: 16 bytes for AES-128-GCM, 32 for AES-256-GCM.
    package var key: String
    package var state: KeyEpochState

    package init(id: UInt32, key: String, state: KeyEpochState) {
        self.id = id
        self.key = key
        self.state = state
    }
}

/// The epochs a node holds.
package struct KeyRing: Codable, Sendable, Equatable {
    /// At most three live epochs (DESIGN.md §3).
    package static let maxEpochs = 3

    package var cipher: AESGCMKeySize
    package var epochs: [KeyEpoch]

    package init(cipher: AESGCMKeySize = .aes128, epochs: [KeyEpoch]) {
        self.cipher = cipher
        self.epochs = epochs
    }

    enum CodingKeys: String, CodingKey { case cipher, epochs }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let name = try c.decodeIfPresent(String.self, forKey: .cipher) ?? "aes-128-gcm"
        switch name {
        case "aes-128-gcm": cipher = .aes128
        case "aes-256-gcm": cipher = .aes256
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .cipher, in: c, debugDescription: "expected aes-128-gcm or aes-256-gcm, got \(name)")
        }
        epochs = try c.decode([KeyEpoch].self, forKey: .epochs)
    }

    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cipher == .aes128 ? "aes-128-gcm" : "aes-256-gcm", forKey: .cipher)
        try c.encode(epochs, forKey: .epochs)
    }

    /// The epoch used to send, if any.
    package var txEpoch: KeyEpoch? { epochs.first { $0.state == .tx } }

    /// Checks the invariants; the error names the field.
    package func validate() throws(ConfigError) {
        guard epochs.count <= Self.maxEpochs else {
            throw ConfigError(field: "epochs", "at most \(Self.maxEpochs) live epochs, got \(epochs.count)")
        }
        var seen = Set<UInt32>()
        for (i, e) in epochs.enumerated() {
            guard seen.insert(e.id).inserted else {
                throw ConfigError(field: "epochs[\(i)].id", "duplicate epoch \(e.id)")
            }
            guard let bytes = decodeHex(e.key) else { throw ConfigError(field: "epochs[\(i)].key", "not hex") }
            guard bytes.count == cipher.rawValue else {
                throw ConfigError(
                    field: "epochs[\(i)].key", "\(cipher.rawValue) bytes needed for the cipher, got \(bytes.count)")
            }
        }
        guard epochs.filter({ $0.state == .tx }).count <= 1 else {
            throw ConfigError(field: "epochs", "at most one epoch in state tx")
        }
    }

    /// A fresh random epoch key as hex.
    package static func randomKey(_ cipher: AESGCMKeySize) -> String {
        encodeHex(secureRandomBytes(cipher.rawValue))
    }
}

/// Key material of one SA: one direction between two nodes in one epoch.
package struct SAKeys: Sendable, Equatable {
    package var spi: UInt32
    package var key: [UInt8]
    package var salt: [UInt8]

    /// The salt as a host-order word, for building nonces without touching the array.
    package var saltWord: UInt32 { salt.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }

    /// Derives the SA for `sender → receiver` in `epoch` (HKDF-SHA256, RFC 5869), for the
    /// sender's VTEP queue `queue`: each queue thread sends on its own SA, so its sequence
    /// numbers leave in order. Queue 0's info is the single-queue one ("…| len|receiver");
    /// queue q > 0 appends `0x71 ('q') | q`.
    package static func derive(
        epochKey: [UInt8], epoch: UInt32, sender: String, receiver: String, cipher: AESGCMKeySize, queue: Int = 0
    ) -> SAKeys {
        var info = Array("shoal-esp-sa-v1".utf8)
        withUnsafeBytes(of: epoch.bigEndian) { info.append(contentsOf: $0) }
        for node in [sender, receiver] {
            let b = Array(node.utf8)
            info.append(UInt8(truncatingIfNeeded: b.count))
            info.append(contentsOf: b)
        }
        if queue > 0 { info += [0x71, UInt8(truncatingIfNeeded: queue)] }
        let n = cipher.rawValue
        let okm = HKDF.sha256(ikm: epochKey, salt: Array("shoal overlay".utf8), info: info, length: n + 8)
        let raw = okm[(n + 4)..<(n + 8)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        // Map into [256, 2^32): SPIs 0-255 are reserved (RFC 4303 §2.1).
        let spi = 256 + raw % (UInt32.max - 255)
        return SAKeys(spi: spi, key: Array(okm[0..<n]), salt: Array(okm[n..<(n + 4)]))
    }
}

/// Lower-case hex of `bytes`.
package func encodeHex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Bytes of a hex string (optionally 0x-prefixed), nil if malformed.
package func decodeHex(_ text: String) -> [UInt8]? {
    var s = Substring(text)
    if s.hasPrefix("0x") || s.hasPrefix("0X") { s = s.dropFirst(2) }
    guard s.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(s.count / 2)
    var it = s.makeIterator()
    while let a = it.next(), let b = it.next() {
        guard let hi = a.hexDigitValue, let lo = b.hexDigitValue else { return nil }
        out.append(UInt8(hi << 4 | lo))
    }
    return out
}
