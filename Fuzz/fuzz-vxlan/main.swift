// libFuzzer target: the VXLAN header decoder. Built by scripts/fuzz.sh with -DSHOAL_FUZZ
// (libFuzzer drives `fuzzOne`); a normal build replays the corpus files or directories given
// as arguments. Checks the decoder against its spec rather than only for crashes: a packet is
// accepted iff it holds a header and an Ethernet header and has the I flag; the VNI it returns
// re-encodes to the same bytes.

import FuzzSupport
import ShoalWire

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    let vni = VXLAN.parse(input)
    let valid = input.count >= VXLAN.headerBytes + VXLAN.minInnerFrameBytes && input[0] & VXLAN.flagVNIValid != 0
    precondition((vni != nil) == valid, "VXLAN.parse disagrees with RFC 7348 §5")
    if let vni {
        var header = [UInt8](repeating: 0, count: VXLAN.headerBytes)
        header.withUnsafeMutableBytes { VXLAN.write(vni: vni, into: $0, at: 0) }
        precondition(Array(input[4..<7]) == Array(header[4..<7]), "VNI does not round-trip")
    }
}

#if SHOAL_FUZZ
    runFuzzer(fuzzOne)
#else
    print("fuzz-vxlan: replayed \(replayCorpus(Array(CommandLine.arguments.dropFirst()), fuzzOne)) inputs")
#endif
