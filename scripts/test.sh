#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test (unit, loopback,
# network-namespace hosts, real peers), then the short fuzz smoke run. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/netns-lab.sh sweep
swift build --build-tests
swift test --skip-build
# Zero allocations per packet/connection on the hot paths (release build, ordo-one/benchmark).
bash scripts/bench-allocs.sh
if [ -f scripts/fuzz.sh ] && [ "${SHOAL_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh --smoke
fi
