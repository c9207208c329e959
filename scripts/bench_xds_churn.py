#!/usr/bin/env python3
"""xDS updates under load: issue 11's reliability bar, Ringway and Envoy side by side.

Each proxy reads LDS and CDS from files (path_config_source), or with
--source ads|delta from a control plane over ADS (tests/peers/
xds_control_plane.py, state of the world or incremental). While wrk keeps
64 keep-alive connections busy on listener `churn` and 8 on listener `still`
for --seconds, an update is published (a file renamed over the old one) every
--interval seconds, cycling through four kinds:

  route     `churn`'s route for / alternates between clusters a and b
            (its filter chain changes: Envoy drains its connections)
  cluster   a cluster no route names is added, then removed
  endpoint  cluster a has the endpoint of a, then of a and b
  listener  a third listener is added, then removed

Every answer is 200 from either nginx backend, so any non-2xx or socket error
is a failure. `still` never changes: its connections must all survive
(listener.<still>.downstream_cx_total does not move once wrk is connected). RSS is sampled once a
second; after warm-up (the first half of the run) it should stay flat. Writes
a markdown report (default perf/xds-churn.md).

Usage: scripts/bench_xds_churn.py [--binary target/release/ringway]
       [--proxies ringway,envoy] [--seconds 60] [--interval 0.1]
       [--source files|ads|delta]
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def route_to(cluster, prefix="/"):
    """One route of a virtual host: `prefix` to `cluster`."""
    return f'{{match: {{prefix: "{prefix}"}}, route: {{cluster: {cluster}}}}}'


def listener(name, port, routes):
    """A Listener resource whose connection manager serves `routes`."""
    return f"""- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: {name}
  address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: {name}
        route_config:
          virtual_hosts: [{{name: v, domains: ["*"], routes: [{routes}]}}]
        http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
"""


def publish(work, name, text):
    """Replaces `work/name` by a rename, as a file source expects."""
    staged = os.path.join(work, f".{name}.staged")
    with open(staged, "w") as f:
        f.write(text)
    os.rename(staged, os.path.join(work, name))


def write_report(lines, path):
    text = "\n".join(lines) + "\n"
    print(text)
    with open(path, "w") as f:
        f.write(text)


def cluster(name, ports):
    """A STATIC Cluster resource over `ports` on loopback."""
    endpoints = ", ".join(
        f"{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}}}"
        for p in ports)
    return f"""- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {name}
  type: STATIC
  load_assignment: {{cluster_name: {name}, endpoints: [{{lb_endpoints: [{endpoints}]}}]}}
