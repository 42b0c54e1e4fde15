#!/usr/bin/env bash
# bench/overlay/mallocs.sh: counts malloc calls in both Shoal daemons (a perf uprobe on glibc's
# malloc) while an encrypted iperf3 stream runs between two task namespaces. The hot path must
# not allocate per packet: prints the count and the packets carried, fails if mallocs exceed
# MAX_MALLOCS (default 0) during the measured seconds. Run as root; needs perf.
# MALLOCS_TRAFFIC=uso sends UDP with GSO instead (`shoal bench udp-send --gso`, 1,350-byte
# datagrams, 41 per send, into a socat sink): the TAP's USO superframes, cut by the VTEP.
set -euo pipefail
cd "$(dirname "$0")/../.."
MAX=${MAX_MALLOCS:-0}
swift build -c release --product shoal 2>&1 | tail -1
SHOAL=$(swift build -c release --show-bin-path)/shoal
LAB=shoal-$$-omalloc
DIR=$(mktemp -d /tmp/shoal-mallocs.XXXXXX)
PIDS=()
LIBC=$(ldd "$SHOAL" | awk '/libc.so.6/ {print $3}')
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  perf probe -q -d probe_libc:malloc 2>/dev/null
  bash scripts/netns-lab.sh down "$LAB"
  rm -rf "$DIR"
}
trap cleanup EXIT
bash scripts/netns-lab.sh up "$LAB" 2
for i in 1 2; do
  ip netns add "$LAB-t$i"
  cat > "$DIR/n$i.json" <<JSON
{"node":"n$i","underlay":{"address":"198.18.0.$i"},"control":"$DIR/n$i.sock","queues":${SHOAL_QUEUES:-1},
 "networks":[{"vni":100,"subnet":"198.19.0.0/24","encrypted":true,"fdb":[
   {"mac":"02:00:c6:13:00:01","ip":"198.19.0.1","node":"n1","underlay":"198.18.0.1"},
   {"mac":"02:00:c6:13:00:02","ip":"198.19.0.2","node":"n2","underlay":"198.18.0.2"}]}],
 "keyRing":{"epochs":[{"id":1,"key":"000102030405060708090a0b0c0d0e0f","state":"tx"}]}}
JSON
  ip netns exec "$LAB-h$i" "$SHOAL" overlay run --config "$DIR/n$i.json" > "$DIR/n$i.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do [ -S "$DIR/n$i.sock" ] && break; sleep 0.1; done
  ip netns exec "$LAB-h$i" "$SHOAL" overlay attach --config "$DIR/n$i.json" --netns "$LAB-t$i" \
    --ip 198.19.0.$i > /dev/null
done
perf probe -q -x "$LIBC" malloc
if [ "${MALLOCS_TRAFFIC:-tcp}" = uso ]; then
  ip netns exec "$LAB-t2" socat -u UDP4-RECV:5201,bind=198.19.0.2 OPEN:/dev/null > /dev/null 2>&1 &
  PIDS+=($!)
  ip netns exec "$LAB-t1" ping -c 1 -W 2 198.19.0.2 > /dev/null
  ip netns exec "$LAB-t1" timeout 5 "$SHOAL" bench udp-send --to 198.19.0.2:5201 --bytes 100000000000 \
    --segment 1350 --gso 56000 --pace-microseconds 100 > "$DIR/iperf.txt" 2>&1 &
else
  ip netns exec "$LAB-t2" iperf3 -s -1 -B 198.19.0.2 > /dev/null 2>&1 &
  PIDS+=($!)
  sleep 0.5
  ip netns exec "$LAB-t1" iperf3 -c 198.19.0.2 -t 5 > "$DIR/iperf.txt" 2>&1 &
fi
CLIENT=$!
sleep 1.5  # past start-up and the first ARP
before=$("$SHOAL" overlay inspect --json --control "$DIR/n2.sock" | awk -F'[:,]' '/"udpDatagramsIn"/ {print $2; exit}')
count=$(perf stat -x, -e probe_libc:malloc -p "${PIDS[0]},${PIDS[1]}" -- sleep 2 2>&1 | awk -F, '/probe_libc:malloc/ {print $1}')
after=$("$SHOAL" overlay inspect --json --control "$DIR/n2.sock" | awk -F'[:,]' '/"udpDatagramsIn"/ {print $2; exit}')
wait "$CLIENT" || true
echo "mallocs in both daemons during 2 s: $count; ESP datagrams received by n2 meanwhile: $((after - before))"
for i in 1 2; do "$SHOAL" overlay inspect --control "$DIR/n$i.sock" | grep -E "^(counters|drops|peer|  esp drops)" | sed "s/^/n$i /"; done || true
grep receiver "$DIR/iperf.txt" || true
[ "$count" -le "$MAX" ]
