#!/usr/bin/env bash
# bench/mesh/run.sh: the routing mesh (an L4 TCP proxy on published ports) against its anchors,
# side by side in one run, on loopback (127.0.0.0/8 only). Rows:
#
#   direct    the backends without a proxy (the physical limit)
#   shoal     `shoal mesh run` (release build), reactors: 1
#   haproxy   HAProxy, mode tcp, nbthread 1 (Debian's 2.6)
#   nginx     nginx stream module, worker_processes 1
#   socat     socat TCP-LISTEN:port,fork,reuseaddr (a process per connection)
#   haproxy-splice  HAProxy as above with `option splice-auto` (not in the default rows)
#
# Per row, the proxy pinned to CPU1 (taskset -c 1); wrk, iperf3 and the backends on CPU0:
#   - wrk -t1 -c50 keep-alive: req/s and latency p50/p99 (--latency);
#   - wrk -t1 -c50 -H 'Connection: close' (a new TCP connection per request): req/s;
#   - iperf3 one stream through the proxy (control and data connections both proxied): Gb/s;
#   - the proxy's CPU during each run (utime+stime from /proc/PID/stat, children included) →
#     requests, connections and gigabits per proxy core-second.
# Backends: nginx (one worker, 128-byte file, keep-alive, no access log) and iperf3 -s.
# Then, per row of IDLE_ROWS, a fresh proxy holds N idle connections (bench/mesh/holder.py opens
# them from 127.0.0.2.., 10k per source address; the proxy spreads them over 8 backend ports on a
# holder that accepts and keeps them): memory per connection = (RSS with N − RSS before) / N.
#
# Writes bench/mesh/RESULTS.md (tables, ratios to HAProxy, the issue's targets) and prints it.
# Nothing outside this run is touched: configs live in a temp dir, every process is ours and
# killed by PID on exit, no sysctl is changed (the defaults suffice; checked below).
#
#   bash bench/mesh/run.sh [rows...]     (default: direct shoal haproxy nginx socat)
#   env: DURATION=10 (s per wrk/iperf3 run)  RUNS=1 (repeat all rows, report medians)
#        IDLE_CONNS=100000 (0 skips)  IDLE_ROWS="shoal haproxy nginx"  SKIP_BUILD=1
#        OUT=bench/mesh/RESULTS.md  KEEP=1 (keep the temp dir with raw outputs)
#        SHOAL_BIN=path (another shoal binary; default: the release build)
#        PERF=1 (profile each proxy's first run; tops of the profiles in bench/mesh/profiles/)
#        NICE=-10 (run every process of the benchmark at this niceness; it only outranks work in
#        the same cgroup: other sessions' builds on this machine were not slowed by it)
# IDLE_CONNS needs a hard RLIMIT_NOFILE of 2N + 2000; where it cannot be raised (no
# CAP_SYS_RESOURCE, hard limit 20,000 here), N is clamped (9,000 here) and RESULTS.md says so.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
D=${DURATION:-10}
RUNS=${RUNS:-1}
N=${IDLE_CONNS:-100000}
IDLE=(${IDLE_ROWS:-shoal haproxy nginx})
OUT=${OUT:-bench/mesh/RESULTS.md}
NICE=${NICE:-0}
PIN0=(nice -n "$NICE" taskset -c 0)   # load generators and backends
PIN1=(nice -n "$NICE" taskset -c 1)   # the proxy
ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=(direct shoal haproxy nginx socat)

for t in wrk iperf3 haproxy nginx socat python3 taskset ss; do
  command -v "$t" > /dev/null || { echo "missing $t: run scripts/install-deps.sh" >&2; exit 1; }
done
NGX_STREAM=/usr/lib/nginx/modules/ngx_stream_module.so
[ -f "$NGX_STREAM" ] || { echo "missing $NGX_STREAM (libnginx-mod-stream)" >&2; exit 1; }

