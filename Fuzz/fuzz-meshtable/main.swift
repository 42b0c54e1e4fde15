// libFuzzer target: meshtable. Built by scripts/fuzz.sh with -sanitize=fuzzer -DSHOAL_FUZZ (libFuzzer
// drives `fuzzOne`); a normal build replays the corpus files or directories given as arguments.

import FuzzSupport
import ShoalMesh

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    // Filled in by the meshtable decoder's owner.
}

#if SHOAL_FUZZ
    runFuzzer(fuzzOne)
#else
    print("fuzz-meshtable: replayed \(replayCorpus(Array(CommandLine.arguments.dropFirst()), fuzzOne)) inputs")
#endif
