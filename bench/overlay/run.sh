#!/usr/bin/env bash
# Overlay benchmark: two namespace hosts over veth, side by side in one run:
#   veth direct | kernel VXLAN | wireguard-go (userspace anchor) | Shoal plaintext | Shoal encrypted
# iperf3 TCP 1 and 4 streams; sockperf ping-pong RTT p50/p99 (64-byte messages, TCP and UDP,
# --full-rtt). Client side (host 1 and its VTEP/tunnel) on CPU 0, server side on CPU 1, as in
# ../shared/ANCHORS.md. Writes bench/overlay/RESULTS.md with ratios.
#   bench/overlay/run.sh [seconds per measurement, default 5]
# Network rule: only namespaces this script creates (shoal-<pid>-obench-*), removed on exit;
# underlay 198.18.0.0/24, overlays 198.19.x.0/24.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}
swift build -c release --product shoal >/dev/null
bin=$PWD/.build/release/shoal
lab=shoal-$$-obench
h1=$lab-h1 h2=$lab-h2 t1=$lab-t1 t2=$lab-t2
work=$(mktemp -d /tmp/shoal-obench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash scripts/netns-lab.sh down "$lab"
  rm -rf "$work"
}
trap cleanup EXIT
bash scripts/netns-lab.sh up "$lab" 2

# Background commands are started as `ip netns exec NS CMD...` directly (no shell function in
# between), so the PID recorded is the command's own and killing it leaves nothing behind.
bg() { "$@" >>"$work/bg.log" 2>&1 & pids+=($!); }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
bg_ns() { local ns=$1; shift; bg ip netns exec "$ns" "$@"; }

# iperf3 Gb/s: client in $1 (CPU 0) to server $3 in $2 (CPU 1), $4 parallel streams.
iperf() {
  local cns=$1 sns=$2 ip=$3 streams=$4
  bg_ns "$sns" taskset -c 1 iperf3 -s -1 -B "$ip" -p 5201
  sleep 0.5
  in_ns "$cns" taskset -c 0 iperf3 -c "$ip" -p 5201 -t "$secs" -P "$streams" -J >"$work/iperf.json" 2>/dev/null || {
    echo "n/a"; return; }
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' "$work/iperf.json"
}

# sockperf ping-pong RTT "p50 / p99" in µs; $4 = tcp|udp.
rtt() {
  local cns=$1 sns=$2 ip=$3 proto=$4 flag=""
  [ "$proto" = tcp ] && flag=--tcp
  bg_ns "$sns" taskset -c 1 sockperf sr $flag -i "$ip" -p 11111
  local spid=${pids[-1]}
  sleep 0.5
  in_ns "$cns" taskset -c 0 sockperf pp $flag -i "$ip" -p 11111 -t "$secs" -m 64 --full-rtt >"$work/sp.txt" 2>&1 || true
  kill "$spid" 2>/dev/null || true
  local p50 p99
  p50=$(grep -E 'percentile 50.000' "$work/sp.txt" | awk '{print $NF}')
  p99=$(grep -E 'percentile 99.000' "$work/sp.txt" | awk '{print $NF}')
  if [ -z "$p50" ]; then echo "n/a / n/a"; else printf '%.0f / %.0f' "$p50" "$p99"; fi
}

declare -A row
measure() {  # name client-ns server-ns server-ip
  local name=$1
  local one four tcp udp
  one=$(iperf "$2" "$3" "$4" 1)
  four=$(iperf "$2" "$3" "$4" 4)
  tcp=$(rtt "$2" "$3" "$4" tcp)
  udp=$(rtt "$2" "$3" "$4" udp)
  row[$name]="$one|$four|$tcp|$udp"
  echo "$name: $one Gb/s, 4 streams $four Gb/s, TCP RTT $tcp µs, UDP RTT $udp µs" >&2
}

# 1. veth direct.
measure "veth direct" "$h1" "$h2" 198.18.0.2