# Ports (127.0.0.1): backends 18081 (nginx http), 18201 (iperf3), 18091-18098 (idle holder);
# every proxy listens on 18080 → 18081, 18200 → 18201, 18090 → 18091..18098 (round robin).
HTTP_B=18081 IPERF_B=18201 HTTP_P=18080 IPERF_P=18200 IDLE_P=18090
IDLE_B=(18091 18092 18093 18094 18095 18096 18097 18098)
for p in $HTTP_B $IPERF_B $HTTP_P $IPERF_P $IDLE_P "${IDLE_B[@]}"; do
  if [ -n "$(ss -Hltn "sport = :$p")" ]; then echo "port $p is in use" >&2; exit 1; fi
done

# Idle connections: the holder uses ceil(N/10000) source addresses, so one address's ephemeral
# range (net.ipv4.ip_local_port_range) need hold 10k; the proxy → backend side spreads N over 8
# ports, N/8 each. Every process started below inherits this file-descriptor limit.
read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range
if [ "$N" -gt 0 ] && [ $(((hi - lo) * 8)) -lt $((N + N / 10)) ]; then
  echo "ip_local_port_range $lo-$hi is too small for IDLE_CONNS=$N over 8 backend ports" >&2; exit 1
fi
# The proxy holds 2 descriptors per idle connection (client side, backend side). Raising the
# hard RLIMIT_NOFILE needs CAP_SYS_RESOURCE; without it (some containers) N is clamped to what
# the hard limit allows, and RESULTS.md says so.
N_ASKED=$N
NOFILE=$((N * 2 + 2000))
[ "$NOFILE" -le "$(cat /proc/sys/fs/nr_open)" ] || { echo "fs.nr_open < $NOFILE" >&2; exit 1; }
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$NOFILE" ]; then
  ulimit -Hn "$NOFILE" 2> /dev/null || true
fi
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=$NOFILE
if [ "$HARD" -lt "$NOFILE" ]; then
  N=$(((HARD - 2000) / 2 / 1000 * 1000))
  echo "hard RLIMIT_NOFILE is $HARD and cannot be raised (no CAP_SYS_RESOURCE): IDLE_CONNS $N_ASKED → $N" >&2
fi
NOFILE=$HARD
ulimit -n "$NOFILE"

SHOAL="" BUILT=1
if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${SHOAL_BIN:-}" ]; then
  # A failed build must not bench a stale binary left by an earlier one.
  if ! swift build -c release --product shoal > /tmp/shoal-meshbench-build.$$.log 2>&1; then
    # A clang module cache built before a header was added to CShoal/include (an umbrella
    # directory) is not invalidated: "cannot find 'shoal_…' in scope". Retry once without it.
    rm -rf "$(swift build -c release --show-bin-path)/../ModuleCache" .build/release/ModuleCache
    swift build -c release --product shoal > /tmp/shoal-meshbench-build.$$.log 2>&1 || BUILT=0
  fi
  tail -1 /tmp/shoal-meshbench-build.$$.log
  [ "$BUILT" = 1 ] || grep -m3 'error:' /tmp/shoal-meshbench-build.$$.log >&2 || true
  rm -f /tmp/shoal-meshbench-build.$$.log
fi
BIN=${SHOAL_BIN:-$(swift build -c release --show-bin-path 2> /dev/null || echo .build/release)/shoal}
if [ "$BUILT" = 1 ] && [ -x "$BIN" ] && "$BIN" mesh run --help > /dev/null 2>&1; then SHOAL=$BIN; fi

DIR=$(mktemp -d /tmp/shoal-meshbench.XXXXXX)
chmod 755 "$DIR"   # nginx workers read the 128-byte file
PIDS=()      # long-lived: backends
PROXY_PID="" # the proxy of the current row
TICK=$(getconf CLK_TCK)

