// AES-GCM sealed and opened in place with OpenSSL EVP, one reused context per direction.
//
// Flow: caller owns a buffer with the plaintext at [offset, offset+count) and room for the
// 16-byte tag after it; `seal` encrypts in place and writes the tag; `open` verifies and
// decrypts in place. No allocation per call: the EVP context is created once with the key and
// only the IV changes per packet (EVP_CIPHER_CTX_reinit via EVP_EncryptInit_ex with NULL key).
//
// Not thread-safe: one `AESGCM` per thread/direction (a context carries per-call state).

import COpenSSL

/// AES-GCM key sizes.
package enum AESGCMKeySize: Int, Sendable, Codable {
    case aes128 = 16
    case aes256 = 32
}

/// A reusable AES-GCM context bound to one key.
package final class AESGCM {
    package static let tagBytes = 16
    package static let nonceBytes = 12

    package let keySize: AESGCMKeySize
    private let encryptContext: OpaquePointer
    private let decryptContext: OpaquePointer

    package enum OpenError: Error, Sendable { case authenticationFailed }

    /// - Parameter key: 16 or 32 bytes.
    package init(key: some Collection<UInt8>) {
        guard let size = AESGCMKeySize(rawValue: key.count) else {
            preconditionFailure("AES-GCM key must be 16 or 32 bytes, got \(key.count)")
        }
        keySize = size
        let cipher = size == .aes128 ? EVP_aes_128_gcm() : EVP_aes_256_gcm()
        guard let enc = EVP_CIPHER_CTX_new(), let dec = EVP_CIPHER_CTX_new() else {
            fatalError("EVP_CIPHER_CTX_new: out of memory")
        }
        encryptContext = enc
        decryptContext = dec
        let keyBytes = Array(key)
        keyBytes.withUnsafeBufferPointer { k in
            precondition(EVP_EncryptInit_ex(enc, cipher, nil, nil, nil) == 1)
            precondition(EVP_CIPHER_CTX_ctrl(enc, EVP_CTRL_GCM_SET_IVLEN, CInt(Self.nonceBytes), nil) == 1)
            precondition(EVP_EncryptInit_ex(enc, nil, nil, k.baseAddress, nil) == 1)
            precondition(EVP_DecryptInit_ex(dec, cipher, nil, nil, nil) == 1)
            precondition(EVP_CIPHER_CTX_ctrl(dec, EVP_CTRL_GCM_SET_IVLEN, CInt(Self.nonceBytes), nil) == 1)
            precondition(EVP_DecryptInit_ex(dec, nil, nil, k.baseAddress, nil) == 1)
        }
    }

    deinit {
        EVP_CIPHER_CTX_free(encryptContext)
        EVP_CIPHER_CTX_free(decryptContext)
    }

    /// Encrypts `text` in place, authenticating `aad` too, and writes the 16-byte tag to `tag`.
    package func seal(
        nonce: UnsafeRawPointer, aad: UnsafeRawBufferPointer, text: UnsafeMutableRawBufferPointer,
        tag: UnsafeMutableRawPointer
    ) {
        let ctx = encryptContext
        var outLen: CInt = 0
        precondition(EVP_EncryptInit_ex(ctx, nil, nil, nil, nonce.assumingMemoryBound(to: UInt8.self)) == 1)
        if aad.count > 0 {
            precondition(
                EVP_EncryptUpdate(
                    ctx, nil, &outLen, aad.baseAddress!.assumingMemoryBound(to: UInt8.self), CInt(aad.count))
                    == 1)
        }
        if text.count > 0 {
            let p = text.baseAddress!.assumingMemoryBound(to: UInt8.self)
            precondition(EVP_EncryptUpdate(ctx, p, &outLen, p, CInt(text.count)) == 1)
        }
        precondition(EVP_EncryptFinal_ex(ctx, nil, &outLen) == 1)
        precondition(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CInt(Self.tagBytes), tag) == 1)
    }

    /// Verifies the tag and decrypts `text` in place. On failure the text is garbage and must be
    /// dropped by the caller (it is not re-encrypted).
    package func open(
        nonce: UnsafeRawPointer, aad: UnsafeRawBufferPointer, text: UnsafeMutableRawBufferPointer,
        tag: UnsafeRawPointer
    ) -> Bool {
        let ctx = decryptContext
        var outLen: CInt = 0
        guard EVP_DecryptInit_ex(ctx, nil, nil, nil, nonce.assumingMemoryBound(to: UInt8.self)) == 1 else {
            return false
        }
        if aad.count > 0 {
            guard
                EVP_DecryptUpdate(
                    ctx, nil, &outLen, aad.baseAddress!.assumingMemoryBound(to: UInt8.self), CInt(aad.count)) == 1
            else { return false }
        }
        if text.count > 0 {
            let p = text.baseAddress!.assumingMemoryBound(to: UInt8.self)
            guard EVP_DecryptUpdate(ctx, p, &outLen, p, CInt(text.count)) == 1 else { return false }
        }
        guard
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CInt(Self.tagBytes), UnsafeMutableRawPointer(mutating: tag))
                == 1
        else { return false }
        return EVP_DecryptFinal_ex(ctx, nil, &outLen) == 1
    }
}

/// Cryptographically secure random bytes (RAND_bytes).
package func secureRandomBytes(_ count: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    precondition(RAND_bytes(&out, CInt(count)) == 1, "RAND_bytes failed")
    return out
}