# 2. Kernel VXLAN, point to point, MTU 1450.
for i in 1 2; do
  j=$((3 - i)); ns=$lab-h$i
  ip -n "$ns" link add vx0 type vxlan id 200 local 198.18.0.$i remote 198.18.0.$j dstport 4789 dev eth0
  ip -n "$ns" link set vx0 mtu 1450 up
  ip -n "$ns" addr add 198.19.200.$i/24 dev vx0
done
measure "kernel VXLAN" "$h1" "$h2" 198.19.200.2
for i in 1 2; do ip -n "$lab-h$i" link del vx0; done

# 3. wireguard-go (Debian's package), the userspace anchor. Its control socket lives in
# /var/run/wireguard/<ifname>.sock, shared by all namespaces: one distinct name per host.
for i in 1 2; do
  (umask 077; wg genkey >"$work/wg$i.key")
  wg pubkey <"$work/wg$i.key" >"$work/wg$i.pub"
done
wgif() { echo "sw$1-$$"; }
for i in 1 2; do
  bg_ns "$lab-h$i" taskset -c $((i - 1)) wireguard-go -f "$(wgif $i)"
done
for i in 1 2; do
  for _ in $(seq 100); do [ -S "/var/run/wireguard/$(wgif $i).sock" ] && break; sleep 0.1; done
done
for i in 1 2; do
  j=$((3 - i)); ns=$lab-h$i; dev=$(wgif $i)
  in_ns "$ns" wg set "$dev" private-key "$work/wg$i.key" listen-port 51820 \
    peer "$(cat "$work/wg$j.pub")" allowed-ips 198.19.201.$j/32 endpoint 198.18.0.$j:51820
  ip -n "$ns" addr add 198.19.201.$i/24 dev "$dev"
  ip -n "$ns" link set "$dev" up
done
measure "wireguard-go" "$h1" "$h2" 198.19.201.2
for i in 1 2; do ip -n "$lab-h$i" link del "$(wgif $i)" 2>/dev/null || true; done

# 4-5. Shoal, plaintext then encrypted: a VTEP per host (host 1 on CPU 0, host 2 on CPU 1),
# one task namespace attached on each.
key=$(openssl rand -hex 16)
shoal_row() {
  local name=$1 encrypted=$2 vni=$3 net=$4 m
  m=$(printf '%02x' "$net")
  for i in 1 2; do
    cat >"$work/n$i.json" <<JSON
{"node": "n$i", "underlay": {"address": "198.18.0.$i", "mtu": 1500}, "control": "$work/n$i.sock",
 "networks": [{"name": "bench", "vni": $vni, "subnet": "198.19.$net.0/24", "encrypted": $encrypted,
   "fdb": [{"mac": "02:00:c6:13:$m:01", "ip": "198.19.$net.1", "node": "n1", "underlay": "198.18.0.1"},
           {"mac": "02:00:c6:13:$m:02", "ip": "198.19.$net.2", "node": "n2", "underlay": "198.18.0.2"}]}],
 "keyRing": {"cipher": "aes-128-gcm", "epochs": [{"id": 1, "key": "$key", "state": "tx"}]}}
JSON
  done
  local vteps=()
  for i in 1 2; do
    bg_ns "$lab-h$i" taskset -c $((i - 1)) "$bin" overlay run --config "$work/n$i.json"
    vteps+=("${pids[-1]}")
  done
  for _ in $(seq 50); do [ -S "$work/n1.sock" ] && [ -S "$work/n2.sock" ] && break; sleep 0.1; done
  for i in 1 2; do
    ip netns add "$lab-t$i" 2>/dev/null || true
    in_ns "$lab-h$i" "$bin" overlay attach --config "$work/n$i.json" --netns "$lab-t$i" --ip 198.19.$net.$i >/dev/null
  done
  in_ns "$t1" ping -c 3 -i 0.2 -W 2 198.19.$net.2 >/dev/null || echo "warning: $name: no ping through the overlay" >&2
  measure "$name" "$t1" "$t2" 198.19.$net.2
  in_ns "$h1" "$bin" overlay inspect --control "$work/n1.sock" >"$work/inspect-$vni.txt" 2>&1 || true
  for p in "${vteps[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${vteps[@]}"; do wait "$p" 2>/dev/null || true; done
  for i in 1 2; do ip netns del "$lab-t$i" 2>/dev/null || true; done
}
shoal_row "Shoal plaintext" false 300 3
shoal_row "Shoal encrypted" true 301 4