stop_pid() {  # pid: TERM, wait up to 5 s, then KILL
  local p=$1
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2> /dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$p" 2> /dev/null || break
    [ "$(awk '{print $3}' "/proc/$p/stat" 2> /dev/null)" != Z ] || break   # exited, not yet reaped
    sleep 0.1
  done
  kill -KILL "$p" 2> /dev/null || true
  wait "$p" 2> /dev/null || true
}
stop_proxy() {
  [ -n "$PROXY_PID" ] || return 0
  # socat's listeners run under a subshell: stop them (by PID) before it.
  local c
  for c in $(pgrep -P "$PROXY_PID" -x socat || true); do stop_pid "$c"; done
  stop_pid "$PROXY_PID"
  PROXY_PID=""
  sleep 0.5
}
cleanup() {
  [ -z "${PERF_PID:-}" ] || { kill -INT "$PERF_PID" 2> /dev/null; wait "$PERF_PID" 2> /dev/null; } || true
  stop_proxy
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "${KEEP:-0}" = 1 ]; then echo "raw outputs kept in $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_listen() {  # port [seconds]
  for _ in $(seq $((${2:-10} * 10))); do
    [ -n "$(ss -Hltn "sport = :$1")" ] && return 0
    sleep 0.1
  done
  return 1
}

# CPU ticks of a process and its live children (nginx's worker, socat's forks), plus the
# children it has reaped (cutime/cstime). Fields after "comm)": state=$1 ppid=$2 utime=$12
# stime=$13 cutime=$14 cstime=$15.
ticks_one() {
  local s
  s=$(cat "/proc/$1/stat" 2> /dev/null) || { echo 0; return; }
  s=${s##*) }
  set -- $s
  echo $((${12} + ${13} + ${14} + ${15}))
}
ticks() {
  [ -n "${1:-}" ] || { echo 0; return; }
  local t c
  t=$(ticks_one "$1")
  for c in $(pgrep -P "$1" || true); do t=$((t + $(ticks_one "$c"))); done
  echo "$t"
}
rss_kb() {  # process and live children, VmRSS in kB
  local t=0 p v
  for p in "$1" $(pgrep -P "$1" || true); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2> /dev/null || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# ---- backends (CPU0) ----
mkdir -p "$DIR/www" "$DIR/tmp"
head -c 128 /dev/zero | tr '\0' 'x' > "$DIR/www/128.bin"
cat > "$DIR/backend-nginx.conf" << EOF
user root;
worker_processes 1;
daemon off;
pid $DIR/backend-nginx.pid;
error_log $DIR/backend-nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush off;
  tcp_nodelay on;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  client_body_temp_path $DIR/tmp/body;
  proxy_temp_path $DIR/tmp/proxy;
  fastcgi_temp_path $DIR/tmp/fastcgi;
  uwsgi_temp_path $DIR/tmp/uwsgi;
  scgi_temp_path $DIR/tmp/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$HTTP_B;
    root $DIR/www;
  }
}
EOF
"${PIN0[@]}" nginx -p "$DIR" -e "$DIR/backend-nginx.err" -c "$DIR/backend-nginx.conf" &
PIDS+=($!)
"${PIN0[@]}" iperf3 -s -B 127.0.0.1 -p $IPERF_B > "$DIR/iperf3-server.log" 2>&1 &
PIDS+=($!)
wait_listen $HTTP_B || { cat "$DIR/backend-nginx.err" >&2; exit 1; }
wait_listen $IPERF_B || { cat "$DIR/iperf3-server.log" >&2; exit 1; }

# ---- proxy configs ----
idle_servers_haproxy=""
idle_servers_nginx=""
idle_endpoints_shoal=""
for i in "${!IDLE_B[@]}"; do
  idle_servers_haproxy+="  server s$i 127.0.0.1:${IDLE_B[$i]}"$'\n'
  idle_servers_nginx+="    server 127.0.0.1:${IDLE_B[$i]};"$'\n'
  idle_endpoints_shoal+="${idle_endpoints_shoal:+,}{\"address\":\"127.0.0.1:${IDLE_B[$i]}\",\"node\":\"n1\",\"weight\":1,\"healthy\":true}"
