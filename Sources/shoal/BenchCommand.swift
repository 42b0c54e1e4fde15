// `shoal bench`: in-process measurements that the bench/ scripts compare with their anchors.

import ArgumentParser
import Foundation
import ShoalCrypto
import ShoalOverlay
import ShoalWire

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "In-process measurements used by bench/ (compare with their anchors there).",
        subcommands: [AEAD.self, BenchUDPSend.self])

    struct AEAD: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "AES-GCM throughput on one core: raw seal (as `openssl speed -evp`) and the full ESP seal.")

        @Option(help: "aes-128-gcm or aes-256-gcm.") var cipher = "aes-128-gcm"
        @Option(help: "Bytes per packet.") var size = 1408
        @Option(help: "Seconds per measurement.") var seconds = 3.0
        @Flag(help: "Print one JSON object instead of text.") var json = false

        func run() throws {
            let keySize: AESGCMKeySize = cipher == "aes-256-gcm" ? .aes256 : .aes128
            guard cipher == "aes-128-gcm" || cipher == "aes-256-gcm" else {
                throw ValidationError("--cipher must be aes-128-gcm or aes-256-gcm")
            }
            let raw = measure { count in rawSeal(keySize, count) }
            let esp = measure { count in espSeal(keySize, count) }
            let open = measure { count in espSealOpen(keySize, count) }
            let gb = { (bps: Double) in (bps / 1e9 * 1000).rounded() / 1000 }
            if json {
                print(
                    "{\"cipher\":\"\(cipher)\",\"size\":\(size),\"rawSealGBps\":\(gb(raw)),"
                        + "\"espSealGBps\":\(gb(esp)),\"espSealOpenGBps\":\(gb(open))}")
            } else {
                print(
                    "\(cipher) \(size) B: raw seal \(gb(raw)) GB/s, ESP seal \(gb(esp)) GB/s, ESP seal+open \(gb(open)) GB/s"
                )
            }
        }

        /// Runs `body(n)` with growing n until `seconds` pass; returns payload bytes per second.
        private func measure(_ body: (Int) -> Void) -> Double {
            var n = 1024
            while true {
                let start = DispatchTime.now().uptimeNanoseconds
                body(n)
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                if elapsed >= seconds { return Double(n * size) / elapsed }
                n = elapsed < 0.01 ? n * 10 : Int(Double(n) * seconds / elapsed * 1.05) + 1
            }
        }

        private func rawSeal(_ keySize: AESGCMKeySize, _ count: Int) {
            let gcm = AESGCM(key: [UInt8](repeating: 7, count: keySize.rawValue))
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 16, alignment: 64)
            defer { buffer.deallocate() }
            buffer.initializeMemory(as: UInt8.self, repeating: 1)
            var nonce: (UInt32, UInt32, UInt32) = (1, 2, 3)
            let aad = UnsafeRawBufferPointer(start: nil, count: 0)
            for i in 0..<count {
                nonce.2 = UInt32(truncatingIfNeeded: i)
                withUnsafeBytes(of: &nonce) { n in
                    gcm.seal(
                        nonce: n.baseAddress!, aad: aad,
                        text: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size]),
                        tag: buffer.baseAddress! + size)
                }
            }
        }

        private func engines(_ keySize: AESGCMKeySize) -> (ESPEngine, ESPEngine) {
            let ring = KeyRing(
                cipher: keySize,
                epochs: [KeyEpoch(id: 1, key: String(repeating: "42", count: keySize.rawValue), state: .tx)])
            return (
                try! ESPEngine(localNode: "a", keyRing: ring, peers: ["a", "b"]),
                try! ESPEngine(localNode: "b", keyRing: ring, peers: ["a", "b"])
            )
        }

        /// A buffer laid out as the VTEP's: headroom, a VXLAN packet of `size` bytes, tailroom.
        private func packetBuffer() -> (UnsafeMutableRawBufferPointer, Range<Int>) {
            let buffer = UnsafeMutableRawBufferPointer.allocate(
                byteCount: ESPEngine.headroom + size + ESPEngine.tailroom, alignment: 64)
            buffer.initializeMemory(as: UInt8.self, repeating: 1)
            VXLAN.write(vni: 1, into: buffer, at: ESPEngine.headroom)
            return (buffer, ESPEngine.headroom..<(ESPEngine.headroom + size))
        }

        /// ESP seal of a VXLAN packet of `size` bytes (header + frame).
        private func espSeal(_ keySize: AESGCMKeySize, _ count: Int) {
            let (a, _) = engines(keySize)
            let (buffer, payload) = packetBuffer()
            defer { buffer.deallocate() }
            for _ in 0..<count { _ = a.seal(buffer, payload: payload, peer: 1) }
        }

        /// ESP seal and open of the same packet, one after the other.
        private func espSealOpen(_ keySize: AESGCMKeySize, _ count: Int) {
            let (a, b) = engines(keySize)
            let (buffer, payload) = packetBuffer()
            defer { buffer.deallocate() }
            for _ in 0..<count {
                guard let r = a.seal(buffer, payload: payload, peer: 1), case .vxlan = b.open(buffer, datagram: r)
                else {
                    fatalError("ESP round trip failed")
                }
            }
        }
    }
}
