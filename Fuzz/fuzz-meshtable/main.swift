// libFuzzer target: meshtable. Built by scripts/fuzz.sh with -sanitize=fuzzer -DSHOAL_FUZZ (libFuzzer
// drives `fuzzOne`); a normal build replays the corpus files or directories given as arguments.
//
// Any bytes as an endpoint table (JSON or YAML): decoding either refuses with a ConfigError or
// yields a table whose invariants hold once built (unique ports, bounded options, balancers
// that only ever pick listed tasks).

import FuzzSupport
import ShoalMesh
import ShoalSystem

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    guard input.count <= 1 << 16 else { return }
    let text = String(decoding: input, as: UTF8.self)
    guard let spec = try? MeshConfig.parse(text) else { return }
    var keys = Set<PortKey>()
    for p in spec.ports {
        precondition(keys.insert(p.key).inserted, "duplicate port accepted")
        precondition(p.port != 0 && p.endpoints.count <= MeshSpec.maxEndpointsPerPort)
        precondition(p.endpoints.allSatisfy { $0.weight >= 0 && $0.address.port != 0 })
    }
    let table = MeshTable.build(spec, previous: nil)
    var rng = SplitMix64(seed: 1)
    for p in table.ports {
        for h in 0..<8 {
            if let i = p.pick(clientHash: UInt64(h) &* 0x9E37_79B9_7F4A_7C15, nowMs: 1, rng: &rng) {
                precondition(i >= 0 && i < p.endpoints.count, "balancer picked outside the table")
                precondition(p.eligible(i, nowMs: 1), "balancer picked an ineligible task")
            }
        }
    }
}

#if SHOAL_FUZZ
    runFuzzer(fuzzOne)
#else
    print("fuzz-meshtable: replayed \(replayCorpus(Array(CommandLine.arguments.dropFirst()), fuzzOne)) inputs")
#endif