done
MAXCONN=$((N + 1000))  # per proxy; HAProxy and nginx size their fd tables from it
[ $((MAXCONN * 2 + 200)) -le "$NOFILE" ] || MAXCONN=$(((NOFILE - 200) / 2))

cat > "$DIR/haproxy.cfg" << EOF
global
  nbthread 1
  maxconn $MAXCONN
defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m
  maxconn $MAXCONN
frontend http
  bind 127.0.0.1:$HTTP_P
  default_backend http
backend http
  server s1 127.0.0.1:$HTTP_B
frontend iperf
  bind 127.0.0.1:$IPERF_P
  default_backend iperf
backend iperf
  server s1 127.0.0.1:$IPERF_B
frontend idle
  bind 127.0.0.1:$IDLE_P
  default_backend idle
backend idle
  balance roundrobin
$idle_servers_haproxy
EOF

cat > "$DIR/nginx-stream.conf" << EOF
load_module $NGX_STREAM;
user root;
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $DIR/nginx-stream.pid;
error_log $DIR/nginx-stream.err warn;
events { worker_connections $((MAXCONN * 2)); }
stream {
  proxy_connect_timeout 5s;
  proxy_timeout 10m;
  tcp_nodelay on;
  upstream http { server 127.0.0.1:$HTTP_B; }
  upstream iperf { server 127.0.0.1:$IPERF_B; }
  upstream idle {
$idle_servers_nginx  }
  server { listen 127.0.0.1:$HTTP_P; proxy_pass http; }
  server { listen 127.0.0.1:$IPERF_P; proxy_pass iperf; }
  server { listen 127.0.0.1:$IDLE_P backlog=4096; proxy_pass idle; }
}
EOF

# The same, relaying with splice(2) where HAProxy sees fit (as Shoal does for bulk transfers).
# HAProxy reserves descriptors for maxpipes (default maxconn/4) pipes: bound it so the fd limit holds.
# (maxconn 4096 too: this row takes no part in the idle test.)
sed -e 's/^  mode tcp$/  mode tcp\n  option splice-auto/' -e 's/^  nbthread 1$/  nbthread 1\n  maxpipes 1024/' \
  -e 's/^  maxconn .*/  maxconn 4096/' \
  "$DIR/haproxy.cfg" > "$DIR/haproxy-splice.cfg"

shoal_port() {  # port endpoints-json
  printf '{"port":%s,"protocol":"tcp","balancer":"round-robin","proxyProtocol":"none","idleTimeoutMs":600000,"maxConnections":%s,"endpoints":[%s]}' \
    "$1" "$MAXCONN" "$2"
}
ep() { printf '{"address":"127.0.0.1:%s","node":"n1","weight":1,"healthy":true}' "$1"; }
cat > "$DIR/mesh.json" << EOF
{"revision":1,"listen":"127.0.0.1","reactors":1,"control":"$DIR/mesh.sock","ports":[
 $(shoal_port $HTTP_P "$(ep $HTTP_B)"),
 $(shoal_port $IPERF_P "$(ep $IPERF_B)"),
 $(shoal_port $IDLE_P "$idle_endpoints_shoal")]}
EOF

