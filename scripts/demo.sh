#!/usr/bin/env bash
# demo.sh: two namespace hosts joined by an encrypted Shoal overlay (ESP in UDP 4500), a task
# namespace attached on each, traffic between the tasks printed as it flows (ping, an iperf3 run
# during a key rotation, a socat exchange), the underlay capture decrypted by stock tshark with
# `shoal overlay export-sa`, then everything removed. Run as root.
#
#   bash scripts/demo.sh            (SHOAL_BUILD=release for a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it creates network namespaces)" >&2; exit 1; }
[ "${SHOAL_SKIP_DEPS:-0}" = 1 ] || bash scripts/install-deps.sh >/dev/null
CONF=${SHOAL_BUILD:-debug}
echo "== building shoal ($CONF)"
swift build -c "$CONF" --product shoal 2>&1 | tail -1
SHOAL=$(swift build -c "$CONF" --show-bin-path)/shoal

LAB=shoal-$$-demo
DIR=$(mktemp -d /tmp/shoal-demo.XXXXXX)
PIDS=()
cleanup() {
  set +e
  trap - EXIT
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  bash scripts/netns-lab.sh down "$LAB"
  rm -rf "$DIR"
  echo "== removed namespaces $LAB-h1/h2/t1/t2, bridges, TAPs and $DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/netns-lab.sh sweep
bash scripts/netns-lab.sh up "$LAB" 2
ip netns add "$LAB-t1"
ip netns add "$LAB-t2"
KEY1=$(openssl rand -hex 16)
KEY2=$(openssl rand -hex 16)
for i in 1 2; do
  cat > "$DIR/n$i.yaml" <<YAML
node: n$i
underlay: { address: 198.18.0.$i, mtu: 1500 }
control: $DIR/n$i.sock
networks:
  - name: demo
    vni: 4242
    subnet: 198.19.0.0/24
    encrypted: true
    fdb:
      - { mac: "02:00:c6:13:00:01", ip: 198.19.0.1, node: n1, underlay: 198.18.0.1 }
      - { mac: "02:00:c6:13:00:02", ip: 198.19.0.2, node: n2, underlay: 198.18.0.2 }
keyRing:
  cipher: aes-128-gcm
  epochs: [ { id: 1, key: $KEY1, state: tx } ]
YAML
done

echo "== starting shoal overlay on $LAB-h1 (198.18.0.1) and $LAB-h2 (198.18.0.2)"
for i in 1 2; do
  ip netns exec "$LAB-h$i" "$SHOAL" overlay run --config "$DIR/n$i.yaml" > "$DIR/n$i.log" 2>&1 &
  PIDS+=($!)
done
for i in 1 2; do
  for _ in $(seq 50); do [ -S "$DIR/n$i.sock" ] && break; sleep 0.1; done
  sed 's/^/[n'$i'] /' "$DIR/n$i.log"
done
for i in 1 2; do
  ip netns exec "$LAB-h$i" "$SHOAL" overlay attach --config "$DIR/n$i.yaml" --netns "$LAB-t$i" --ip 198.19.0.$i
done

echo "== underlay capture on $LAB-h1 eth0 (ESP in UDP 4500; first 12 packets printed)"
ip netns exec "$LAB-h1" tcpdump -Z root -i eth0 -n -l -c 12 udp port 4500 2>/dev/null | sed -u 's/^/[underlay] /' &
PIDS+=($!)
sleep 0.5

echo "== task t1 (198.19.0.1) pings task t2 (198.19.0.2) across the encrypted overlay"
ip netns exec "$LAB-t1" ping -c 3 198.19.0.2 | sed 's/^/[t1] /'

echo "== iperf3 t1 -> t2 for 4 s; meanwhile the key epoch rotates 1 -> 2 on both nodes"
ip netns exec "$LAB-t2" iperf3 -s -1 -B 198.19.0.2 > /dev/null 2>&1 &
PIDS+=($!)
sleep 0.3
ip netns exec "$LAB-t1" iperf3 -c 198.19.0.2 -t 4 -i 1 --forceflush 2>&1 | sed -u 's/^/[iperf3] /' &
IPERF=$!
sleep 1
for i in 1 2; do echo "[n$i] $("$SHOAL" overlay keys add --control "$DIR/n$i.sock" --id 2 --key "$KEY2")"; done
sleep 0.5
for i in 1 2; do echo "[n$i] $("$SHOAL" overlay keys promote --control "$DIR/n$i.sock" --id 2)"; done
sleep 0.5
for i in 1 2; do echo "[n$i] $("$SHOAL" overlay keys retire --control "$DIR/n$i.sock" --id 1)"; done
wait "$IPERF"

echo "== socat: t1 sends a line to t2, which answers it upper-cased (underlay captured to a file)"
ip netns exec "$LAB-h1" tcpdump -Z root -i eth0 -n -U -w "$DIR/underlay.pcap" udp port 4500 2>/dev/null &
PIDS+=($!)
sleep 0.5
ip netns exec "$LAB-t2" socat TCP-LISTEN:7000,bind=198.19.0.2 EXEC:"tr a-z A-Z" &
PIDS+=($!)
sleep 0.3
echo "hello over shoal" | ip netns exec "$LAB-t1" socat -t 2 - TCP:198.19.0.2:7000 | sed 's/^/[t1 got] /'

echo "== shoal overlay inspect on n1 (after the rotation: epoch 2 only, drop counters by cause)"
"$SHOAL" overlay inspect --control "$DIR/n1.sock" | sed 's/^/[n1] /'

echo "== stock tshark decrypts the underlay capture with 'shoal overlay export-sa'"
"$SHOAL" overlay export-sa --control "$DIR/n1.sock" > "$DIR/esp_sa"
sed 's/^/[esp_sa] /' "$DIR/esp_sa"
sleep 0.5
ARGS=()
while read -r line; do ARGS+=(-o "uat:esp_sa:$line"); done < "$DIR/esp_sa"
# The capture holds the socat exchange, sent after the rotation with epoch 2's SAs.
tshark -r "$DIR/underlay.pcap" -o esp.enable_encryption_decode:TRUE "${ARGS[@]}" -Y "tcp.port == 7000" \
  2>/dev/null | head -8 | sed 's/^/[tshark] /' || true
