#!/usr/bin/env bash
# bench/overlay/run.sh: throughput and round-trip latency between two task namespaces on two
# namespace hosts joined by veth, over five paths, one run each, side by side:
#
#   veth      the hosts' underlay veth, no overlay (the physical limit)
#   kvxlan    the kernel's VXLAN device on a bridge on each host (MTU 1450)
#   wggo      wireguard-go (Debian package; the userspace anchor), host to host over wg0
#   shoal     Shoal plaintext VXLAN (release build)
#   shoalesp  Shoal encrypted: ESP AES-128-GCM in UDP 4500 (release build)
#
# Per path: iperf3 TCP 1 stream and 4 streams (client pinned to CPU0, server to CPU1), sockperf
# ping-pong 64-byte messages over TCP and UDP, RTT p50/p99 (--full-rtt). Prints a table; ratios
# go in bench/overlay/RESULTS.md. Run as root.
#
#   bash bench/overlay/run.sh [paths...]      (default: all five; SECONDS_PER_RUN=5;
#                                              SHOAL_QUEUES=N: VTEP threads per Shoal node, default 1;
#                                              SHOAL_BIN=PATH: that shoal binary instead of the release
#                                              build, to compare two builds run after run)
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${SECONDS_PER_RUN:-5}
PATHS=("$@")
[ ${#PATHS[@]} -gt 0 ] || PATHS=(veth kvxlan wggo shoal shoalesp)
if [ -n "${SHOAL_BIN:-}" ]; then
  SHOAL=$SHOAL_BIN
else
  swift build -c release --product shoal 2>&1 | tail -1
  SHOAL=$(swift build -c release --show-bin-path)/shoal
fi
LAB=shoal-$$-obench
DIR=$(mktemp -d /tmp/shoal-bench.XXXXXX)
PIDS=()

down() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  bash scripts/netns-lab.sh down "$LAB"
}
trap 'down; rm -rf "$DIR"' EXIT
trap 'exit 130' INT TERM

# Sets CLIENT_NS, SERVER_NS, SERVER_IP for the path.
up() {
  bash scripts/netns-lab.sh up "$LAB" 2
  case $1 in
  veth)
    CLIENT_NS=$LAB-h1 SERVER_NS=$LAB-h2 SERVER_IP=198.18.0.2 ;;
  kvxlan)
    for i in 1 2; do
      local h=$LAB-h$i t=$LAB-t$i o=$((3 - i))
      ip netns add "$t"
      ip -n "$h" link add br0 mtu 1450 type bridge
      ip -n "$h" link add vx0 mtu 1450 type vxlan id 100 local 198.18.0.$i dstport 4789 nolearning
      ip -n "$h" link set vx0 master br0 up
      ip -n "$h" link set br0 up
      bridge -n "$h" fdb append 02:00:c6:13:00:0$o dev vx0 dst 198.18.0.$o self permanent
      ip -n "$h" link add tv0 mtu 1450 type veth peer name eth0 netns "$t"
      ip -n "$h" link set tv0 master br0 up
      ip -n "$t" link set eth0 address 02:00:c6:13:00:0$i mtu 1450 up
      ip -n "$t" link set lo up
      ip -n "$t" addr add 198.19.0.$i/24 dev eth0
      ip -n "$t" neigh add 198.19.0.$o lladdr 02:00:c6:13:00:0$o dev eth0 nud permanent
    done
    CLIENT_NS=$LAB-t1 SERVER_NS=$LAB-t2 SERVER_IP=198.19.0.2 ;;
  wggo)
    for i in 1 2; do (umask 077; wg genkey > "$DIR/wg$i.key"); wg pubkey < "$DIR/wg$i.key" > "$DIR/wg$i.pub"; done
    # One interface name per host: wireguard-go's UAPI socket (/var/run/wireguard/NAME.sock)
    # lives in the shared filesystem, not in the namespace.
    for i in 1 2; do
      local h=$LAB-h$i o=$((3 - i))
      WG_PROCESS_FOREGROUND=1 ip netns exec "$h" wireguard-go "wgb$i" > "$DIR/wg$i.log" 2>&1 &
      PIDS+=($!)
      for _ in $(seq 50); do [ -S "/var/run/wireguard/wgb$i.sock" ] && break; sleep 0.1; done
      ip netns exec "$h" wg set "wgb$i" private-key "$DIR/wg$i.key" listen-port 51820 \
        peer "$(cat "$DIR/wg$o.pub")" allowed-ips 198.19.0.$o/32 endpoint 198.18.0.$o:51820
      ip -n "$h" addr add 198.19.0.$i/24 dev "wgb$i"
      ip -n "$h" link set "wgb$i" mtu 1420 up
    done
    CLIENT_NS=$LAB-h1 SERVER_NS=$LAB-h2 SERVER_IP=198.19.0.2 ;;
  shoal | shoalesp)
    local enc=false
    [ "$1" = shoalesp ] && enc=true
    for i in 1 2; do
      ip netns add "$LAB-t$i"
      cat > "$DIR/n$i.json" <<JSON
{"node":"n$i","underlay":{"address":"198.18.0.$i","mtu":1500,"busyPollMicroseconds":${SHOAL_SPIN_US:-50}},"control":"$DIR/n$i.sock","queues":${SHOAL_QUEUES:-1},
 "networks":[{"vni":100,"subnet":"198.19.0.0/24","encrypted":$enc,"fdb":[
   {"mac":"02:00:c6:13:00:01","ip":"198.19.0.1","node":"n1","underlay":"198.18.0.1"},
   {"mac":"02:00:c6:13:00:02","ip":"198.19.0.2","node":"n2","underlay":"198.18.0.2"}]}],
 "keyRing":{"cipher":"aes-128-gcm","epochs":[{"id":1,"key":"000102030405060708090a0b0c0d0e0f","state":"tx"}]}}
