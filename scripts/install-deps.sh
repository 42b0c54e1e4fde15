#!/usr/bin/env bash
# Installs every Debian package Shoal needs to build, test and benchmark.
# Idempotent; run as root on a fresh Debian 12 machine.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  # build: system libraries behind the SwiftPM system-library targets
  pkg-config libssl-dev libnl-3-dev libnl-route-3-dev libpcap-dev
  # test fixtures and real peers
  iproute2 iputils-ping ethtool tcpdump tshark socat haproxy nginx libnginx-mod-stream openssl
  # benchmarks and anchors
  iperf3 sockperf wrk wireguard-go wireguard-tools bc linux-perf
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  # nginx and haproxy are started by the tests themselves, never as system services: keep
  # their packages' maintainer scripts from starting them (policy-rc.d exit 101 = "not now").
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
  if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
