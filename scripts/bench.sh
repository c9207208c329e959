#!/usr/bin/env bash
# Side-by-side HTTP/1.1 proxy benchmark on loopback, in one run:
#   backend: nginx, 1 worker, `return 200 "hello"`
#   proxies: nginx (1 worker, upstream keepalive) and ringway --concurrency 1
# Load: wrk (and oha when installed) at fixed connections and duration.
# Reports requests/s, p50/p99/p99.9 latency, the proxy's CPU seconds during
# the run (from /proc/PID/stat) and requests per proxy CPU-second.
#
# Usage: scripts/bench.sh [seconds] [connections] [rounds]   (defaults: 10 64 5)
# Writes perf/http1-baseline.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10}
CONNS=${2:-64}
ROUNDS=${3:-5}
BACKEND_PORT=18100
NGINX_PORT=18101
RINGWAY_PORT=18102
# Two cores: the proxy under test gets CPU 0 to itself; backend and wrk share CPU 1.
PROXY_CPU=0
LOAD_CPU=1
OUT=perf/http1-baseline.md
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; nginx -p "$WORK/backend" -c nginx.conf -s stop 2>/dev/null || true; nginx -p "$WORK/proxy" -c nginx.conf -s stop 2>/dev/null || true; rm -rf "$WORK"' EXIT

for tool in nginx wrk; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y nginx wrk)" >&2; exit 1; }
done

cargo build --release --quiet
BIN=target/release/ringway

mkdir -p "$WORK/backend/logs" "$WORK/proxy/logs"
cat >"$WORK/backend/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/backend/nginx.pid;
error_log $WORK/backend/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 "hello"; } }
}
NGX
cat >"$WORK/proxy/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/proxy/nginx.pid;
error_log $WORK/proxy/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGX
cat >"$WORK/ringway.yaml" <<YAML
static_resources:
  listeners:
  - name: bench
    address: { socket_address: { address: 127.0.0.1, port_value: $RINGWAY_PORT } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - { name: all, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: backend } } ] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $BACKEND_PORT } } } } ] } ]
YAML

taskset -c $LOAD_CPU nginx -p "$WORK/backend" -c nginx.conf
taskset -c $PROXY_CPU nginx -p "$WORK/proxy" -c nginx.conf
taskset -c $PROXY_CPU "$BIN" -c "$WORK/ringway.yaml" --concurrency 1 -l warning &
RINGWAY_PID=$!
sleep 1
NGINX_PIDS="$(cat "$WORK/proxy/nginx.pid") $(pgrep -P "$(cat "$WORK/proxy/nginx.pid")" | tr '\n' ' ')"

# Sum of utime+stime (clock ticks) over the given pids.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
TICKS=$(getconf CLK_TCK)

ROWS=""
run_one() {  # name port pids...
  local name=$1 port=$2; shift 2
  curl -sf "http://127.0.0.1:$port/" >/dev/null || { echo "$name is not answering" >&2; exit 1; }
  # Warm-up, so pools and caches are filled before measuring.
  taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null
  local before after line
  before=$(cpu_ticks "$@")
  line=$(taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d"${DURATION}s" -s scripts/latency.lua "http://127.0.0.1:$port/" | grep '^RESULT')
  after=$(cpu_ticks "$@")
  eval "$(echo "$line" | sed 's/^RESULT //' | tr ' ' '\n' | sed 's/^/local /')"
  local cpu rps per_cpu
  cpu=$(awk -v a="$after" -v b="$before" -v t="$TICKS" 'BEGIN{printf "%.2f", (a-b)/t}')
  rps=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN{printf "%.0f", r/(d/1e6)}')
  per_cpu=$(awk -v r="$requests" -v c="$cpu" 'BEGIN{ if (c > 0) printf "%.0f", r/c; else print "n/a"}')
  echo "$name: $rps req/s, p50 ${p50}us p99 ${p99}us p99.9 ${p999}us, cpu ${cpu}s, $per_cpu req/cpu-s, errors $errors" >&2
  ROWS+="| $name | $rps | $p50 | $p99 | $p999 | $cpu | $per_cpu | $errors |"$'\n'
  eval "PER_CPU_${name//-/_}_$ROUND=$per_cpu"
}

for ROUND in $(seq 1 "$ROUNDS"); do
  run_one nginx "$NGINX_PORT" $NGINX_PIDS
  run_one ringway "$RINGWAY_PORT" "$RINGWAY_PID"
done

RATIOS=""
for ROUND in $(seq 1 "$ROUNDS"); do
  n=$(eval echo "\$PER_CPU_nginx_$ROUND"); r=$(eval echo "\$PER_CPU_ringway_$ROUND")
  RATIOS+="$(awk -v r="$r" -v n="$n" 'BEGIN{printf "%.2f", r/n}') "
done
MEDIAN=$(echo "$RATIOS" | tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END{ if (NR%2) print v[(NR+1)/2]; else printf "%.2f", (v[NR/2]+v[NR/2+1])/2 }')

OHA_SECTION=""
if command -v oha >/dev/null; then
  for pair in "nginx:$NGINX_PORT" "ringway:$RINGWAY_PORT"; do
    OHA_SECTION+="### oha, ${pair%%:*}"$'\n```\n'
    OHA_SECTION+="$(taskset -c $LOAD_CPU oha --no-tui -c "$CONNS" -z "${DURATION}s" "http://127.0.0.1:${pair##*:}/" | sed -n '1,12p')"
    OHA_SECTION+=$'\n```\n'
  done
fi

{
  echo "# HTTP/1.1 proxy baseline: Ringway vs nginx"
  echo
  echo "Generated by \`scripts/bench.sh $DURATION $CONNS $ROUNDS\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo
  echo "## Machine"
  echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; kernel $(uname -r)"
  echo "- $(nginx -v 2>&1), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), ringway $("$BIN" --version | awk '{print $3}') (release: lto=fat, codegen-units=1)"
  echo "- Loopback only. The proxy under test is pinned to CPU $PROXY_CPU; backend nginx and wrk share CPU $LOAD_CPU."
  echo
  echo "## Setup"
  echo "- Backend: nginx, 1 worker, \`return 200 \"hello\"\`."
  echo "- nginx proxy: 1 worker, \`proxy_http_version 1.1\`, upstream \`keepalive 128\`, access log off."
  echo "- Ringway: \`--concurrency 1\`, one STATIC cluster, default settings."
  echo "- Load per proxy and round: \`wrk -t1 -c$CONNS -d${DURATION}s -s scripts/latency.lua\` after a 2 s warm-up."
  echo "- CPU seconds: utime+stime from /proc/PID/stat (nginx: master + worker) across the measured run."
  echo
  echo "## Results (latency in µs)"
  echo
  echo "| proxy | req/s | p50 | p99 | p99.9 | proxy CPU s | req per CPU-s | errors |"
  echo "|---|---|---|---|---|---|---|---|"
  printf "%s" "$ROWS"
  echo
  echo "Ringway / nginx requests per CPU-second, per round: $RATIOS— median **$MEDIAN** (target ≥ 1.2)."
  echo
  echo "The rounds alternate nginx and Ringway so drift on the shared load core hits both."
  echo
  if [ -n "$OHA_SECTION" ]; then echo "## oha"; echo; printf "%s" "$OHA_SECTION"; fi
} >"$OUT"
echo "wrote $OUT" >&2
cat "$OUT"