# Results.
f() { echo "${row[$1]}" | cut -d'|' -f"$2"; }
ratio() { python3 -c 'import sys
try: print("%.2f×" % (float(sys.argv[1]) / float(sys.argv[2])))
except Exception: print("n/a")' "$1" "$2"; }
p() { echo "$1" | awk -F' / ' -v i="$2" '{print $i}'; }
out=bench/overlay/RESULTS.md
{
  echo "# Overlay between two namespace hosts over veth ($(date -u +%Y-%m-%d), ${secs}s per measurement)"
  echo
  echo "Client side on CPU 0, server side on CPU 1; Shoal release build; one run, side by side."
  echo
  echo "| path | TCP 1 stream Gb/s | TCP 4 streams Gb/s | TCP RTT p50 / p99 µs | UDP RTT p50 / p99 µs |"
  echo "|---|---|---|---|---|"
  for n in "veth direct" "kernel VXLAN" "wireguard-go" "Shoal plaintext" "Shoal encrypted"; do
    echo "| $n | $(f "$n" 1) | $(f "$n" 2) | $(f "$n" 3) | $(f "$n" 4) |"
  done
  echo
  echo "| ratio | value | target |"
  echo "|---|---|---|"
  echo "| Shoal encrypted / wireguard-go, 1 stream | $(ratio "$(f 'Shoal encrypted' 1)" "$(f wireguard-go 1)") | ≥ 10× |"
  echo "| Shoal encrypted / kernel VXLAN, 1 stream | $(ratio "$(f 'Shoal encrypted' 1)" "$(f 'kernel VXLAN' 1)") | ≥ 0.5× |"
  echo "| Shoal plaintext / kernel VXLAN, 1 stream | $(ratio "$(f 'Shoal plaintext' 1)" "$(f 'kernel VXLAN' 1)") | ≥ 0.8× |"
  echo "| Shoal plaintext / kernel VXLAN, 4 streams | $(ratio "$(f 'Shoal plaintext' 2)" "$(f 'kernel VXLAN' 2)") | ≥ 0.8× |"
  echo "| Shoal plaintext / kernel VXLAN, TCP RTT p50 | $(ratio "$(p "$(f 'Shoal plaintext' 3)" 1)" "$(p "$(f 'kernel VXLAN' 3)" 1)") | ≤ 1.3× |"
  echo "| Shoal plaintext / kernel VXLAN, TCP RTT p99 | $(ratio "$(p "$(f 'Shoal plaintext' 3)" 2)" "$(p "$(f 'kernel VXLAN' 3)" 2)") | ≤ 1.5× |"
  echo "| Shoal encrypted / kernel VXLAN, UDP RTT p50 | $(ratio "$(p "$(f 'Shoal encrypted' 4)" 1)" "$(p "$(f 'kernel VXLAN' 4)" 1)") | ≤ 1.3× |"
  echo "| Shoal encrypted / kernel VXLAN, UDP RTT p99 | $(ratio "$(p "$(f 'Shoal encrypted' 4)" 2)" "$(p "$(f 'kernel VXLAN' 4)" 2)") | ≤ 1.5× |"
  echo
  echo "Shoal encrypted node 1 after the run (\`shoal overlay inspect\`):"
  echo
  echo '```'
  cat "$work/inspect-301.txt" 2>/dev/null || echo "(no inspect output)"
  echo '```'
} >"$out"
cat "$out"
