#!/usr/bin/env python3
"""How long a big xDS push takes to apply: Ringway and Envoy side by side.

Each proxy starts with empty LDS and CDS files (path_config_source). Then:
  CDS      N clusters are published (one rename); timed until
           cluster_manager.cds.update_success moves;
  LDS      one listener whose route table has N routes, one per cluster;
           timed until the listener accepts connections;
  re-push  the same listener with one route changed; timed until
           listener_manager.lds.update_success moves.
RSS is read after each step. Writes a markdown report (default
perf/xds-scale.md).

Usage: scripts/bench_xds_scale.py [--binary target/release/ringway]
       [--proxies ringway,envoy] [--clusters 10000] [--rounds 3]
"""

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_xds_churn import (  # noqa: E402
    cluster, free_port, listener, publish, route_to, rss_kib, stat, write_report)


def until(check, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return False


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def documents(n, port):
    """The CDS and LDS files: `n` clusters, and a listener with a route to each."""
    clusters = "".join(cluster(f"c{i}", [10000 + i % 50000]) for i in range(n))
    routes = ", ".join(route_to(f"c{i}", f"/r{i}/") for i in range(n))
    lds = f'version_info: "1"\nresources:\n{listener("big", port, routes)}'
    return f'version_info: "1"\nresources:\n{clusters}', lds


def run_one(proxy, args, work):
    admin, port = free_port(), free_port()
    empty = 'version_info: "0"\nresources: []\n'
    publish(work, "cds.yaml", empty)
    publish(work, "lds.yaml", empty)
    boot = os.path.join(work, "boot.yaml")
    with open(boot, "w") as f:
        f.write(f"""node: {{id: scale, cluster: scale}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
dynamic_resources:
  cds_config: {{path_config_source: {{path: {work}/cds.yaml}}}}
  lds_config: {{path_config_source: {{path: {work}/lds.yaml}}}}
""")
    cmd = {"envoy": ["envoy", "--disable-hot-restart"], "ringway": [args.binary]}[proxy]
    log = open(os.path.join(work, "proxy.log"), "w")
    child = subprocess.Popen(cmd + ["-c", boot, "--concurrency", "2", "-l", "warning"],
                             stdout=log, stderr=log)
    try:
        if not until(lambda: stat(admin, "cluster_manager.cds.update_success") == 1, 30):
            raise RuntimeError(f"{proxy} did not start; see {log.name}")
        cds, lds = documents(args.clusters, port)
        out = {}
        t = time.monotonic()
        publish(work, "cds.yaml", cds)
        if not until(lambda: stat(admin, "cluster_manager.cds.update_success") == 2, args.timeout):
            raise RuntimeError(f"{proxy}: CDS not applied within {args.timeout} s")
        out["cds"], out["rss_cds"] = time.monotonic() - t, rss_kib(child.pid)
        t = time.monotonic()
        publish(work, "lds.yaml", lds)
        if not until(lambda: accepts(port), args.timeout):
            raise RuntimeError(f"{proxy}: LDS not applied within {args.timeout} s")
        out["lds"], out["rss_lds"] = time.monotonic() - t, rss_kib(child.pid)
        t = time.monotonic()
        publish(work, "lds.yaml", lds.replace('"1"', '"2"', 1).replace('"/r0/"', '"/x0/"'))
        if not until(lambda: stat(admin, "listener_manager.lds.update_success") == 3, args.timeout):
            raise RuntimeError(f"{proxy}: LDS re-push not applied within {args.timeout} s")
        out["repush"], out["rss_end"] = time.monotonic() - t, rss_kib(child.pid)
        return out
    finally:
        child.kill()
        child.wait()
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default="target/release/ringway")
    parser.add_argument("--proxies", default="ringway,envoy")
    parser.add_argument("--clusters", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--out", default="perf/xds-scale.md")
    args = parser.parse_args()
    proxies = [p for p in args.proxies.split(",") if p != "envoy" or shutil.which("envoy")]
    results = {p: [] for p in proxies}
    for _ in range(args.rounds):
        for proxy in proxies:
            work = tempfile.mkdtemp(prefix="ringway-scale-")
            results[proxy].append(run_one(proxy, args, work))
            shutil.rmtree(work, ignore_errors=True)
            print(proxy, results[proxy][-1], flush=True)
    med = lambda p, k: statistics.median(r[k] for r in results[p])
    command = "scripts/bench_xds_scale.py " + " ".join(sys.argv[1:])
    lines = [
        f"# Applying a {args.clusters:,}-cluster, {args.clusters:,}-route xDS push",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
        f"both proxies with 2 workers, files on local disk; medians of {args.rounds} rounds.",
        f"Command: `{command}`",
        "",
        "| | " + " | ".join(proxies) + " |",
        "|---|" + "---|" * len(proxies),
    ]
    rows = [
        (f"CDS: {args.clusters:,} clusters applied, s", "cds", "{:.2f}"),
        (f"LDS: a listener with {args.clusters:,} routes serving, s", "lds", "{:.2f}"),
        ("CDS + LDS, s", None, "{:.2f}"),
        ("LDS re-push with one route changed, s", "repush", "{:.2f}"),
        ("RSS after CDS, MiB", "rss_cds", "{:.0f}"),
        ("RSS after LDS, MiB", "rss_lds", "{:.0f}"),
    ]
    for name, key, form in rows:
        cells = []
        for p in proxies:
            if key is None:
                value = med(p, "cds") + med(p, "lds")
            elif key.startswith("rss"):
                value = med(p, key) / 1024
            else:
                value = med(p, key)
            cells.append(form.format(value))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
