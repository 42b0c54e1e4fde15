// HKDF (RFC 5869) with SHA-256 through OpenSSL's EVP_KDF. Used off the hot path: deriving
// per-pair SA keys from an epoch key, and data keys for storage.

import COpenSSL

package enum HKDF {
    /// HKDF-SHA256(ikm, salt, info) → `length` bytes. An empty salt means HashLen zeros
    /// (RFC 5869 §2.2).
    package static func sha256(ikm: [UInt8], salt: [UInt8], info: [UInt8], length: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        let effectiveSalt = salt.isEmpty ? [UInt8](repeating: 0, count: 32) : salt
        let rc = ikm.withUnsafeBufferPointer { k in
            effectiveSalt.withUnsafeBufferPointer { s in
                info.withUnsafeBufferPointer { i in
                    out.withUnsafeMutableBufferPointer { o in
                        shoal_hkdf_sha256(
                            k.baseAddress, k.count, s.baseAddress, s.count, i.baseAddress, i.count, o.baseAddress,
                            o.count)
                    }
                }
            }
        }
        precondition(rc == 1, "EVP_KDF_derive(HKDF) failed")
        return out
    }
}
