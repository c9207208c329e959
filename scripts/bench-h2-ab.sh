#!/usr/bin/env bash
# Two Ringway builds side by side on HTTP/2 (prior knowledge downstream,
# HTTP/1.1 upstream): h2load against each in alternating order, one proxy
# core for both, h2load and the nginx backend on the other. Prints B/A
# requests per proxy CPU-second per round and their geometric mean.
#
# Usage: scripts/bench-h2-ab.sh A B [seconds] [rounds] [streams] [connections]
#        (defaults: 6 8 1 64).
set -euo pipefail
cd "$(dirname "$0")/.."

A=$1
B=$2
DURATION=${3:-6}
ROUNDS=${4:-8}
STREAMS=${5:-1}
CONNS=${6:-64}
BACKEND_PORT=18130
PORT_A=18132
PORT_B=18133
PROXY_CPU=0
LOAD_CPU=1
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; stop_nginx "$WORK/backend"; rm -rf "$WORK"' EXIT

source scripts/bench-lib.sh
command -v h2load >/dev/null || { echo "needs h2load (apt-get install -y nghttp2-client)" >&2; exit 1; }

start_backend
ringway_config "$PORT_A" >"$WORK/a.yaml"
ringway_config "$PORT_B" >"$WORK/b.yaml"
taskset -c $PROXY_CPU "$A" -c "$WORK/a.yaml" --concurrency 1 -l warning &
PID_A=$!
taskset -c $PROXY_CPU "$B" -c "$WORK/b.yaml" --concurrency 1 -l warning &
PID_B=$!
sleep 1

# Requests per proxy CPU-second of one h2load run against PORT (PID).
per_cpu() {  # port pid
  local url="http://127.0.0.1:$1/" before after out done
  taskset -c $LOAD_CPU h2load -t1 -c"$CONNS" -m"$STREAMS" -D2 "$url" >/dev/null
  before=$(cpu_ticks "$2")
  out=$(taskset -c $LOAD_CPU h2load -t1 -c"$CONNS" -m"$STREAMS" -D"$DURATION" "$url")
  after=$(cpu_ticks "$2")
  done=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p')
  awk -v r="$done" -v a="$after" -v b="$before" -v t="$TICKS" 'BEGIN{printf "%.0f", r / ((a - b) / t)}'
}

echo "$(date -u '+%Y-%m-%d %H:%M UTC'): $0 $*"
machine_lines "$B"
RATIOS=""
for ROUND in $(seq 1 "$ROUNDS"); do
  if [ $((ROUND % 2)) = 1 ]; then
    a=$(per_cpu $PORT_A $PID_A); b=$(per_cpu $PORT_B $PID_B)
  else
    b=$(per_cpu $PORT_B $PID_B); a=$(per_cpu $PORT_A $PID_A)
  fi
  r=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b / a}')
  echo "round $ROUND: A $a B $b B/A $r"
  RATIOS+="$r "
done
echo "B / A geometric mean: $(echo "$RATIOS" | awk '{for (i = 1; i <= NF; i++) s += log($i); printf "%.3f", exp(s / NF)}')"