"""


SOURCES = {
    "files": "files",
    "ads": "a control plane over ADS (state of the world)",
    "delta": "a control plane over ADS (delta)",
}
TYPES = {
    "lds.yaml": "type.googleapis.com/envoy.config.listener.v3.Listener",
    "cds.yaml": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
}


class Files:
    """The LDS and CDS files of one run (or the control plane's state),
    and the state they describe."""

    def __init__(self, work, ports, plane):
        self.work, self.ports, self.plane = work, ports, plane
        self.route, self.extra, self.both, self.third = "a", False, False, False
        self.version = 0
        self.state = {}

    def publish(self, name, resources):
        self.version += 1
        text = f'version_info: "{self.version}"\nresources:\n{"".join(resources)}'
        if not self.plane:
            publish(self.work, name, text)
            return
        import yaml  # only the control plane source needs it

        document = yaml.safe_load(text)
        self.state[TYPES[name]] = {"version": str(self.version), "resources": document["resources"]}
        publish(self.work, "state.json", json.dumps(self.state))

    def lds(self):
        p = self.ports
        resources = [
            listener("still", p["still"], route_to("a")),
            listener("churn", p["churn"], route_to(self.route)),
        ]
        if self.third:
            resources.append(listener("third", p["third"], route_to("b")))
        self.publish("lds.yaml", resources)

    def cds(self):
        p = self.ports
        a = [p["nginx_a"], p["nginx_b"]] if self.both else [p["nginx_a"]]
        resources = [cluster("a", a), cluster("b", [p["nginx_b"]])]
        if self.extra:
            resources.append(cluster("extra", [p["nginx_b"]]))
        self.publish("cds.yaml", resources)

    def step(self, n):
        kind = ("route", "cluster", "endpoint", "listener")[n % 4]
        if kind == "route":
            self.route = "b" if self.route == "a" else "a"
            self.lds()
        elif kind == "cluster":
            self.extra = not self.extra
            self.cds()
        elif kind == "endpoint":
            self.both = not self.both
            self.cds()
        else:
            self.third = not self.third
            self.lds()


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_port(port, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stat(admin, name):
    out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{admin}/stats?filter=^{re.escape(name)}$"],
                         capture_output=True, text=True).stdout
    m = re.search(r": (\d+)", out)
    return int(m.group(1)) if m else None


def wrk_counts(text):
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    requests = re.search(r"(\d+) requests in", text)
    return {
        "requests": int(requests.group(1)) if requests else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": sum(map(int, errors.groups())) if errors else 0,
        "error_text": errors.group(0) if errors else "none",
    }


def control_plane(work):
    """Starts the control plane peer on `work`/state.json; returns it and its port."""
    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "peers",
                        "xds_control_plane.py")
    state, log = os.path.join(work, "state.json"), os.path.join(work, "requests.log")
    child = subprocess.Popen([sys.executable, peer, state, log], stdout=subprocess.PIPE, text=True)
    return child, int(child.stdout.readline())


def bootstrap(work, admin, source, plane_port):
    """The bootstrap: LDS and CDS from files or over ADS."""
    head = f"""node: {{id: churn, cluster: churn}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
dynamic_resources:
"""
    if source == "files":
        return head + f"""  cds_config: {{path_config_source: {{path: {work}/cds.yaml}}}}
  lds_config: {{path_config_source: {{path: {work}/lds.yaml}}}}
"""
    api_type = "DELTA_GRPC" if source == "delta" else "GRPC"
    return head + f"""  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {plane_port}}}}}}}}}]}}]
