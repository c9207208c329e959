#!/usr/bin/env bash
# TLS and L4 side by side in one run, one proxy core each (wrk and the
# nginx backend on the other core):
#   1. new TLS 1.3 handshakes per proxy CPU-second: wrk sends
#      "Connection: close", so every request is a fresh connection, and
#      resumption is off on every proxy, so every handshake is a full one
#      (ECDSA P-256, X25519);
#   2. keep-alive HTTPS requests per proxy CPU-second (tiny responses);
#   3. tcp_proxy bulk transfer: 1 MiB responses relayed by Ringway's
#      tcp_proxy, HAProxy (mode tcp) and nginx `stream` (when its module is
#      installed: apt-get install libnginx-mod-stream), MiB per CPU-second.
# Ringway, nginx (OpenSSL) and Envoy (BoringSSL) terminate TLS.
#
# Usage: scripts/bench-tls.sh RINGWAY_BINARY [seconds] [connections] [rounds]
#        (defaults: 10 64 3). Prints a markdown report on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=$1
DURATION=${2:-10}
CONNS=${3:-64}
ROUNDS=${4:-3}
BACKEND_PORT=18120
PROXY_CPU=0
LOAD_CPU=1
RW_TLS=18121 NGX_TLS=18122 ENVOY_TLS=18123
RW_TCP=18124 HAP_TCP=18125 NGX_TCP=18126
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; stop_nginx "$WORK/backend"; stop_nginx "$WORK/proxy"; stop_nginx "$WORK/stream"; rm -rf "$WORK"' EXIT

source scripts/bench-lib.sh
for tool in envoy haproxy openssl; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=bench.local -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
# The backend also serves /big (1 MiB) for the L4 rows.
start_backend_with_big

# Ringway and Envoy: one TLS chain proxying to the backend; admin on PORT+100.
tls_config() {  # port
  cat <<YAML
admin: { address: { socket_address: { address: 127.0.0.1, port_value: $(($1 + 100)) } } }
static_resources:
  listeners:
  - name: bench
    address: { socket_address: { address: 127.0.0.1, port_value: $1 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          # wrk resumes sessions when it can: only full handshakes count.
          disable_stateless_session_resumption: true
          disable_stateful_session_resumption: true
          common_tls_context:
            tls_certificates: [ { certificate_chain: { filename: $WORK/cert.pem }, private_key: { filename: $WORK/key.pem } } ]
      filters:
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
    load_assignment: { cluster_name: backend, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $BACKEND_PORT } } } } ] } ] }
YAML
}
tls_config "$RW_TLS" >"$WORK/ringway-tls.yaml"
tls_config "$ENVOY_TLS" >"$WORK/envoy-tls.yaml"
tcp_proxy_config "$RW_TCP" >"$WORK/ringway-tcp.yaml"

taskset -c $PROXY_CPU "$BIN" -c "$WORK/ringway-tls.yaml" --concurrency 1 2>"$WORK/ringway-tls.log" &
RW_TLS_PID=$!
taskset -c $PROXY_CPU "$BIN" -c "$WORK/ringway-tcp.yaml" --concurrency 1 2>"$WORK/ringway-tcp.log" &
RW_TCP_PID=$!
taskset -c $PROXY_CPU envoy -c "$WORK/envoy-tls.yaml" --concurrency 1 --base-id 4218 -l error >/dev/null 2>&1 &
ENVOY_PID=$!

# nginx terminating TLS, proxying with upstream keep-alive.
mkdir -p "$WORK/proxy/logs"
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
    listen 127.0.0.1:$NGX_TLS ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGX
taskset -c "$PROXY_CPU" nginx -p "$WORK/proxy" -c nginx.conf

start_haproxy_tcp "$HAP_TCP"
HAP_PID=$!

STREAM=""
for module in /usr/lib/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so; do
  [ -f "$module" ] && STREAM=$module
done
if [ -n "$STREAM" ]; then
  mkdir -p "$WORK/stream/logs"
  cat >"$WORK/stream/nginx.conf" <<NGX
load_module $STREAM;
worker_processes 1;
pid $WORK/stream/nginx.pid;
error_log $WORK/stream/logs/error.log;
events { worker_connections 4096; }
stream { server { listen 127.0.0.1:$NGX_TCP; proxy_pass 127.0.0.1:$BACKEND_PORT; } }
NGX
  taskset -c "$PROXY_CPU" nginx -p "$WORK/stream" -c nginx.conf
fi
sleep 1

# An nginx instance's master and worker pids (by its pid file).
nginx_pids() { local master; master=$(cat "$1/nginx.pid"); echo "$master $(pgrep -P "$master" | tr '\n' ' ')"; }

