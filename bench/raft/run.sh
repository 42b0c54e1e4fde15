#!/usr/bin/env bash
# Raft benchmark: commits/s and commit latency p50/p99 for 3 and 5 nodes in-process with real
# fsynced storage, with and without encryption at rest; leader failover time over N kills; then
# the same throughput figures with the nodes as processes on loopback (bench/raft/processes.sh).
# Usage: bench/raft/run.sh [seconds per run] [kills] [clients]. Prints markdown tables; the
# figures and their reading go in bench/raft/RESULTS.md, which bench/collect.sh gathers.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-5}
KILLS=${2:-100}
CLIENTS=${3:-256}
swift build -c release --product shoal >/dev/null
DIR=${SHOAL_BENCH_DIR:-/var/tmp}
echo "# $(date -u +%F) $(nproc) cores, data in $DIR ($(df -T "$DIR" | awk 'NR==2{print $2}')), $CLIENTS clients"
.build/release/shoal raft bench --nodes 3,5 --clients "$CLIENTS" --seconds "$SECONDS_PER_RUN" --kills "$KILLS" --dir "$DIR"
echo
SHOAL_SKIP_BUILD=1 bash bench/raft/processes.sh "$SECONDS_PER_RUN" "$CLIENTS"