# Starts the row's proxy on CPU1; sets PROXY_PID. Returns 1 if the row cannot run.
start_proxy() {
  PROXY_PID=""
  case $1 in
  direct) return 0 ;;
  shoal)
    [ -n "$SHOAL" ] || return 1
    "${PIN1[@]}" "$SHOAL" mesh run --config "$DIR/mesh.json" > "$DIR/shoal.log" 2>&1 & ;;
  haproxy)
    "${PIN1[@]}" haproxy -db -f "$DIR/haproxy.cfg" > "$DIR/haproxy.log" 2>&1 & ;;
  haproxy-splice)
    "${PIN1[@]}" haproxy -db -f "$DIR/haproxy-splice.cfg" > "$DIR/haproxy-splice.log" 2>&1 & ;;
  nginx)
    "${PIN1[@]}" nginx -p "$DIR" -e "$DIR/nginx-stream.err" -c "$DIR/nginx-stream.conf" & ;;
  socat)
    (
      "${PIN1[@]}" socat TCP-LISTEN:$HTTP_P,bind=127.0.0.1,fork,reuseaddr,backlog=4096 TCP:127.0.0.1:$HTTP_B &
      "${PIN1[@]}" socat TCP-LISTEN:$IPERF_P,bind=127.0.0.1,fork,reuseaddr TCP:127.0.0.1:$IPERF_B &
      wait
    ) &
    ;;
  esac
  PROXY_PID=$!
  if ! wait_listen $HTTP_P 20 || ! wait_listen $IPERF_P 5; then
    echo "$1 did not start:" >&2
    cat "$DIR/$1".{log,err} "$DIR/nginx-stream.err" 2> /dev/null | tail -5 >&2 || true
    stop_pid "$PROXY_PID"; PROXY_PID=""
    return 1
  fi
}
# socat runs as two listeners under one subshell: its CPU is the subshell's children's and
# grandchildren's (forks), so count the whole tree for it.
tree_ticks() {
  [ -n "${1:-}" ] || { echo 0; return; }
  local t c g
  t=$(ticks "$1")
  for c in $(pgrep -P "$1" || true); do
    for g in $(pgrep -P "$c" || true); do t=$((t + $(ticks_one "$g"))); done
  done
  echo "$t"
}

# PERF=1: profile the proxy (perf record, on CPU0) during each measurement of the first run;
# the top of each profile goes to bench/mesh/profiles/ROW.MEASUREMENT.txt. It perturbs the run.
PERF_PID="" K=0
perf_start() {  # file
  [ "${PERF:-0}" = 1 ] && [ -n "$PROXY_PID" ] && [ "$K" = 1 ] || return 0
  local pids
  pids=$(echo "$PROXY_PID" $(pgrep -P "$PROXY_PID" || true) | tr ' ' ',')
  "${PIN0[@]}" perf record -q -F 499 -p "$pids" -o "$1" > /dev/null 2>&1 &
  PERF_PID=$!
  sleep 0.2
}
perf_stop() {  # file name
  [ -n "$PERF_PID" ] || return 0
  kill -INT "$PERF_PID" 2> /dev/null || true
  wait "$PERF_PID" 2> /dev/null || true
  PERF_PID=""
  mkdir -p bench/mesh/profiles
  {
    echo "# perf record -F 499 of $2 ($(date -u +%F), commit $(git rev-parse --short HEAD)): the proxy's own time"
    echo "## by object"
    perf report -i "$1" --stdio --no-children --sort dso --percent-limit 0.5 2> /dev/null |
      grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+$//'
    echo "## by symbol (≥ 0.7%)"
    perf report -i "$1" --stdio --no-children --sort dso,symbol --percent-limit 0.7 2> /dev/null |
      grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+$//; s/[[:space:]]+-[[:space:]]+-$//' | head -45 | { swift demangle --simplified 2> /dev/null || cat; }
  } > "bench/mesh/profiles/$2.txt"
  rm -f "$1"
}

# PERF=1 also counts the proxy's system calls (strace -c) over a separate 3-second
# `Connection: close` run, per connection: bench/mesh/profiles/ROW.close.syscalls.txt.
syscalls_per_conn() {  # url row
  [ "${PERF:-0}" = 1 ] && [ -n "$PROXY_PID" ] && [ "$K" = 1 ] || return 0
  local args=() p st n
  for p in $PROXY_PID $(pgrep -P "$PROXY_PID" || true); do args+=(-p "$p"); done
  "${PIN0[@]}" strace -c -f -qq -o "$DIR/strace.txt" "${args[@]}" &
  st=$!
  sleep 0.5
  "${PIN0[@]}" wrk -t1 -c50 -d3s -H 'Connection: close' "$1" > "$DIR/strace-wrk.txt" 2>&1 || true
  sleep 0.5
  kill -INT "$st" 2> /dev/null || true
  wait "$st" 2> /dev/null || true
  n=$(awk '/requests in/ {print $1}' "$DIR/strace-wrk.txt")
  mkdir -p bench/mesh/profiles
  {
    echo "# $2: system calls of the proxy per connection (strace -c -f over a 3 s wrk -c50"
    echo "# 'Connection: close' run, $n connections; strace slows the proxy, counts stay exact)"
    awk -v n="${n:-0}" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" && n > 0 {
        name = $NF; calls = $4; errs = (NF == 6 ? $5 : 0)
        printf "%-20s %8.2f calls/conn %8.2f errors/conn\n", name, calls / n, errs / n
      } $NF == "total" && n > 0 { printf "%-20s %8.2f calls/conn\n", "total", $4 / n }' "$DIR/strace.txt"
  } > "bench/mesh/profiles/$2.close.syscalls.txt"
}

