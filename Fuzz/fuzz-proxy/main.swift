// libFuzzer target: proxy. Built by scripts/fuzz.sh with -sanitize=fuzzer -DSHOAL_FUZZ (libFuzzer
// drives `fuzzOne`); a normal build replays the corpus files or directories given as arguments.

import FuzzSupport
import ShoalWire

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    // Filled in by the proxy decoder's owner.
}

#if SHOAL_FUZZ
    runFuzzer(fuzzOne)
#else
    print("fuzz-proxy: replayed \(replayCorpus(Array(CommandLine.arguments.dropFirst()), fuzzOne)) inputs")
#endif
