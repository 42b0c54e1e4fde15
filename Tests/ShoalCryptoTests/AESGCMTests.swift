import Testing

@testable import ShoalCrypto

private func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.filter { !$0.isWhitespace }.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

@Suite struct AESGCMTests {
    /// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 4 (AES-128, with AAD).
    @Test func gcmSpecTestCase4() {
        let key = hex("feffe9928665731c6d6a8f9467308308")
        let iv = hex("cafebabefacedbaddecaf888")
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
        var text = hex(
            """
            d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
            1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39
            """)
        let expected = hex(
            """
            42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
            21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091
            """)
        let expectedTag = hex("5bc94fbc3221a5db94fae95ae7121a47")
        let gcm = AESGCM(key: key)
        var tag = [UInt8](repeating: 0, count: 16)
        text.withUnsafeMutableBytes { t in
            aad.withUnsafeBytes { a in
                iv.withUnsafeBytes { n in
                    tag.withUnsafeMutableBytes {
                        gcm.seal(nonce: n.baseAddress!, aad: a, text: t, tag: $0.baseAddress!)
                    }
                }
            }
        }
        #expect(text == expected)
        #expect(tag == expectedTag)

        let ok = text.withUnsafeMutableBytes { t in
            aad.withUnsafeBytes { a in
                iv.withUnsafeBytes { n in
                    tag.withUnsafeBytes { gcm.open(nonce: n.baseAddress!, aad: a, text: t, tag: $0.baseAddress!) }
                }
            }
        }
        #expect(ok)
        #expect(text.prefix(4) == [0xd9, 0x31, 0x32, 0x25])
    }

    @Test func tamperedTagIsRejected() {
        let gcm = AESGCM(key: [UInt8](repeating: 7, count: 32))
        let iv = [UInt8](repeating: 1, count: 12)
        var text = Array("hello overlay".utf8)
        var tag = [UInt8](repeating: 0, count: 16)
        text.withUnsafeMutableBytes { t in
            iv.withUnsafeBytes { n in
                tag.withUnsafeMutableBytes {
                    gcm.seal(
                        nonce: n.baseAddress!, aad: UnsafeRawBufferPointer(start: nil, count: 0), text: t,
                        tag: $0.baseAddress!)
                }
            }
        }
        tag[3] ^= 1
        let ok = text.withUnsafeMutableBytes { t in
            iv.withUnsafeBytes { n in
                tag.withUnsafeBytes {
                    gcm.open(
                        nonce: n.baseAddress!, aad: UnsafeRawBufferPointer(start: nil, count: 0), text: t,
                        tag: $0.baseAddress!)
                }
            }
        }
        #expect(!ok)
    }

    /// RFC 5869 Appendix A.1.
    @Test func hkdfRFC5869TestCase1() {
        let okm = HKDF.sha256(
            ikm: [UInt8](repeating: 0x0b, count: 22), salt: hex("000102030405060708090a0b0c"),
            info: hex("f0f1f2f3f4f5f6f7f8f9"), length: 42)
        #expect(
            okm
                == hex(
                    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"))
    }
}
