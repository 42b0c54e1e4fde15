#!/usr/bin/env bash
# Runs the ordo-one microbenchmarks (release build) and checks them against the committed
# thresholds in bench/thresholds: fails if a hot path allocates per packet/connection.
#   scripts/bench-allocs.sh            check
#   scripts/bench-allocs.sh --update   rewrite the thresholds from this run (on purpose only)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--update" ]; then
  swift package --allow-writing-to-package-directory benchmark thresholds update --path bench/thresholds --no-progress
else
  swift package benchmark thresholds check --path bench/thresholds --no-progress
fi
