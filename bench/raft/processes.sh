#!/usr/bin/env bash
# Raft benchmark as processes on loopback: 3 and 5 `shoal raft run` nodes over the plain TCP
# transport, each with its own fsynced WAL, with and without encryption at rest (interleaved),
# driven by `shoal raft load` (one connection per client, one put in flight per connection).
# Usage: bench/raft/processes.sh [seconds per run] [clients] [rounds] [sizes]. Prints a markdown
# table (one row per run; the last column counts client requests that failed).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-5}
CLIENTS=${2:-128}
ROUNDS=${3:-1}
SIZES=${4:-3 5}
SHOAL=${SHOAL:-.build/release/shoal}
[ -n "${SHOAL_SKIP_BUILD:-}" ] || swift build -c release --product shoal >/dev/null
DIR=$(mktemp -d "${SHOAL_BENCH_DIR:-/var/tmp}/raft-proc-bench.XXXXXX")
PIDS=()
stop_nodes() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap 'stop_nodes; [ -n "${SHOAL_BENCH_KEEP:-}" ] || rm -rf "$DIR"' EXIT
echo "# $(date -u +%F) $(nproc) cores, data in $DIR ($(df -T "$DIR" | awk 'NR==2{print $2}')), $CLIENTS clients, ${SECONDS_PER_RUN} s per run"
echo "| nodes | encryption | commits/s | p50 ms | p99 ms | failed requests |"
echo "|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
    for n in $SIZES; do
        for enc in off AES-GCM; do
            base=$((20000 + RANDOM % 20000))
            peers=""
            for i in $(seq 1 "$n"); do peers="$peers${peers:+,}$i=127.0.0.1:$((base + i))"; done
            flag=()
            [ "$enc" = off ] || flag=(--encrypt)
            for i in $(seq 1 "$n"); do
                "$SHOAL" raft run --id "$i" --peers "$peers" --data "$DIR/r$round-n$n-$enc-$i" "${flag[@]}" \
                    --snapshot-entries 50000 >>"$DIR/log" 2>&1 &
                PIDS+=($!)
            done
            "$SHOAL" raft load --peers "$peers" --clients "$CLIENTS" --seconds "$SECONDS_PER_RUN" --encryption "$enc" ||
                echo "| $n | $enc | failed (see $DIR/log) | | | |"
            stop_nodes
            rm -rf "$DIR/r$round-n$n-$enc-"*
        done
    done
done