bench_row() {  # row run#
  local r=$1 k=$2 f="$DIR/$1.$2" c0 c1 c2 c3
  K=$k
  if ! start_proxy "$r"; then echo "$r not-run" >> "$DIR/status"; return 0; fi
  local hp=$HTTP_P ip=$IPERF_P
  [ "$r" = direct ] && hp=$HTTP_B ip=$IPERF_B
  local url="http://127.0.0.1:$hp/128.bin"
  "${PIN0[@]}" wrk -t1 -c50 -d1s "$url" > /dev/null 2>&1 || true   # warm-up
  sleep 0.5
  c0=$(tree_ticks "$PROXY_PID")
  perf_start "$DIR/perf.data"
  "${PIN0[@]}" wrk -t1 -c50 -d"${D}s" --latency "$url" > "$f.ka.txt" 2>&1 || true
  perf_stop "$DIR/perf.data" "$r.keepalive"
  sleep 0.5
  c1=$(tree_ticks "$PROXY_PID")
  perf_start "$DIR/perf.data"
  "${PIN0[@]}" wrk -t1 -c50 -d"${D}s" -H 'Connection: close' "$url" > "$f.close.txt" 2>&1 || true
  perf_stop "$DIR/perf.data" "$r.close"
  sleep 1
  c2=$(tree_ticks "$PROXY_PID")
  perf_start "$DIR/perf.data"
  "${PIN0[@]}" iperf3 -c 127.0.0.1 -p "$ip" -t "$D" -f g > "$f.iperf.txt" 2>&1 || true
  perf_stop "$DIR/perf.data" "$r.bulk"
  sleep 0.5
  c3=$(tree_ticks "$PROXY_PID")
  echo "$((c1 - c0)) $((c2 - c1)) $((c3 - c2))" > "$f.cpu"
  syscalls_per_conn "$url" "$r"
  if [ "$r" = shoal ]; then "$SHOAL" mesh inspect --json --control "$DIR/mesh.sock" > "$f.inspect.json" 2>&1 || true; fi
  stop_proxy
  sleep 1
}