JSON
      ip netns exec "$LAB-h$i" "$SHOAL" overlay run --config "$DIR/n$i.json" > "$DIR/n$i.log" 2>&1 &
      PIDS+=($!)
      for _ in $(seq 50); do [ -S "$DIR/n$i.sock" ] && break; sleep 0.1; done
      ip netns exec "$LAB-h$i" "$SHOAL" overlay attach --config "$DIR/n$i.json" --netns "$LAB-t$i" \
        --ip 198.19.0.$i > /dev/null
    done
    CLIENT_NS=$LAB-t1 SERVER_NS=$LAB-t2 SERVER_IP=198.19.0.2 ;;
  esac
  ip netns exec "$CLIENT_NS" ping -c 2 -W 2 "$SERVER_IP" > /dev/null
}

iperf() {  # streams → Gb/s received
  ip netns exec "$SERVER_NS" taskset -c 1 iperf3 -s -1 -B "$SERVER_IP" > /dev/null 2>&1 &
  local s=$!
  sleep 0.5
  ip netns exec "$CLIENT_NS" taskset -c 0 iperf3 -c "$SERVER_IP" -t "$T" -P "$1" -f g > "$DIR/iperf.txt" || true
  wait "$s" 2>/dev/null || true
  # The last "receiver" line is the total ([SUM] with -P > 1): "... <rate> Gbits/sec receiver".
  awk '/receiver/ {r = $(NF-2)} END {print (r == "" ? "?" : r)}' "$DIR/iperf.txt"
}

rtt() {  # tcp|udp → "p50 / p99" µs
  local proto=()
  [ "$1" = tcp ] && proto=(--tcp)
  ip netns exec "$SERVER_NS" taskset -c 1 sockperf sr "${proto[@]}" -i "$SERVER_IP" -p 11111 > /dev/null 2>&1 &
  local s=$!
  sleep 0.5
  ip netns exec "$CLIENT_NS" taskset -c 0 sockperf pp "${proto[@]}" -i "$SERVER_IP" -p 11111 -t "$T" -m 64 \
    --full-rtt > "$DIR/sockperf.txt" 2>&1 || true
  kill "$s" 2>/dev/null || true
  wait "$s" 2>/dev/null || true
  local p50 p99
  p50=$(awk '/percentile 50.000/ {print $NF}' "$DIR/sockperf.txt")
  p99=$(awk '/percentile 99.000/ {print $NF}' "$DIR/sockperf.txt")
  printf '%.0f / %.0f' "${p50:-0}" "${p99:-0}"
}

printf '| path | TCP 1 stream Gb/s | TCP 4 streams Gb/s | TCP RTT p50/p99 µs | UDP RTT p50/p99 µs |\n'
printf '|---|---|---|---|---|\n'
for p in "${PATHS[@]}"; do
  up "$p"
  one=$(iperf 1)
  four=$(iperf 4)
  trtt=$(rtt tcp)
  urtt=$(rtt udp)
  printf '| %s | %s | %s | %s | %s |\n' "$p" "$one" "$four" "$trtt" "$urtt"
  if [ "$p" = shoal ] || [ "$p" = shoalesp ]; then
    "$SHOAL" overlay inspect --control "$DIR/n1.sock" | grep -E '^(drops|  esp drops)' | sed 's/^ */    n1 /' >&2
  fi
  down
done
