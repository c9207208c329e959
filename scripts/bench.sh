#!/usr/bin/env bash
# The benchmark matrix in one command: every workload of issue 10 (HTTP/1.1
# small and large, uploads, 1,000 connections, HTTP/2, HTTPS, TLS handshakes,
# tcp_proxy, p99 at half load) against Ringway and whichever of nginx,
# HAProxy and Envoy are installed, one proxy core each by default. Writes
# perf/bench.md and perf/bench.svg. Options: scripts/bench.sh --help.
#
# On a bigger machine give the proxies and the load their own cores, e.g.
#   scripts/bench.sh --proxy-cpus 0-3 --load-cpus 4-15
# and the report adds Ringway's scaling: throughput at N shards / (N x one).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 scripts/bench_matrix.py "$@"
