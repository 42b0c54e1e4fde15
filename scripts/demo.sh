#!/usr/bin/env bash
# demo.sh: a small local cluster in network namespaces. Two namespace hosts joined by an
# encrypted Shoal overlay (ESP in UDP 4500), a task namespace attached on each, traffic between
# the tasks printed as it flows (ping, an iperf3 run during a key rotation, a socat exchange),
# the underlay capture decrypted by stock tshark with `shoal overlay export-sa`; then the routing
# mesh on both hosts publishing port 8080 for a service whose two tasks (nginx) run one per host:
# a client on a third host reaches the service through either host, the tasks see the client's
# real address through PROXY protocol v2, and a table update drains a task. Then everything is
# removed. Run as root.
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
  echo "== removed namespaces $LAB-h1/h2/h3/t1/t2, bridges, TAPs and $DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/netns-lab.sh sweep
bash scripts/netns-lab.sh up "$LAB" 3
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
      - { mac: "02:00:c6:13:00:65", ip: 198.19.0.101, node: n1, underlay: 198.18.0.1 }
      - { mac: "02:00:c6:13:00:66", ip: 198.19.0.102, node: n2, underlay: 198.18.0.2 }
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

echo
echo "== routing mesh: each host joins the overlay with an ingress address (198.19.0.10x) and"
echo "   publishes port 8080 for a service with one nginx task per host (PROXY protocol v2)"
for i in 1 2; do
  mkdir -p "$DIR/task$i"
  cat > "$DIR/task$i/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $DIR/task$i/nginx.pid;
error_log $DIR/task$i/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $DIR/task$i; proxy_temp_path $DIR/task$i; fastcgi_temp_path $DIR/task$i;
    uwsgi_temp_path $DIR/task$i; scgi_temp_path $DIR/task$i;
    server {
        listen 198.19.0.$i:80 proxy_protocol;
        location / { return 200 "task t$i (node n$i) answers client \$proxy_protocol_addr:\$proxy_protocol_port\n"; }
    }
}
NGINX
  ip netns exec "$LAB-t$i" nginx -p "$DIR/task$i" -c "$DIR/task$i/nginx.conf" &
  PIDS+=($!)
  ip netns exec "$LAB-h$i" "$SHOAL" overlay attach --config "$DIR/n$i.yaml" --netns "$LAB-h$i" \
    --ip 198.19.0.10$i --ifname ingress0
done
mesh_table() { # revision, endpoints...
  local rev=$1; shift
  printf 'revision: %s\nreactors: 1\ncontrol: %s\nports:\n  - port: 8080\n    proxyProtocol: v2\n    drainTimeoutMs: 2000\n    endpoints:\n' "$rev" "$MESH_SOCK"
  for e in "$@"; do printf '      - {address: "%s", node: %s}\n' "${e%@*}" "${e#*@}"; done
}
for i in 1 2; do
  MESH_SOCK=$DIR/mesh$i.sock mesh_table 1 198.19.0.1:80@n1 198.19.0.2:80@n2 > "$DIR/mesh$i.yaml"
  ip netns exec "$LAB-h$i" "$SHOAL" mesh run --config "$DIR/mesh$i.yaml" > "$DIR/mesh$i.log" 2>&1 &
  PIDS+=($!)
done
for i in 1 2; do
  for _ in $(seq 50); do [ -S "$DIR/mesh$i.sock" ] && break; sleep 0.1; done
  sed 's/^/[mesh n'$i'] /' "$DIR/mesh$i.log"
done
sleep 0.5
get() { # host-number: one HTTP request from the client host h3 to that host's published port
  printf 'GET / HTTP/1.0\r\nHost: demo\r\n\r\n' | ip netns exec "$LAB-h3" socat -t 3 - TCP:198.18.0.$1:8080 | tail -1
}
echo "== client on $LAB-h3 (198.18.0.3) -> port 8080 of n1 and of n2 (round robin across both tasks)"
for i in 1 2; do for _ in 1 2; do echo "[h3 -> n$i] $(get $i)"; done; done
echo "== shoal mesh inspect on n1"
"$SHOAL" mesh inspect --control "$DIR/mesh1.sock" | sed 's/^/[mesh n1] /'
echo "== revision 2 on both hosts: task t2 leaves the table (its connections drain); t1 serves all"
for i in 1 2; do
  MESH_SOCK=$DIR/mesh$i.sock mesh_table 2 198.19.0.1:80@n1 > "$DIR/mesh$i-r2.yaml"
  echo "[mesh n$i] $("$SHOAL" mesh apply "$DIR/mesh$i-r2.yaml" --control "$DIR/mesh$i.sock")"
done
for i in 1 2; do echo "[h3 -> n$i] $(get $i)"; done
echo "== a malformed table is refused whole; revision 2 keeps serving"
printf 'revision: 3\nports:\n  - port: 8080\n    endpoints: [{address: "198.19.0.1"}]\n' > "$DIR/bad.yaml"
"$SHOAL" mesh apply "$DIR/bad.yaml" --control "$DIR/mesh1.sock" 2>&1 | sed 's/^/[mesh n1] /' || true
echo "[h3 -> n1] $(get 1)"
