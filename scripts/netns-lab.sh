#!/usr/bin/env bash
# netns-lab.sh: namespace hosts joined by veth, for tests, benchmarks and the demo.
#
#   netns-lab.sh up LAB N [MTU]   create hosts LAB-h1..LAB-hN; underlay 198.18.0.i/24 and
#                                 2001:2::i/64 (RFC 5180 benchmarking range) on eth0.
#                                 N=2: one veth pair between h1 and h2 (the anchors' topology);
#                                 N>2: each host's eth0 plugged into a bridge in LAB-sw.
#   netns-lab.sh down LAB         kill the processes inside LAB's namespaces, delete them.
#   netns-lab.sh sweep            remove labs named shoal-PID-* whose PID is gone (left by a
#                                 crashed test run of ours).
#
# Only namespaces named LAB-h<i>, LAB-t<i> (task namespaces that tests add) and LAB-sw are ever
# touched; links live inside them and die with them. Addresses: 198.18.0.0/16 and 2001:2::/48 only.
set -euo pipefail

up() {
  local lab=$1 n=$2 mtu=${3:-1500}
  [ "$n" -ge 2 ] || { echo "netns-lab: need at least 2 hosts" >&2; exit 2; }
  for i in $(seq 1 "$n"); do
    ip netns add "$lab-h$i"
    ip -n "$lab-h$i" link set lo up
  done
  if [ "$n" -eq 2 ]; then
    ip link add eth0 netns "$lab-h1" mtu "$mtu" type veth peer name eth0 netns "$lab-h2" mtu "$mtu"
  else
    ip netns add "$lab-sw"
    ip -n "$lab-sw" link add br0 type bridge
    ip -n "$lab-sw" link set br0 up
    for i in $(seq 1 "$n"); do
      ip link add eth0 netns "$lab-h$i" mtu "$mtu" type veth peer name "p$i" netns "$lab-sw" mtu "$mtu"
      ip -n "$lab-sw" link set "p$i" master br0 up
    done
  fi
  for i in $(seq 1 "$n"); do
    ip -n "$lab-h$i" addr add "198.18.0.$i/24" dev eth0
    ip -n "$lab-h$i" addr add "2001:2::$i/64" dev eth0 nodad
    ip -n "$lab-h$i" link set eth0 up
  done
}

down() {
  local lab=$1
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${lab}-(h[0-9]+|t[0-9]+|sw)$" || true); do
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then kill -9 $pids 2>/dev/null || true; fi
    ip netns del "$ns" 2>/dev/null || true
  done
}

sweep() {
  local lab pid
  for lab in $(ip netns list | awk '{print $1}' | grep -oE '^shoal-[0-9]+-[a-z0-9]+' | sort -u || true); do
    pid=$(echo "$lab" | cut -d- -f2)
    if ! kill -0 "$pid" 2>/dev/null; then down "$lab"; fi
  done
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  sweep) sweep ;;
  *) echo "usage: netns-lab.sh up LAB N [MTU] | down LAB | sweep" >&2; exit 2 ;;
esac
