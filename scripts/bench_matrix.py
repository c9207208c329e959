#!/usr/bin/env python3
"""Ringway's benchmark matrix, one command (run through scripts/bench.sh).

Every workload of issue 10 against Ringway and whichever of nginx, HAProxy
and Envoy are installed, on loopback: the proxies pinned to the proxy CPUs,
the nginx backend and the load generators (wrk, h2load) to the load CPUs.
Rounds alternate the order of the proxies. The figure of merit is work per
proxy CPU-second (utime + stime from /proc across the measured run), so a
proxy that is starved or idle is not flattered; the one latency row offers
every proxy the same fixed load (half of nginx's saturation throughput).

Writes <out>/bench.md (medians, ratios, every round, the exact command and
machine) and <out>/bench.svg (the medians as a chart, nginx = 1).
"""

import argparse
import html
import os
import platform
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20


@dataclass
class Workload:
    """One row of the matrix: what is loaded, through which proxy port, how."""

    name: str
    title: str
    port: str  # http | h2 | https | tcp
    path: str = "/"
    conns: int = 64
    streams: int = 0  # > 0: h2load with this many streams per connection
    body_bytes: int = 0  # > 0: POST bodies of this size
    close: bool = False  # "Connection: close": a new connection per request
    latency: bool = False  # fixed offered load; the metric is p99
    unit: str = "req"  # what the per-CPU-second figure counts


WORKLOADS = [
    Workload("h1-tiny-64", "HTTP/1.1 tiny, 64 conns", "http"),
    Workload("h1-tiny-1000", "HTTP/1.1 tiny, 1000 conns", "http", conns=1000),
    Workload("h1-64k", "HTTP/1.1 64 KiB responses", "http", "/64k"),
    Workload("h1-1m", "HTTP/1.1 1 MiB responses", "http", "/1m", conns=16),
    Workload("h1-upload-1m", "HTTP/1.1 1 MiB uploads", "http", "/upload", conns=16, body_bytes=MIB),
    Workload("h2-1", "HTTP/2, 1 stream/conn", "h2", conns=64, streams=1),
    Workload("h2-100", "HTTP/2, 100 streams/conn", "h2", conns=4, streams=100),
    Workload("https", "HTTPS keep-alive", "https"),
    Workload("tls-new", "TLS 1.3 new handshakes", "https", close=True, unit="handshake"),
    Workload("tcp-1m", "tcp_proxy 1 MiB transfers", "tcp", "/1m", conns=16, unit="MiB"),
    Workload("p99-half", "p99 at 50% of nginx's peak", "http", latency=True, unit="µs p99"),
]


@dataclass
class Proxy:
    """A proxy under test: its processes (for CPU time) and listening ports."""

    name: str
    label: str
    ports: dict
    procs: list = field(default_factory=list)  # Popen objects we own
    pidfile: str = ""  # nginx: master pid file (workers are its children)
    version: str = ""

    def pids(self):
        pids = [p.pid for p in self.procs]
        if self.pidfile:
            with open(self.pidfile) as f:
                master = int(f.read().strip())
            pids = [master] + children(master)
        return pids

    def cpu_seconds(self):
        total = 0
        for pid in self.pids():
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICKS


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def nginx_main(prefix, workers):
    """The top of an nginx.conf: workers, files, pid, error log, events."""
    return (f"worker_processes {workers};\nworker_rlimit_nofile 16384;\npid {prefix}/nginx.pid;\n"
            f"error_log {prefix}/logs/error.log;\nevents {{ worker_connections 8000; }}")


def cpu_list(spec):
    cpus = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def run(cmd, env=None, timeout=None):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def pinned(cpus, cmd):
    return ["taskset", "-c", ",".join(map(str, cpus))] + cmd