# Loads a URL on one proxy; appends a row; sets PER_CPU_<name>_<ROUND>.
# wrk's extra arguments come after the pids, behind "--".
measure_url() {  # name url pids... [-- wrk args...]
  local name=$1 url=$2; shift 2
  local pids=() args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do pids+=("$1"); shift; done
  [ $# -gt 0 ] && shift && args=("$@")
  curl -skf "$url" >/dev/null || { echo "$name is not answering $url: $(curl -sk -o /dev/null -w "%{http_code}" "$url")" >&2; cat "$WORK"/*.log >&2; exit 1; }
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s "${args[@]}" "$url" >/dev/null
  local before after line
  before=$(cpu_ticks "${pids[@]}")
  line=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s scripts/bench-wrk.lua "${args[@]}" "$url" | grep '^RESULT')
  after=$(cpu_ticks "${pids[@]}")
  eval "$(echo "$line" | sed 's/^RESULT //' | tr ' ' '\n' | sed 's/^/local /')"
  local cpu rps per_cpu key=${name//-/_}
  cpu=$(cpu_seconds "$before" "$after")
  rps=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN{printf "%.0f", r/(d/1e6)}')
  per_cpu=$(per_cpu_second "$requests" "$cpu")
  echo "$name: $rps req/s, cpu ${cpu}s, $per_cpu per cpu-s, errors $errors" >&2
  ROWS+="| $name | $rps | $p50 | $p99 | $cpu | $per_cpu | $errors |"$'\n'
  eval "PER_CPU_${key}_$ROUND=$per_cpu"
}

NGX_PIDS=$(nginx_pids "$WORK/proxy")
CLOSE=(-- -H "Connection: close")
HANDSHAKES="" KEEPALIVE="" BULK=""
for ROUND in $(seq 1 "$ROUNDS"); do
  ROWS=""
  measure_url ringway "https://127.0.0.1:$RW_TLS/" "$RW_TLS_PID" "${CLOSE[@]}"
  measure_url nginx "https://127.0.0.1:$NGX_TLS/" $NGX_PIDS "${CLOSE[@]}"
  measure_url envoy "https://127.0.0.1:$ENVOY_TLS/" "$ENVOY_PID" "${CLOSE[@]}"
  HANDSHAKES+=$ROWS
  ROWS=""
  measure_url ringway_ka "https://127.0.0.1:$RW_TLS/" "$RW_TLS_PID"
  measure_url nginx_ka "https://127.0.0.1:$NGX_TLS/" $NGX_PIDS
  measure_url envoy_ka "https://127.0.0.1:$ENVOY_TLS/" "$ENVOY_PID"
  KEEPALIVE+=$ROWS
  ROWS=""
  CONNS_SAVED=$CONNS CONNS=16
  measure_url ringway_tcp "http://127.0.0.1:$RW_TCP/big" "$RW_TCP_PID"
  measure_url haproxy_tcp "http://127.0.0.1:$HAP_TCP/big" "$HAP_PID"
  [ -n "$STREAM" ] && measure_url nginx_tcp "http://127.0.0.1:$NGX_TCP/big" $(nginx_pids "$WORK/stream")
  CONNS=$CONNS_SAVED
  BULK+=$ROWS
done

header="| proxy | req/s | p50 µs | p99 µs | proxy CPU s | per CPU-s | errors |
|---|---|---|---|---|---|---|"
echo "## TLS and L4 — $(date -u +%Y-%m-%d)"
echo
machine_lines "$BIN"
echo "- $(envoy --version | grep -o 'version: [^ ]*'), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(openssl version | cut -d' ' -f1-2); ECDSA P-256 certificate"
echo "- command: scripts/bench-tls.sh $BIN $DURATION $CONNS $ROUNDS (L4 rows: 16 connections, 1 MiB responses)"
echo
echo "### New TLS handshakes (Connection: close), per proxy CPU-second"
echo "$header"
printf '%s' "$HANDSHAKES"
echo
echo "- Ringway / nginx: $(ratios PER_CPU ringway nginx) — median **$(ratios PER_CPU ringway nginx | median)**"
echo "- Ringway / Envoy: $(ratios PER_CPU ringway envoy) — median **$(ratios PER_CPU ringway envoy | median)**"
echo
echo "### Keep-alive HTTPS, per proxy CPU-second"
echo "$header"
printf '%s' "$KEEPALIVE"
echo
echo "- Ringway / nginx: $(ratios PER_CPU ringway_ka nginx_ka) — median **$(ratios PER_CPU ringway_ka nginx_ka | median)**"
echo "- Ringway / Envoy: $(ratios PER_CPU ringway_ka envoy_ka) — median **$(ratios PER_CPU ringway_ka envoy_ka | median)**"
echo
echo "### tcp_proxy bulk (1 MiB responses), per proxy CPU-second"
echo "$header"
printf '%s' "$BULK"
echo
echo "- Ringway / HAProxy: $(ratios PER_CPU ringway_tcp haproxy_tcp) — median **$(ratios PER_CPU ringway_tcp haproxy_tcp | median)**"
[ -n "$STREAM" ] && echo "- Ringway / nginx stream: $(ratios PER_CPU ringway_tcp nginx_tcp) — median **$(ratios PER_CPU ringway_tcp nginx_tcp | median)**"
echo
echo "Ringway's handshake counters (session_reused 0: every handshake was a full one):"
curl -s "http://127.0.0.1:$((RW_TLS + 100))/stats" | grep -E 'ssl\.(handshake|session_reused|versions|curves)' | sed 's/^/    /'

