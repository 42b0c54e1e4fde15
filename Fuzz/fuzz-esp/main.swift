// libFuzzer target: the ESP decoder (ESPEngine.open) on arbitrary datagrams. Built by
// scripts/fuzz.sh with -DSHOAL_FUZZ (libFuzzer drives `fuzzOne`); a normal build replays the
// corpus files or directories given as arguments.
//
// The engine holds the seed corpus's SAs (Fuzz/corpus/esp was sealed with them), so inputs
// mutated from genuine packets reach past the SPI lookup into replay, ICV and trailer checks.

import FuzzSupport
import ShoalOverlay

// nonisolated(unsafe): libFuzzer and the replayer run inputs one at a time on one thread.
nonisolated(unsafe) let engine = try! ESPEngine(
    localNode: "node-b",
    keyRing: KeyRing(cipher: .aes128, epochs: [KeyEpoch(id: 1, key: String(repeating: "11", count: 16), state: .tx)]),
    peers: ["node-a", "node-b"])
nonisolated(unsafe) var scratch = [UInt8](repeating: 0, count: 65536)

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    let n = min(input.count, scratch.count)
    scratch.withUnsafeMutableBytes { buf in
        buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[0..<n]))
        let r = engine.open(buf, datagram: 0..<n)
        if case .vxlan(let range, let peer) = r {
            precondition(range.lowerBound >= 0 && range.upperBound <= n && peer == 0)
        }
    }
}

#if SHOAL_FUZZ
    runFuzzer(fuzzOne)
#else
    print("fuzz-esp: replayed \(replayCorpus(Array(CommandLine.arguments.dropFirst()), fuzzOne)) inputs")
#endif