def wait_for(check, what, log, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    with open(log.name) as f:
        raise RuntimeError(f"{what} did not come up; its log:\n{f.read()[-2000:]}")


def answers(url, h2=False):
    cmd = ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", url]
    if h2:
        cmd.insert(1, "--http2-prior-knowledge")
    return run(cmd).stdout == "200"


class Bench:
    def __init__(self, args):
        self.args = args
        self.proxy_cpus = cpu_list(args.proxy_cpus)
        self.load_cpus = cpu_list(args.load_cpus)
        self.work = tempfile.mkdtemp(prefix="ringway-bench-")
        self.port = args.base_port
        self.backend_port = self.next_port()
        self.proxies = []
        self.nginx_prefixes = []
        self.results = {}  # (workload, proxy) -> [per-round dicts]

    def next_port(self):
        self.port += 1
        return self.port

    # ---- set-up ------------------------------------------------------------

    def write(self, name, text):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_nginx(self, prefix, conf, cpus):
        os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
        with open(os.path.join(prefix, "nginx.conf"), "w") as f:
            f.write(conf)
        out = run(pinned(cpus, ["nginx", "-p", prefix, "-c", "nginx.conf"]))
        if out.returncode != 0:
            raise RuntimeError(f"nginx in {prefix}: {out.stderr.strip()}")
        self.nginx_prefixes.append(prefix)

    def start_backend(self):
        with open(os.path.join(self.work, "64k"), "wb") as f:
            f.write(os.urandom(64 << 10))
        with open(os.path.join(self.work, "1m"), "wb") as f:
            f.write(os.urandom(MIB))
        os.chmod(self.work, 0o755)  # nginx workers run as another user
        for name in ("64k", "1m"):
            os.chmod(os.path.join(self.work, name), 0o644)
        prefix = os.path.join(self.work, "backend")
        self.start_nginx(prefix, f"""
{nginx_main(prefix, len(self.load_cpus))}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_max_body_size 0;
  client_body_buffer_size 2m;
  upstream self {{ server 127.0.0.1:{self.backend_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{self.backend_port} backlog=4096;
    location / {{ return 200 "hello"; }}
    # Reads the whole body before answering (a bare `return` answers
    # early, and a proxy may then close the connection): the request,
    # without its body, goes to `/` of this same server.
    location = /upload {{
      proxy_pass http://self/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}
    location = /64k {{ alias {self.work}/64k; }}
    location = /1m {{ alias {self.work}/1m; }}
  }}
}}
""", self.load_cpus)

    def make_certificate(self):
        key, cert = os.path.join(self.work, "key.pem"), os.path.join(self.work, "cert.pem")
        out = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-days", "2", "-subj", "/CN=bench.local", "-keyout", key, "-out", cert])
        if out.returncode != 0:
            raise RuntimeError(f"openssl: {out.stderr.strip()}")
        with open(os.path.join(self.work, "combined.pem"), "w") as f:
            f.write(open(cert).read() + open(key).read())
        self.key, self.cert = key, cert

    def envoy_config(self, ports):
        """The bootstrap Ringway and Envoy both run: plain HTTP (HTTP/1.1 and
        HTTP/2 prior knowledge), HTTPS without session resumption, tcp_proxy."""
        backend = ("{ cluster_name: backend, endpoints: [ { lb_endpoints: [ { endpoint: { address: "
                   f"{{ socket_address: {{ address: 127.0.0.1, port_value: {self.backend_port} }} }} }} }} ] }} ] }}")
        hcm = """
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - { name: all, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: backend } } ] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }"""
        return f"""
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ports['http']} }} }}
    filter_chains:
    - filters:{hcm}
  - name: https
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ports['https']} }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          disable_stateless_session_resumption: true
          disable_stateful_session_resumption: true
          common_tls_context:
            tls_certificates: [ {{ certificate_chain: {{ filename: {self.cert} }}, private_key: {{ filename: {self.key} }} }} ]
      filters:{hcm}
  - name: tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ports['tcp']} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: tcp, cluster: backend }}
  clusters:
  - name: backend
    type: STATIC
    load_assignment: {backend}
"""

    def envoy_style_ports(self):
        http = self.next_port()
        return {"http": http, "h2": http, "https": self.next_port(), "tcp": self.next_port()}

    def start_ringway(self, name="ringway", cpus=None, concurrency=None):
        cpus = cpus or self.proxy_cpus
        ports = self.envoy_style_ports()
        config = self.write(f"{name}.yaml", self.envoy_config(ports))
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        proc = subprocess.Popen(pinned(cpus, [self.args.binary, "-c", config, "--concurrency",
                                              str(concurrency or len(cpus)), "-l", "warning"]),
                                stdout=log, stderr=log)
        version = run([self.args.binary, "--version"]).stdout.split()[-1]
        proxy = Proxy(name, "Ringway", ports, [proc], version=version)
        wait_for(lambda: answers(f"http://127.0.0.1:{ports['http']}/"), name, log)
        return proxy

    def start_envoy(self):
        ports = self.envoy_style_ports()
        config = self.write("envoy.yaml", self.envoy_config(ports))
        log = open(os.path.join(self.work, "envoy.log"), "w")
        proc = subprocess.Popen(pinned(self.proxy_cpus, [
            "envoy", "-c", config, "--concurrency", str(len(self.proxy_cpus)),
            "--base-id", str(random.randint(1000, 60000)), "-l", "error"]), stdout=log, stderr=log)
        version = re.search(r"version: [^/]*/(\d+\.\d+\.\d+)/", run(["envoy", "--version"]).stdout)
        proxy = Proxy("envoy", "Envoy", ports, [proc], version=version.group(1) if version else "?")
        wait_for(lambda: answers(f"http://127.0.0.1:{ports['http']}/"), "envoy", log, 30)
        return proxy

    def start_nginx_proxy(self):
        ports = {k: self.next_port() for k in ("http", "h2", "https")}
        stream_module = next((m for m in ("/usr/lib/nginx/modules/ngx_stream_module.so",
                                          "/usr/share/nginx/modules/ngx_stream_module.so")
                              if os.path.exists(m)), None)
        stream = ""
        if stream_module:
            ports["tcp"] = self.next_port()
            stream = (f"stream {{ server {{ listen 127.0.0.1:{ports['tcp']} backlog=4096; "
                      f"proxy_pass 127.0.0.1:{self.backend_port}; }} }}")
        prefix = os.path.join(self.work, "nginx")
        self.start_nginx(prefix, f"""
{f'load_module {stream_module};' if stream_module else ''}
{nginx_main(prefix, len(self.proxy_cpus))}
http {{
  access_log off;
  keepalive_requests 1000000;
  http2_max_requests 1000000;
  client_max_body_size 0;
  upstream backend {{ server 127.0.0.1:{self.backend_port}; keepalive 1024; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{ports['http']} backlog=4096;
    listen 127.0.0.1:{ports['h2']} http2 backlog=4096;
    listen 127.0.0.1:{ports['https']} ssl backlog=4096;
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffers 32 32k;
      proxy_busy_buffers_size 64k;
      proxy_max_temp_file_size 0;
    }}
  }}
}}
{stream}
""", self.proxy_cpus)
        version = run(["nginx", "-v"]).stderr.strip().split("/")[-1]
        return Proxy("nginx", "nginx", ports, pidfile=os.path.join(prefix, "nginx.pid"), version=version)

    def start_haproxy(self):
        ports = {k: self.next_port() for k in ("http", "h2", "https", "tcp")}
        config = self.write("haproxy.cfg", f"""
global
  nbthread {len(self.proxy_cpus)}
  maxconn 8000
  tune.ssl.cachesize 0
  ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend http
  bind 127.0.0.1:{ports['http']}
  bind 127.0.0.1:{ports['h2']} proto h2
  bind 127.0.0.1:{ports['https']} ssl crt {self.work}/combined.pem alpn http/1.1
  default_backend backend
backend backend
  http-reuse always
  server backend 127.0.0.1:{self.backend_port}
listen tcp
  mode tcp
  bind 127.0.0.1:{ports['tcp']}
  server backend 127.0.0.1:{self.backend_port}
""")
        log = open(os.path.join(self.work, "haproxy.log"), "w")
        proc = subprocess.Popen(pinned(self.proxy_cpus, ["haproxy", "-f", config, "-db"]),
                                stdout=log, stderr=log)
        version = run(["haproxy", "-v"]).stdout.split()[2].split("-")[0]
        proxy = Proxy("haproxy", "HAProxy", ports, [proc], version=version)
        wait_for(lambda: answers(f"http://127.0.0.1:{ports['http']}/"), "haproxy", log)
        return proxy

    def start(self):
        self.start_backend()
        self.make_certificate()
        wanted = self.args.proxies.split(",")
        starters = {"nginx": self.start_nginx_proxy, "haproxy": self.start_haproxy,
                    "envoy": self.start_envoy, "ringway": self.start_ringway}
        for name in wanted:
            if name != "ringway" and not shutil.which(name):
                print(f"skipping {name}: not installed", file=sys.stderr)
                continue
            self.proxies.append(starters[name]())

    def stop(self):
        for proxy in self.proxies:
            for proc in proxy.procs:
                proc.send_signal(signal.SIGTERM)
        for proxy in self.proxies:
            for proc in proxy.procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for prefix in self.nginx_prefixes:
            run(["nginx", "-p", prefix, "-c", "nginx.conf", "-s", "stop"])
        shutil.rmtree(self.work, ignore_errors=True)

    # ---- load --------------------------------------------------------------

    def load(self, proxy, w, seconds, rate=None):
        """Runs one load; returns the counted work, errors and latency."""
        scheme = "https" if w.port == "https" else "http"
        url = f"{scheme}://127.0.0.1:{proxy.ports[w.port]}{w.path}"
        if w.streams:
            cmd = ["h2load", f"-t{min(len(self.load_cpus), w.conns)}", f"-c{w.conns}", f"-m{w.streams}",
                   f"-D{seconds}", url]
            out = run(pinned(self.load_cpus, cmd), timeout=seconds + 60).stdout
            m = re.search(r"requests: .* (\d+) succeeded, (\d+) failed, (\d+) errored", out)
            if not m:
                raise RuntimeError(f"h2load gave no totals: {out[-300:]}")
            return {"requests": int(m.group(1)), "errors": int(m.group(2)) + int(m.group(3)),
                    "seconds": float(seconds)}
        env = dict(os.environ)
        if w.body_bytes:
            env["BENCH_BODY_BYTES"] = str(w.body_bytes)
        if rate:
            env["BENCH_DELAY_MS"] = f"{1000.0 * w.conns / rate:.3f}"
        threads = min(len(self.load_cpus), w.conns)
        cmd = ["wrk", f"-t{threads}", f"-c{w.conns}", f"-d{seconds}s", "--timeout", "5s",
               "-s", os.path.join(ROOT, "scripts", "bench-wrk.lua")]
        if w.close:
            cmd += ["-H", "Connection: close"]
        out = run(pinned(self.load_cpus, cmd + [url]), env=env, timeout=seconds + 60).stdout
        m = re.search(r"^RESULT (.*)$", out, re.M)
        if not m:
            raise RuntimeError(f"wrk gave no totals: {out[-300:]}")
        values = dict(kv.split("=") for kv in m.group(1).split())
        return {"requests": int(values["requests"]), "errors": int(values["errors"]),
                "seconds": int(values["duration_us"]) / 1e6, "p50": int(values["p50"]),
                "p99": int(values["p99"])}

    def measure(self, proxy, w, rate=None):
        if w.port not in proxy.ports:
            return None
        self.load(proxy, w, 2, rate)  # warm-up: pools, caches, TCP windows
        before = proxy.cpu_seconds()
        result = self.load(proxy, w, self.args.seconds, rate)
        result["cpu"] = proxy.cpu_seconds() - before
        # tcp-1m moves 1 MiB per request: its MiB are its requests.
        done = result["requests"]
        result["rps"] = result["requests"] / result["seconds"]
        result["per_cpu"] = done / result["cpu"] if result["cpu"] > 0 else 0.0
        return result

    def half_peak_rate(self):
        """Half of nginx's median saturation throughput on the tiny row (or
        of the first proxy's, without nginx)."""
        for name in ("nginx", self.proxies[0].name):
            rounds = self.results.get(("h1-tiny-64", name))
            if rounds:
                return 0.5 * statistics.median(r["rps"] for r in rounds)
        peak = self.measure(self.proxies[0], WORKLOADS[0])
        return 0.5 * peak["rps"]

    def run_matrix(self):
        chosen = [w for w in WORKLOADS if not self.args.rows or w.name in self.args.rows.split(",")]
        for round_no in range(self.args.rounds):
            for w in chosen:
                rate = self.half_peak_rate() if w.latency else None
                order = self.proxies[round_no % len(self.proxies):] + self.proxies[:round_no % len(self.proxies)]
                for proxy in order:
                    try:
                        result = self.measure(proxy, w, rate)
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        print(f"{w.name} {proxy.name}: {e}", file=sys.stderr)
                        result = None
                    if result is None:
                        continue
                    self.results.setdefault((w.name, proxy.name), []).append(result)
                    shown = f"p99 {result['p99']} µs at {result['rps']:.0f} req/s" if w.latency else \
                        f"{result['per_cpu']:.0f} {w.unit}/CPU-s ({result['rps']:.0f} req/s, {result['cpu']:.2f} CPU-s)"
                    print(f"round {round_no + 1} {w.name:13} {proxy.name:8} {shown}, errors {result['errors']}",
                          file=sys.stderr)
        return chosen

    def scaling(self):
        """Throughput at N shards / (N x one shard), tiny responses."""
        n = len(self.proxy_cpus)
        if n < 2:
            return None
        w = WORKLOADS[0]
        one = self.start_ringway("ringway-1", cpus=self.proxy_cpus[:1], concurrency=1)
        self.proxies.append(one)
        many = next(p for p in self.proxies if p.name == "ringway")
        single = statistics.median(self.measure(one, w)["rps"] for _ in range(self.args.rounds))
        full = statistics.median(self.measure(many, w)["rps"] for _ in range(self.args.rounds))
        return n, single, full, full / (n * single)


def median_of(bench, w, proxy, key):
    rounds = bench.results.get((w.name, proxy.name))
    return statistics.median(r[key] for r in rounds) if rounds else None


def figure(bench, w, proxy):
    """The row's figure of merit: work per CPU-second, or p99 (lower wins)."""
    return median_of(bench, w, proxy, "p99" if w.latency else "per_cpu")


def relative(bench, w, proxy, base):
    """proxy's figure relative to base's, > 1 when proxy is better."""
    mine, theirs = figure(bench, w, proxy), figure(bench, w, base)
    if not mine or not theirs:
        return None
    return theirs / mine if w.latency else mine / theirs


def report(bench, chosen, scaling, command):
    ringway = next(p for p in bench.proxies if p.name == "ringway")
    others = [p for p in bench.proxies if p.name not in ("ringway", "ringway-1")]
    cols = others + [ringway]
    lines = [
        "# Benchmark matrix: Ringway beside nginx, HAProxy and Envoy",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "## Machine and set-up",
        f"- {machine()}",
        f"- proxies pinned to CPU {bench.args.proxy_cpus} (one worker/thread/shard per CPU); backend nginx "
        f"and load generators pinned to CPU {bench.args.load_cpus}; loopback only",
        "- " + ", ".join(f"{p.label} {p.version}" for p in cols) + f"; {first_line(['wrk', '--version'])}; "
        f"{first_line(['h2load', '--version'])}",
        f"- {bench.args.rounds} rounds of {bench.args.seconds} s per cell after a 2 s warm-up, proxy order "
        "rotating each round; medians below, every round at the end",
        "- backend: nginx `return 200 \"hello\"`, static 64 KiB and 1 MiB files; HTTPS: TLS 1.3, ECDSA P-256, "
        "no session resumption anywhere (every `Connection: close` request is a full handshake)",
        "- p99 row: wrk with a per-connection delay offering every proxy half of nginx's median "
        "tiny-response throughput; the cell is p99 latency in µs (lower is better)",
        "",
        "## Work per proxy CPU-second (medians)",
        "",
        "| workload | unit | " + " | ".join(p.label for p in cols) + " | "
        + " | ".join(f"Ringway / {p.label}" for p in others) + " |",
        "|---|---|" + "---|" * (len(cols) + len(others)),
    ]
    for w in chosen:
        cells = [fmt(figure(bench, w, p)) for p in cols]
        ratios = [fmt(relative(bench, w, ringway, p), 2) for p in others]
        lines.append(f"| {w.title} | {w.unit}/CPU-s | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |"
                     if not w.latency else
                     f"| {w.title} at {fmt(median_of(bench, w, ringway, 'rps'))} req/s | µs p99 | "
                     + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines += ["", "Ratios are > 1 where Ringway is better (for p99: the other's p99 / Ringway's)."]
    if scaling:
        n, single, full, ratio = scaling
        lines += ["", "## Scaling", "",
                  f"Ringway tiny responses: {full:.0f} req/s on {n} shards, {single:.0f} req/s on one: "
                  f"**{ratio:.2f}** of linear (throughput at {n} shards / ({n} × one shard))."]
    lines += ["", "## Every round", "", "| workload | proxy | round | req/s | proxy CPU s | per CPU-s | p50 µs | "
              "p99 µs | errors |", "|---|---|---|---|---|---|---|---|---|"]
    for w in chosen:
        for p in cols:
            for i, r in enumerate(bench.results.get((w.name, p.name), [])):
                lines.append(f"| {w.name} | {p.name} | {i + 1} | {r['rps']:.0f} | {r['cpu']:.2f} | "
                             f"{r['per_cpu']:.0f} | {r.get('p50', '')} | {r.get('p99', '')} | {r['errors']} |")
    return "\n".join(lines) + "\n"


def baseline(bench, w):
    """The proxy a chart row is relative to: nginx, else HAProxy, else Envoy
    (nginx's `stream` module, for one, is often not installed)."""
    for name in ("nginx", "haproxy", "envoy"):
        proxy = next((p for p in bench.proxies if p.name == name), None)
        if proxy and figure(bench, w, proxy):
            return proxy
    return None


def chart(bench, chosen, title):
    """Horizontal grouped bars, one group per workload, nginx = 1."""
    cols = [p for p in bench.proxies if p.name != "ringway-1"]
    colours = {"nginx": "#009639", "haproxy": "#1f6fb2", "envoy": "#ac6199", "ringway": "#e8590c"}
    bar, gap, left, width = 14, 12, 290, 560
    rows = []
    for w in chosen:
        base = baseline(bench, w)
        title_w = w.title if not base or base.name == "nginx" else f"{w.title} ({base.label} = 1)"
        rows.append((title_w, [(p, relative(bench, w, p, base) if base else None) for p in cols]))
    top = max([v for _, vals in rows for _, v in vals if v] + [1.0])
    scale = width / (top * 1.08)
    height = 70 + sum(len(vals) * bar + gap for _, vals in rows) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="20" font-size="15" font-weight="bold">{html.escape(title)}</text>',
           '<text x="10" y="38" fill="#555">per proxy CPU-second relative to nginx (= 1); '
           'p99 row: nginx p99 / proxy p99. Longer is better.</text>']
    y = 60
    for title_w, vals in rows:
        out.append(f'<text x="{left - 8}" y="{y + len(vals) * bar / 2 + 4}" text-anchor="end">'
                   f'{html.escape(title_w)}</text>')
        for p, v in vals:
            if v:
                out.append(f'<rect x="{left}" y="{y}" width="{v * scale:.1f}" height="{bar - 2}" '
                           f'fill="{colours.get(p.name, "#888")}"/>')
                out.append(f'<text x="{left + v * scale + 4:.1f}" y="{y + bar - 4}" font-size="10">{v:.2f}</text>')
            y += bar
        y += gap
    x1 = left + scale
    out.append(f'<line x1="{x1:.1f}" y1="50" x2="{x1:.1f}" y2="{y}" stroke="#333" stroke-dasharray="4 3"/>')
    lx = left
    for p in cols:
        out.append(f'<rect x="{lx}" y="{y + 8}" width="12" height="12" fill="{colours.get(p.name, "#888")}"/>')
        legend = f"{p.label} {p.version}"
        out.append(f'<text x="{lx + 16}" y="{y + 18}">{html.escape(legend)}</text>')
        lx += 40 + 7 * len(legend)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def load_report(path):
    """The proxies, results and machine line of an earlier report, to draw
    its chart again (--redraw)."""
    with open(path) as f:
        lines = f.read().splitlines()
    machine_line = lines[lines.index("## Machine and set-up") + 1][2:]
    versions = next(l for l in lines if l.startswith("- ") and "Ringway " in l and ";" in l)
    proxies = []
    for part in versions[2:].split(";")[0].split(", "):
        label, _, version = part.rpartition(" ")
        proxies.append(Proxy(label.lower(), label, {}, version=version.split("-")[0]))
    results = {}
    rows = lines[lines.index("## Every round"):]
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 9 or not cells[2].isdigit():
            continue
        results.setdefault((cells[0], cells[1]), []).append({
            "rps": float(cells[3]), "cpu": float(cells[4]), "per_cpu": float(cells[5]),
            "p99": int(cells[7]) if cells[7] else None, "errors": int(cells[8])})
    bench = argparse.Namespace(proxies=proxies, results=results)
    chosen = [w for w in WORKLOADS if any(k[0] == w.name for k in results)]
    return bench, chosen, machine_line


def chart_title(bench, machine_line):
    others = ", ".join(p.label for p in bench.proxies if p.name not in ("ringway", "ringway-1"))
    return f"Ringway vs {others or 'itself'} — {machine_line}"


def fmt(value, digits=0):
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if digits else f"{value:,.0f}".replace(",", " ")


def first_line(cmd):
    try:
        out = run(cmd)
    except OSError:
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else ""


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per cell (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per cell (default 3)")
    parser.add_argument("--proxy-cpus", default="0", help="CPUs for the proxies, e.g. 0-3 (default 0)")
    parser.add_argument("--load-cpus", default="1", help="CPUs for backend and load, e.g. 4-7 (default 1)")
    parser.add_argument("--proxies", default="nginx,haproxy,envoy,ringway", help="which proxies (default all)")
    parser.add_argument("--rows", default="", help="only these workloads, e.g. h1-tiny-64,h2-100")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "ringway"))
    parser.add_argument("--out-dir", default=os.path.join(ROOT, "perf"))
    parser.add_argument("--base-port", type=int, default=18300)
    parser.add_argument("--redraw", metavar="REPORT",
                        help="only draw <out-dir>/bench.svg again from an earlier bench.md")
    args = parser.parse_args()
    if args.redraw:
        bench, chosen, machine_line = load_report(args.redraw)
        with open(os.path.join(args.out_dir, "bench.svg"), "w") as f:
            f.write(chart(bench, chosen, chart_title(bench, machine_line)))
        return
    if "ringway" not in args.proxies.split(","):
        parser.error("--proxies must include ringway")
    for tool in ("wrk", "h2load", "curl", "openssl", "nginx", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"needs {tool} (apt-get install -y wrk nghttp2-client curl openssl nginx util-linux)")
    # wrk at 1,000 connections and the proxies behind it need descriptors.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    command = "scripts/bench.sh " + " ".join(sys.argv[1:])
    bench = Bench(args)
    try:
        bench.start()
        chosen = bench.run_matrix()
        scaling = bench.scaling()
    finally:
        bench.stop()
    os.makedirs(args.out_dir, exist_ok=True)
    md = report(bench, chosen, scaling, command.strip())
    with open(os.path.join(args.out_dir, "bench.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out_dir, "bench.svg"), "w") as f:
        f.write(chart(bench, chosen, chart_title(bench, machine())))
    print(md)


if __name__ == "__main__":
    main()