"""


def run_one(proxy, args, ports, work):
    files = Files(work, ports, args.source != "files")
    files.cds()
    files.lds()
    plane, plane_port = control_plane(work) if files.plane else (None, 0)
    admin = ports["admin"]
    boot = os.path.join(work, "boot.yaml")
    with open(boot, "w") as f:
        f.write(bootstrap(work, admin, args.source, plane_port))
    log = open(os.path.join(work, f"{proxy}.log"), "w")
    if proxy == "envoy":
        cmd = ["envoy", "-c", boot, "--concurrency", "2", "-l", "warning", "--disable-hot-restart"]
    else:
        cmd = [args.binary, "-c", boot, "--concurrency", "2", "-l", "warning"]
    child = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        if not (wait_port(ports["still"]) and wait_port(ports["churn"])):
            raise RuntimeError(f"{proxy} did not listen; see {log.name}")
        url = "http://127.0.0.1:{}/"
        wrk = lambda port, conns: subprocess.Popen(
            ["wrk", "-t1", f"-c{conns}", f"-d{args.seconds}s", url.format(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        churn, still = wrk(ports["churn"], 64), wrk(ports["still"], 8)
        rss, updates, stop = [], [0], threading.Event()

        def updater():
            n = 0
            while not stop.is_set():
                files.step(n)
                n += 1
                updates[0] = n
                stop.wait(args.interval)

        def sampler():
            while not stop.is_set():
                rss.append(rss_kib(child.pid))
                stop.wait(1.0)

        still_name = f"listener.127.0.0.1_{ports['still']}.downstream_cx_total"
        time.sleep(1.0)
        still_before = stat(admin, still_name)
        threads = [threading.Thread(target=updater), threading.Thread(target=sampler)]
        for t in threads:
            t.start()
        churn_out, _ = churn.communicate()
        still_out, _ = still.communicate()
        stop.set()
        for t in threads:
            t.join()
        time.sleep(0.5)
        lds_taken = stat(admin, "listener_manager.lds.update_success")
        cds_taken = stat(admin, "cluster_manager.cds.update_success")
        still_cx = (stat(admin, still_name) or 0) - (still_before or 0)
        # Allocator pools and stat scopes grow for the first half; what
        # matters is that it stops there.
        warm = rss[max(10, args.seconds // 2):] or rss
        return {
            "churn": wrk_counts(churn_out),
            "still": wrk_counts(still_out),
            "updates": updates[0],
            "taken": (lds_taken or 0) + (cds_taken or 0),
            "still_cx": still_cx,
            "rss_start": warm[0] if warm else 0,
            "rss_end": warm[-1] if warm else 0,
            "rss_max": max(warm) if warm else 0,
            "rss_series": rss,
        }
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
        log.close()
        if plane:
            plane.kill()
            plane.wait()


def nginx(work, ports):
    prefix = os.path.join(work, "nginx")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 4000; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{ports['nginx_a']} backlog=4096; location / {{ return 200 "a"; }} }}
  server {{ listen 127.0.0.1:{ports['nginx_b']} backlog=4096; location / {{ return 200 "b"; }} }}
}}
""")
    subprocess.run(["nginx", "-p", prefix, "-c", "nginx.conf"], check=True)
    return prefix


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default="target/release/ringway")
    parser.add_argument("--proxies", default="ringway,envoy")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--source", choices=("files", "ads", "delta"), default="files")
    parser.add_argument("--out", default="perf/xds-churn.md")
    args = parser.parse_args()
    proxies = [p for p in args.proxies.split(",") if p != "envoy" or shutil.which("envoy")]
    work = tempfile.mkdtemp(prefix="ringway-churn-")
    os.chmod(work, 0o755)
    ports = {k: free_port() for k in ("nginx_a", "nginx_b")}
    prefix = nginx(work, ports)
    results = {}
    try:
        for proxy in proxies:
            run_dir = os.path.join(work, proxy)
            os.makedirs(run_dir)
            run_ports = dict(ports, **{k: free_port() for k in ("admin", "still", "churn", "third")})
            results[proxy] = run_one(proxy, args, run_ports, run_dir)
            print(proxy, results[proxy], flush=True)
    finally:
        subprocess.run(["nginx", "-p", prefix, "-c", "nginx.conf", "-s", "stop"])
    command = "scripts/bench_xds_churn.py " + " ".join(sys.argv[1:])
    lines = [
        "# xDS updates under load (issue 11's reliability bar)",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
        f"loopback; wrk -t1 (64 connections on `churn`, 8 on `still`), nginx backends; "
        f"LDS and CDS from {SOURCES[args.source]}.",
        f"Command: `{command}` ({args.seconds} s, an update every {args.interval} s, "
        "cycling route / cluster / endpoint / listener changes; see the script's header).",
        "",
        "| | " + " | ".join(proxies) + " |",
        "|---|" + "---|" * len(proxies),
    ]
    rows = [
        ("updates published", lambda r: r["updates"]),
        ("updates taken (lds + cds update_success, incl. the first two)", lambda r: r["taken"]),
        ("`churn` requests", lambda r: r["churn"]["requests"]),
        ("`churn` non-2xx", lambda r: r["churn"]["non2xx"]),
        ("`churn` socket errors", lambda r: r["churn"]["error_text"]),
        ("`still` requests", lambda r: r["still"]["requests"]),
        ("`still` non-2xx + socket errors", lambda r: r["still"]["non2xx"] + r["still"]["errors"]),
        ("`still` connections opened while updates flew (0 = none reset)", lambda r: r["still_cx"]),
        ("RSS after warm-up (half the run) → end, KiB", lambda r: f"{r['rss_start']} → {r['rss_end']}"),
        ("RSS max after warm-up, KiB", lambda r: r["rss_max"]),
    ]
    for name, get in rows:
        lines.append(f"| {name} | " + " | ".join(str(get(results[p])) for p in proxies) + " |")
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
