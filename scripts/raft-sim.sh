#!/usr/bin/env bash
# Deterministic Raft simulation over many seeds: scripts/raft-sim.sh [TOTAL_SEEDS] (default 10000),
# half with 3 nodes and half with 5, in a release build (SHOAL_SIM_CONFIG=debug to skip that
# build). A failure prints its seed; a trap inside the core kills the process, so the seeds being
# run are traced and the last one per cluster size is printed. Replay one with
#   SHOAL_RAFT_SEED=N swift test --filter ShoalRaftTests.SimulationTests
set -uo pipefail
cd "$(dirname "$0")/.."
TOTAL=${1:-10000}
CONFIG=${SHOAL_SIM_CONFIG:-release}
EXTRA=()
[ "$CONFIG" = release ] && EXTRA=(-Xswiftc -enable-testing)
LOG=$(mktemp /tmp/raft-sim.XXXXXX)
trap 'rm -f "$LOG"' EXIT
start=$(date +%s)
SHOAL_RAFT_VERBOSE=1 SHOAL_RAFT_SEEDS=$((TOTAL / 2)) swift test -c "$CONFIG" "${EXTRA[@]}" \
    --filter 'ShoalRaftTests.SimulationTests/(threeNodes|fiveNodes)' >"$LOG" 2>&1
rc=$?
ran=$(grep -ac "^raft sim seed" "$LOG")
if [ $rc -ne 0 ] || grep -aq "raft simulation failed" "$LOG"; then
    grep -a "raft simulation failed" "$LOG" | head -20
    echo "last seeds started:"
    grep -a "^raft sim seed" "$LOG" | grep -a "(3 nodes)" | tail -1
    grep -a "^raft sim seed" "$LOG" | grep -a "(5 nodes)" | tail -1
    grep -a "Fatal error" "$LOG" | head -3
    echo "FAIL after $ran seeds"
    exit 1
fi
echo "PASS: $ran seeds in $(($(date +%s) - start)) s ($CONFIG)"
