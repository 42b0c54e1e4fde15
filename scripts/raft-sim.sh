#!/usr/bin/env bash
# Deterministic Raft simulation over many seeds: scripts/raft-sim.sh [TOTAL_SEEDS] (default 10000),
# half with 3 nodes and half with 5, in a release build. A failure prints its seed; replay one with
# SHOAL_RAFT_SEED=N swift test --filter ShoalRaftTests.SimulationTests
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${1:-10000}
CONFIG=${SHOAL_SIM_CONFIG:-release}
EXTRA=()
[ "$CONFIG" = release ] && EXTRA=(-Xswiftc -enable-testing)
SHOAL_RAFT_SEEDS=$((TOTAL / 2)) swift test -c "$CONFIG" "${EXTRA[@]}" \
    --filter 'ShoalRaftTests.SimulationTests/(threeNodes|fiveNodes)' 2>&1 | tee /tmp/raft-sim-$$.log |
    grep -aE "raft simulation failed|passed|failed" || true
if grep -aq "failing seeds" /tmp/raft-sim-$$.log || ! grep -aq "passed" /tmp/raft-sim-$$.log; then
    rm -f /tmp/raft-sim-$$.log
    echo "FAIL"
    exit 1
fi
rm -f /tmp/raft-sim-$$.log
echo "PASS: $TOTAL seeds"
