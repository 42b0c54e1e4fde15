#!/usr/bin/env bash
# Real processes: a 3-voter cluster on 127.0.0.1 grows by a learner that is then promoted.
# Node 4 starts empty (--join), is added as a learner, catches up, is promoted; then one of the
# original voters is killed and writes still commit (4 voters, quorum 3: node 4 must count), with
# node 4 down too none does, and node 4, restarted, answers a read with the last acknowledged write. Usage: scripts/raft-learner-test.sh [shoal]
set -euo pipefail
RAFT_SCRIPT_TAG=learner source "$(dirname "$0")/raft-procs.sh" "$@"
PEERS="1=127.0.0.1:$BASE,2=127.0.0.1:$((BASE + 1)),3=127.0.0.1:$((BASE + 2)),4=127.0.0.1:$((BASE + 3))"
fail() {
    echo "FAIL: $*"
    tail -5 "$DIR"/log* || true
    exit 1
}
start() {
    "$SHOAL" raft run --id "$1" --peers "$PEERS" --voters 1,2,3 --data "$DIR/n$1" --tick-ms 20 "${@:2}" \
        >>"$DIR/log$1" 2>&1 &
    PIDS[$1]=$!
}
kv() { timeout 20 "$SHOAL" raft kv --peers "$PEERS" "$@"; }
member() { timeout 20 "$SHOAL" raft member --peers "$PEERS" "$@"; }
for i in 1 2 3; do start "$i"; done
for i in $(seq 1 20); do kv put "k$i" "v$i" >/dev/null || fail "put k$i"; done
start 4 --join
out=$(member add-learner 4) || fail "add-learner 4: $out"
echo "add-learner 4: $out"
# A learner counts in no quorum: the 3 voters keep committing.
for i in $(seq 21 30); do kv put "k$i" "v$i" >/dev/null || fail "put k$i"; done
# Promotion waits until the learner has caught up: retry while refused.
promoted=""
for _ in $(seq 1 50); do
    if out=$(member promote 4 2>&1); then
        promoted=yes
        break
    fi
    echo "promote 4: $out (retrying)"
    sleep 0.2
done
[ -n "$promoted" ] || fail "learner 4 never promoted"
echo "promote 4: $out"
# Kill voter 3 (the leader or not): with 4 voters the quorum is 3, so node 4 must count.
victim=3
kill -9 "${PIDS[$victim]}"
unset "PIDS[$victim]"
echo "killed voter $victim"
for i in $(seq 31 40); do kv put "k$i" "v$i" >/dev/null || fail "put k$i after the kill"; done
# And without node 4 too, 2 of 4 voters are no quorum: a write must not be acknowledged.
kill -9 "${PIDS[4]}"
echo "killed node 4"
if timeout 5 "$SHOAL" raft kv --peers "$PEERS" put lost x >/dev/null 2>&1; then
    fail "a write was acknowledged by 2 of 4 voters"
fi
echo "no write commits with 2 of 4 voters up"
start 4
# Node 4 answers a read (through ReadIndex) with the last acknowledged write.
got=$(timeout 20 "$SHOAL" raft kv --peers "4=127.0.0.1:$((BASE + 3))" get k40) || fail "read through node 4"
[ "$got" = v40 ] || fail "node 4 read k40 = '$got'"
out=$(member add-learner 4 2>&1) && fail "adding a member twice was accepted"
echo "add-learner 4 again: $out"
echo "PASS"
