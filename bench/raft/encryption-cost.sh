#!/usr/bin/env bash
# Cost of encryption at rest, in-process (`shoal raft bench`): RUNS rounds, each running the
# cluster plain then encrypted (interleaved, so machine noise hits both alike); prints every row,
# then the medians of each and the cost of encryption on them: lost commits/s, and extra CPU per
# commit (steadier on a shared machine, where throughput follows the wandering fsync latency).
# Usage: bench/raft/encryption-cost.sh [runs] [nodes] [seconds] [clients]
# SHOAL_BINARIES="a b" compares several builds, interleaved round by round.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-5}
NODES=${2:-5}
SECS=${3:-5}
CLIENTS=${4:-128}
if [ -z "${SHOAL_BINARIES:-}" ]; then
    swift build -c release --product shoal >/dev/null
    SHOAL_BINARIES=.build/release/shoal
fi
DIR=${SHOAL_BENCH_DIR:-/var/tmp}
OUT=$(mktemp /tmp/raft-enc-cost.XXXXXX)
trap 'rm -f "$OUT"' EXIT
echo "# $(date -u +%F) $NODES nodes in-process, $CLIENTS clients, ${SECS} s per run, $RUNS rounds, data in $DIR"
echo "| build | round | nodes | encryption | commits/s | p50 ms | p99 ms | fsyncs/s (leader) | CPU µs/commit |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in $(seq 1 "$RUNS"); do
    for b in $SHOAL_BINARIES; do
        "$b" raft bench --nodes "$NODES" --clients "$CLIENTS" --seconds "$SECS" --kills 0 --dir "$DIR" |
            grep '^| [0-9]' | while read -r line; do
            echo "| $b | $r $line" | tee -a "$OUT"
        done
    done
done
echo
echo "| build | encryption | median commits/s | median p50 ms | median p99 ms | median CPU µs/commit |"
echo "|---|---|---|---|---|---|"
# Rows: | build | round | nodes | encryption | commits/s | p50 | p99 | fsyncs | CPU µs/commit |
awk -F'|' '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        gsub(/ /, "", $2); gsub(/ /, "", $5)
        k = $2 SUBSEP $5
        c[k] = c[k] " " $6; p50[k] = p50[k] " " $7; p99[k] = p99[k] " " $8; cpu[k] = cpu[k] " " $10
        if (!(k in seen)) { seen[k] = 1; order[++n] = k }
    }
    END {
        for (i = 1; i <= n; i++) {
            split(order[i], kb, SUBSEP)
            m = median(c[order[i]])
            mc = median(cpu[order[i]])
            printf "| %s | %s | %d | %.2f | %.2f | %.1f |\n", kb[1], kb[2], m, median(p50[order[i]]), median(p99[order[i]]), mc
            med[kb[1], kb[2]] = m; medcpu[kb[1], kb[2]] = mc; builds[kb[1]] = 1
        }
        for (b in builds) if (med[b, "off"] > 0 && medcpu[b, "off"] > 0)
            printf "\n%s: encryption costs %.1f%% of median commits/s and %.1f%% more CPU per commit\n", b,
                100 * (1 - med[b, "AES-GCM"] / med[b, "off"]), 100 * (medcpu[b, "AES-GCM"] / medcpu[b, "off"] - 1)
    }' "$OUT"