hold() {  # n first-source-address k: a holder.py connect on CPU0; sets HOLD_PID
  rm -f "$DIR/idle.status.$3"
  "${PIN0[@]}" python3 bench/mesh/holder.py connect 127.0.0.1:$IDLE_P -n "$1" --sources "$2" \
    --per-source 10000 --status-file "$DIR/idle.status.$3" > "$DIR/holder-connect.$3.out" 2>&1 &
  HOLD_PID=$!
  PIDS+=("$HOLD_PID")
}
wait_held() {  # count k: until holder k has finished connecting and the backend holds `count`
  # (or the count has not moved for 20 s); prints the backend's count
  local last=-1 still=0 cnt t0=$SECONDS
  while :; do
    sleep 1
    cnt=$(cat "$DIR/idle.count" 2> /dev/null || echo 0)
    if [ -f "$DIR/idle.status.$2" ] && [ "$cnt" -ge "$1" ]; then break; fi
    if [ "$cnt" = "$last" ]; then still=$((still + 1)); else still=0; last=$cnt; fi
    [ "$still" -lt 20 ] || break
    [ $((SECONDS - t0)) -lt 600 ] || break
  done
  cat "$DIR/idle.count" 2> /dev/null || echo 0
}
idle_row() {  # row
  local r=$1 f="$DIR/$1.idle"
  [ "$r" != direct ] && [ "$r" != socat ] || return 0
  local list=""
  for p in "${IDLE_B[@]}"; do list+="${list:+,}127.0.0.1:$p"; done
  rm -f "$DIR/idle.count"
  "${PIN0[@]}" python3 bench/mesh/holder.py serve "$list" --count-file "$DIR/idle.count" 2> "$DIR/holder-serve.err" &
  local srv=$!
  PIDS+=("$srv")
  for p in "${IDLE_B[@]}"; do wait_listen "$p" || { echo "holder serve did not start" >&2; return 1; }; done
  if ! start_proxy "$r" || ! wait_listen $IDLE_P 5; then stop_proxy; stop_pid "$srv"; echo "not-run" > "$f"; return 0; fi
  sleep 2
  # Two holders of N/2 each: RSS at 0, N/2 and N; the N/2 → N slope leaves out one-time costs.
  local half=$((N / 2)) rss0 rssh rss1 cnt t0=$SECONDS cli1 cli2
  rss0=$(rss_kb "$PROXY_PID")
  hold "$half" 127.0.0.2 1
  cli1=$HOLD_PID
  cnt=$(wait_held "$half" 1)
  sleep 2
  rssh=$(rss_kb "$PROXY_PID")
  hold $((N - half)) "127.0.0.$((2 + (half + 9999) / 10000))" 2
  cli2=$HOLD_PID
  cnt=$(wait_held "$N" 2)
  sleep 3
  rss1=$(rss_kb "$PROXY_PID")
  local secs=$((SECONDS - t0))
  if [ "$r" = shoal ]; then "$SHOAL" mesh inspect --json --control "$DIR/mesh.sock" > "$f.inspect.json" 2>&1 || true; fi
  stop_pid "$cli1"
  stop_pid "$cli2"
  echo "$rss0 $rss1 $N $cnt $secs $rssh $half | $(tail -qn1 "$DIR/holder-connect.1.out" "$DIR/holder-connect.2.out" | tr '\n' ' ')" > "$f"
  stop_proxy
  stop_pid "$srv"
  sleep 2
}

{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Package.swift || echo '+dirty')"
  echo "cpus=$(nproc)"
  echo "model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "kernel=$(uname -r)"
  echo "haproxy=$(haproxy -v | awk 'NR==1 {print $3}')"
  echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
  echo "socat=$(socat -V | awk '/socat version/ {print $3; exit}')"
  echo "wrk=$(wrk -v 2>&1 | awk 'NR==1 {print $2}')"
  echo "iperf3=$(iperf3 -v | awk 'NR==1 {print $2}')"
  echo "tick=$TICK"
  echo "nice=$NICE"
  echo "duration=$D"
  echo "runs=$RUNS"
  echo "idle_conns=$N"
  echo "idle_asked=$N_ASKED"
  echo "nofile=$NOFILE"
  echo "cap_sys_resource=$(( (0x$(awk '/^CapEff/ {print $2}' /proc/self/status) >> 24) & 1 ))"
  echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "shoal=${SHOAL:-not built}"
} > "$DIR/meta"

for k in $(seq "$RUNS"); do
  for r in "${ROWS[@]}"; do
    echo "== run $k/$RUNS: $r" >&2
    bench_row "$r" "$k"
  done
done
if [ "$N" -gt 0 ]; then
  for r in "${IDLE[@]}"; do
    echo "== idle: $r, $N connections" >&2
    idle_row "$r"
  done
fi
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$DIR/meta"
python3 bench/mesh/report.py "$DIR" "${ROWS[@]}" -- "${IDLE[@]}" > "$DIR/RESULTS.md"
cp "$DIR/RESULTS.md" "$OUT"
cat "$OUT"
echo "wrote $OUT" >&2
