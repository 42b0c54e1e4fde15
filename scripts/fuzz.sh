#!/usr/bin/env bash
# Fuzzes the decoders of everything that arrives from the network with libFuzzer.
#
#   scripts/fuzz.sh [--smoke] [TARGET...]   TARGET in: vxlan esp proxy meshtable (default: all)
#
# Each target is built with -sanitize=fuzzer,address into .build-fuzz and run from its seed
# corpus in Fuzz/corpus/<target> (new finds go to fuzz-out/<target>, not into the repo).
# --smoke: 20 s per target (CI); default: SHOAL_FUZZ_SECONDS (300) per target.
# A crash leaves its input in fuzz-out/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SHOAL_FUZZ_SECONDS:-300}
targets=()
for a in "$@"; do
  case "$a" in
    --smoke) seconds=20 ;;
    *) targets+=("$a") ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(vxlan esp proxy meshtable)

# 1. Replay each committed corpus through a normal build (fast, catches regressions).
for t in "${targets[@]}"; do
  swift build --product "fuzz-$t" >/dev/null
  "$(swift build --show-bin-path)/fuzz-$t" "Fuzz/corpus/$t"
done

# 2. Coverage-guided fuzzing. What -sanitize=fuzzer does, spelled out: SwiftPM aliases `main` to
# the executable's Swift entry point, which clashes with libFuzzer's own main, so the targets
# are instrumented (-sanitize=address + -sanitize-coverage) and linked with libFuzzer's no-main
# runtime; their Swift main hands control to LLVMFuzzerRunDriver (Fuzz/FuzzSupport).
swift_bin=$(dirname "$(readlink -f "$(command -v swift)")")
fuzzer_lib=$(ls "$swift_bin"/../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a | head -1)
for t in "${targets[@]}"; do
  # A failed build must not leave an older binary to fuzz.
  rm -f "$(swift build --scratch-path .build-fuzz --show-bin-path)/fuzz-$t"
  swift build --product "fuzz-$t" --scratch-path .build-fuzz -c debug \
    -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,trace-cmp,pc-table,inline-8bit-counters \
    -Xswiftc -DSHOAL_FUZZ -Xlinker "$fuzzer_lib" -Xlinker -lstdc++ 2>&1 \
    | grep -vE 'Cannot export local symbol|^\[' || true
  bin="$(swift build --scratch-path .build-fuzz --show-bin-path)/fuzz-$t"
  [ -x "$bin" ] || { echo "fuzz.sh: build of fuzz-$t failed" >&2; exit 1; }
  mkdir -p "fuzz-out/$t"
  echo "fuzz.sh: fuzz-$t for ${seconds}s"
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="fuzz-out/$t/" \
    "fuzz-out/$t" "Fuzz/corpus/$t" 2>&1 | grep -E 'stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|Done' || true
  if ls "fuzz-out/$t"/crash-* "fuzz-out/$t"/leak-* "fuzz-out/$t"/timeout-* >/dev/null 2>&1; then
    echo "fuzz.sh: fuzz-$t found a failing input in fuzz-out/$t" >&2
    exit 1
  fi
done
