#!/usr/bin/env bash
# Runs every benchmark (each compares Shoal with its anchors side by side in one run) and
# collects their results into bench/RESULTS.md. Run as root on an otherwise idle machine.
#   bench/run-all.sh [area...]     areas: crypto overlay mesh raft (default: all present)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
areas=("$@")
[ ${#areas[@]} -gt 0 ] || areas=(crypto overlay mesh raft)
for a in "${areas[@]}"; do
  if [ -x "bench/$a/run.sh" ] || [ -f "bench/$a/run.sh" ]; then
    echo "== bench/$a"
    bash "bench/$a/run.sh"
  fi
done
bash bench/collect.sh
