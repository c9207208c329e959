# Shared pieces of the loopback benchmarks (sourced, not run).
# Expects: WORK (a temp dir), DURATION, CONNS, LOAD_CPU, BACKEND_PORT.

for tool in nginx wrk; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y nginx wrk)" >&2; exit 1; }
done

# nginx backend: 1 worker, `return 200 "hello"`, pinned to the load CPU.
start_backend() {
  mkdir -p "$WORK/backend/logs"
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
  taskset -c "$LOAD_CPU" nginx -p "$WORK/backend" -c nginx.conf
}

# The backend also serving /big, a 1 MiB file (for bulk-transfer rows).
start_backend_with_big() {
  head -c 1048576 /dev/urandom >"$WORK/big"
  # nginx workers run as another user: they must reach the file.
  chmod 755 "$WORK" && chmod 644 "$WORK/big"
  start_backend
  stop_nginx "$WORK/backend"
  sed -i "s|location / { return 200 \"hello\"; }|location / { return 200 \"hello\"; } location = /big { alias $WORK/big; }|" "$WORK/backend/nginx.conf"
  taskset -c "$LOAD_CPU" nginx -p "$WORK/backend" -c nginx.conf
}

# A Ringway (or Envoy) bootstrap whose listener on PORT is a tcp_proxy to
# the backend.
tcp_proxy_config() {  # port
  cat <<YAML
static_resources:
  listeners:
  - name: l4
    address: { socket_address: { address: 127.0.0.1, port_value: $1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: l4, cluster: backend }
  clusters:
  - name: backend
    load_assignment: { cluster_name: backend, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $BACKEND_PORT } } } } ] } ] }
YAML
}

# HAProxy in TCP mode on PORT to the backend, one thread on the proxy CPU;
# in the background (its pid is $! after the call).
start_haproxy_tcp() {  # port
  cat >"$WORK/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen l4
  bind 127.0.0.1:$1
  server backend 127.0.0.1:$BACKEND_PORT
HAP
  taskset -c "$PROXY_CPU" haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
}

# nginx as a proxy to the backend on PORT: 1 worker, upstream keepalive,
# access log off; its prefix is $WORK/proxy.
start_nginx_proxy() {  # port
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
    listen 127.0.0.1:$1;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGX
  taskset -c "$PROXY_CPU" nginx -p "$WORK/proxy" -c nginx.conf
}

stop_nginx() {  # prefix dir
  nginx -p "$1" -c nginx.conf -s stop 2>/dev/null || true
}

# A Ringway bootstrap on PORT proxying everything to the backend; EXTRA is
# spliced into the HTTP connection manager (e.g. an access_log).
ringway_config() {  # port [extra-hcm-yaml]
  cat <<YAML
static_resources:
  listeners:
  - name: bench
    address: { socket_address: { address: 127.0.0.1, port_value: $1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
${2:-}
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
}

# Sum of utime+stime (clock ticks) over the given pids.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
TICKS=$(getconf CLK_TCK)
# Seconds of CPU between two cpu_ticks readings.
cpu_seconds() {  # before after
  awk -v b="$1" -v a="$2" -v t="$TICKS" 'BEGIN{printf "%.2f", (a-b)/t}'
}
# COUNT per CPU-second ("n/a" without CPU time).
per_cpu_second() {  # count cpu-seconds
  awk -v r="$1" -v c="$2" 'BEGIN{ if (c > 0) printf "%.0f", r/c; else print "n/a"}'
}

# Loads one proxy and appends a markdown row to ROWS; sets
# RPS_<name>_<ROUND> and PER_CPU_<name>_<ROUND>.
ROWS=""
measure() {  # name port pids...
  local name=$1 port=$2; shift 2
  curl -sf ${BENCH_HEADER:+-H "$BENCH_HEADER"} "http://127.0.0.1:$port/" >/dev/null ||
    { echo "$name is not answering" >&2; exit 1; }
  # Warm-up, so pools and caches are filled before measuring.
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -s scripts/bench-wrk.lua "http://127.0.0.1:$port/" >/dev/null
  local before after line
  before=$(cpu_ticks "$@")
  line=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s scripts/bench-wrk.lua "http://127.0.0.1:$port/" | grep '^RESULT')
  after=$(cpu_ticks "$@")
  eval "$(echo "$line" | sed 's/^RESULT //' | tr ' ' '\n' | sed 's/^/local /')"
  local cpu rps per_cpu key=${name//-/_}
  cpu=$(cpu_seconds "$before" "$after")
  rps=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN{printf "%.0f", r/(d/1e6)}')
  per_cpu=$(per_cpu_second "$requests" "$cpu")
  echo "$name: $rps req/s, p50 ${p50}us p99 ${p99}us p99.9 ${p999}us, cpu ${cpu}s, $per_cpu req/cpu-s, errors $errors" >&2
  ROWS+="| $name | $rps | $p50 | $p99 | $p999 | $cpu | $per_cpu | $errors |"$'\n'
  eval "PER_CPU_${key}_$ROUND=$per_cpu"
  eval "RPS_${key}_$ROUND=$rps"
}

# Loads one proxy with h2load and appends a row; sets PER_CPU_<name>_<ROUND>.
measure_h2() {  # name port streams connections pids...
  local name=$1 port=$2 streams=$3 conns=$4; shift 4
  local url="http://127.0.0.1:$port/"
  curl -sf --http2-prior-knowledge "$url" >/dev/null || { echo "$name is not answering h2" >&2; exit 1; }
  taskset -c "$LOAD_CPU" h2load -t1 -c"$conns" -m"$streams" -D2 "$url" >/dev/null
  local before after out
  before=$(cpu_ticks "$@")
  out=$(taskset -c "$LOAD_CPU" h2load -t1 -c"$conns" -m"$streams" -D"$DURATION" "$url")
  after=$(cpu_ticks "$@")
  local done failed cpu rps per_cpu key=${name//-/_}
  done=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p')
  failed=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p')
  cpu=$(cpu_seconds "$before" "$after")
  rps=$(awk -v r="$done" -v d="$DURATION" 'BEGIN{printf "%.0f", r/d}')
  per_cpu=$(per_cpu_second "$done" "$cpu")
  echo "$name: $rps req/s, cpu ${cpu}s, $per_cpu req/cpu-s, failed $failed" >&2
  ROWS+="| $name | $rps | $cpu | $per_cpu | $failed |"$'\n'
  eval "PER_CPU_${key}_$ROUND=$per_cpu"
}

# Per-round ratios of a metric between two measured names, and their median.
ratios() {  # metric(PER_CPU|RPS) numerator denominator
  local out="" round n d
  for round in $(seq 1 "$ROUNDS"); do
    n=$(eval echo "\$${1}_${2//-/_}_$round"); d=$(eval echo "\$${1}_${3//-/_}_$round")
    out+="$(awk -v n="$n" -v d="$d" 'BEGIN{printf "%.3f", n/d}') "
  done
  echo "$out"
}
median() {
  tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END{ if (NR%2) print v[(NR+1)/2]; else printf "%.3f", (v[NR/2]+v[NR/2+1])/2 }'
}
geomean() {
  awk '{for (i = 1; i <= NF; i++) s += log($i); printf "%.3f", exp(s / NF)}'
}

machine_lines() {  # binary
  echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; kernel $(uname -r)"
  echo "- $(nginx -v 2>&1), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), ringway $("$1" --version | awk '{print $3}') (release: lto=fat, codegen-units=1)"
}
