// libFuzzer target: the PROXY protocol (v1 and v2) header decoder. Built by scripts/fuzz.sh with
// -DSHOAL_FUZZ (libFuzzer drives `fuzzOne`); a normal build replays the corpus files or
// directories given as arguments. Checks properties, not only the absence of crashes:
// - a header never claims more bytes than it was given, nor more than a v1 line may hold;
// - the answer depends on the header's bytes only: the header alone parses the same;
// - every shorter prefix of a header answers `.needMore` (the parser rejects nothing early
//   that would have become valid), so the sample of prefixes below must all be `.needMore`;
// - the addresses re-encode (v1 and v2) to headers that parse back to the same addresses.

import FuzzSupport
import ShoalWire

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    guard case .header(let length, let version, let addresses) = ProxyProtocol.parse(input) else { return }
    precondition(length > 0 && length <= input.count, "header length \(length) outside the input")
    precondition(version == 2 || length <= ProxyProtocol.maxV1Length, "v1 line longer than 107 bytes")
    let header = UnsafeRawBufferPointer(rebasing: input[..<length])
    precondition(
        ProxyProtocol.parse(header) == .header(length: length, version: version, addresses: addresses),
        "the bytes after the header changed the answer")
    // All prefixes of short headers; for long (v2 TLV) ones the first 64 and the last 64.
    for k in 0..<length where length <= 128 || k < 64 || k >= length - 64 {
        let answer = ProxyProtocol.parse(UnsafeRawBufferPointer(rebasing: input[..<k]))
        precondition(answer == .needMore, "prefix of \(k) bytes of a \(length)-byte header: \(answer)")
    }
    withUnsafeTemporaryAllocation(byteCount: ProxyProtocol.maxV1Length + 1, alignment: 8) { buffer in
        for v in 1...2 {
            let n =
                v == 1
                ? ProxyProtocol.encodeV1(addresses, into: buffer)
                : ProxyProtocol.encodeV2(addresses, stream: true, into: buffer)
            let again = ProxyProtocol.parse(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
            precondition(
                again == .header(length: n, version: v, addresses: addresses),
                "\(addresses) re-encoded as v\(v) parses as \(again)")
        }
    }
}

#if SHOAL_FUZZ
    runFuzzer(fuzzOne)
#else
    print("fuzz-proxy: replayed \(replayCorpus(Array(CommandLine.arguments.dropFirst()), fuzzOne)) inputs")
#endif
