#!/usr/bin/env bash
# The cost of active health checking at scale: one cluster of HOSTS
# endpoints (127.0.x.y, one nginx on 0.0.0.0 answering /healthz for all of
# them), HTTP checks every second, no traffic. Ringway's checks run on
# its `ringway-health` thread: its CPU time is read from /proc over SECONDS;
# Envoy (which checks on its main thread) is measured as a whole process
# on the same config, and so is Ringway's whole process.
#
# Usage: scripts/bench-health-checks.sh [BINARY] [hosts] [seconds]
#        (defaults: target/release/ringway 1000 30). Markdown on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/release/ringway}
HOSTS=${2:-1000}
SECONDS_RUN=${3:-30}
BACKEND_PORT=18120
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; nginx -p "$WORK/backend" -c nginx.conf -s stop 2>/dev/null || true; rm -rf "$WORK"' EXIT

mkdir -p "$WORK/backend/logs"
cat >"$WORK/backend/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/backend/nginx.pid;
error_log $WORK/backend/logs/error.log;
events { worker_connections 8192; }
worker_rlimit_nofile 20000;
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  server { listen 0.0.0.0:$BACKEND_PORT; location / { return 200 "ok"; } }
}
NGX
nginx -p "$WORK/backend" -c nginx.conf

config() {  # admin-port
  cat <<YAML
admin: { address: { socket_address: { address: 127.0.0.1, port_value: $1 } } }
static_resources:
  clusters:
  - name: checked
    connect_timeout: 1s
    health_checks:
    - timeout: 1s
      interval: 1s
      no_traffic_interval: 1s
      unhealthy_threshold: 3
      healthy_threshold: 1
      http_health_check: { path: /healthz }
    load_assignment:
      cluster_name: checked
      endpoints:
      - lb_endpoints:
YAML
  for i in $(seq 0 $((HOSTS - 1))); do
    echo "        - endpoint: { address: { socket_address: { address: 127.0.$((i / 250 + 1)).$((i % 250 + 1)), port_value: $BACKEND_PORT } } }"
  done
}

ticks() {  # /proc stat file: utime + stime
  awk '{ print $14 + $15 }' "$1"
}

# Runs the proxy on CONFIG for SECONDS_RUN after a 5 s settle; prints
# "process-cpu-% thread-cpu-% checks/s" (thread: the named one, if any).
measure() {  # label command... (config last)
  local label=$1; shift
  "$@" >"$WORK/$label.log" 2>&1 &
  local pid=$!
  sleep 5
  local thread=""
  for t in /proc/$pid/task/*; do
    if [ "$(cat "$t/comm")" = "ringway-health" ]; then thread=$t; fi
  done
  local attempts0 p0 t0=0
  attempts0=$(curl -s "localhost:$ADMIN/stats?filter=health_check.attempt" | awk '{print $2}')
  p0=$(ticks /proc/$pid/stat)
  [ -n "$thread" ] && t0=$(ticks "$thread/stat")
  sleep "$SECONDS_RUN"
  local attempts1 p1 t1=0
  attempts1=$(curl -s "localhost:$ADMIN/stats?filter=health_check.attempt" | awk '{print $2}')
  p1=$(ticks /proc/$pid/stat)
  [ -n "$thread" ] && t1=$(ticks "$thread/stat")
  local healthy
  healthy=$(curl -s "localhost:$ADMIN/stats?filter=health_check.healthy" | awk '{print $2}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local hz; hz=$(getconf CLK_TCK)
  awk -v l="$label" -v p=$((p1 - p0)) -v t=$((t1 - t0)) -v a=$((attempts1 - attempts0)) \
      -v s="$SECONDS_RUN" -v hz="$hz" -v th="$thread" -v h="$healthy" 'BEGIN {
    printf "| %s | %d | %.1f | %s | %.0f |\n", l, h, 100 * p / hz / s,
      (th == "" ? "—" : sprintf("%.1f", 100 * t / hz / s)), a / s }'
}

ADMIN=18121
config $ADMIN >"$WORK/config.yaml"
echo "Machine: $(nproc) cores, $(uname -r). $HOSTS hosts, HTTP checks every 1 s, ${SECONDS_RUN} s measured after 5 s."
echo
echo "| proxy | healthy hosts | process CPU % of one core | health thread CPU % | checks/s |"
echo "|---|---|---|---|---|"
measure ringway "$BIN" -c "$WORK/config.yaml" --concurrency 2 -l warning
if command -v envoy >/dev/null; then
  measure envoy envoy -c "$WORK/config.yaml" --concurrency 2 -l warning --base-id 41 --disable-hot-restart
fi
