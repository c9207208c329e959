#!/usr/bin/env python3
"""How long a big xDS push takes to apply: Ringway and Envoy side by side.

Each proxy starts with empty LDS and CDS files (path_config_source), or with
--source ads|delta empty LDS and CDS from the test control plane over ADS.
Then:
  CDS      N clusters are published (one rename); timed until
           cluster_manager.cds.update_success moves;
  LDS      one listener whose route table has N routes, one per cluster;
           timed until the listener accepts connections;
  re-push  the same listener with one route changed; timed until
           listener_manager.lds.update_success moves.
With --eds (over ADS only) the clusters are EDS clusters and their N
assignments come in the same push; CDS is timed until every cluster is
active (none warming).
RSS is read after each step. Over ADS each time runs from when the control
plane handed the response to gRPC (its log says when), so the Python control
plane's own encoding is not counted. Writes a markdown report (default
perf/xds-scale.md).

Usage: scripts/bench_xds_scale.py [--binary target/release/ringway]
       [--proxies ringway,envoy] [--clusters 10000] [--rounds 3]
       [--source files|ads|delta] [--eds]
"""

import argparse
import json
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
    SOURCES, TYPES, bootstrap, cluster, control_plane, free_port, listener, publish, route_to, rss_kib,
    stat, write_report)


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


ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def eds_cluster(name):
    """An EDS Cluster resource whose endpoints come over ADS."""
    return f"""- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {name}
  type: EDS
  eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}
"""


def assignments(n):
    """The `n` EDS clusters' assignments, one endpoint each."""
    return [{"@type": ENDPOINTS, "cluster_name": f"c{i}", "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": 10000 + i % 50000}}}}]}]}
            for i in range(n)]


def documents(n, port, eds=False):
    """The CDS and LDS files: `n` clusters, and a listener with a route to each."""
    make = eds_cluster if eds else lambda name: cluster(name, [10000 + int(name[1:]) % 50000])
    clusters = "".join(make(f"c{i}") for i in range(n))
    routes = ", ".join(route_to(f"c{i}", f"/r{i}/") for i in range(n))
    lds = f'version_info: "1"\nresources:\n{listener("big", port, routes)}'
    return f'version_info: "1"\nresources:\n{clusters}', lds


class Source:
    """Where the proxy's LDS and CDS come from: files, or the control plane."""

    def __init__(self, work, kind):
        self.work, self.kind, self.state = work, kind, {}
        self.plane, self.port = control_plane(work) if kind != "files" else (None, 0)

    def publish(self, name, text):
        if not self.plane:
            publish(self.work, name, text)
            return
        publish(self.work, "state.json", self.staged(name, text))

    def staged(self, name, text):
        """The control plane's state with `name`'s document (YAML) in it."""
        if not self.plane:
            return text
        import yaml  # only the control plane source needs it

        document = yaml.safe_load(text)
        self.state[TYPES[name]] = {"version": document["version_info"],
                                   "resources": document["resources"] or []}
        return json.dumps(self.state)

    def put(self, name, staged):
        """Publishes what `staged` prepared."""
        publish(self.work, "state.json" if self.plane else name, staged)

    def since_sent(self, name, version, type_url=None):
        """Seconds since the control plane sent `version` of `name`'s type (or of
        `type_url`); None from files."""
        if not self.plane:
            return None
        with open(os.path.join(self.work, "requests.log")) as f:
            for line in f:
                entry = json.loads(line)
                if entry.get("sent") == (type_url or TYPES[name]) and entry["version"] == version:
                    return time.time() - entry["at"]
        return None

    def stop(self):
        if self.plane:
            self.plane.kill()
            self.plane.wait()


def run_one(proxy, args, work):
    admin, port = free_port(), free_port()
    empty = 'version_info: "0"\nresources: []\n'
    source = Source(work, args.source)
    source.publish("cds.yaml", empty)
    source.publish("lds.yaml", empty)
    boot = os.path.join(work, "boot.yaml")
    with open(boot, "w") as f:
        f.write(bootstrap(work, admin, args.source, source.port))
    cmd = {"envoy": ["envoy", "--disable-hot-restart"], "ringway": [args.binary]}[proxy]
    log = open(os.path.join(work, "proxy.log"), "w")
    child = subprocess.Popen(cmd + ["-c", boot, "--concurrency", "2", "-l", "warning"],
                             stdout=log, stderr=log)
    try:
        if not until(lambda: stat(admin, "cluster_manager.cds.update_success") == 1, 30):
            raise RuntimeError(f"{proxy} did not start; see {log.name}")
        cds, lds = documents(args.clusters, port, args.eds)
        out = {}
        cds_applied = lambda: stat(admin, "cluster_manager.cds.update_success") == 2
        if args.eds:
            source.state[ENDPOINTS] = {"version": "1", "resources": assignments(args.clusters)}
            # Every EDS cluster warmed and active (beside the static xds one).
            cds_applied = lambda: (stat(admin, "cluster_manager.active_clusters") == args.clusters + 1
                                   and stat(admin, "cluster_manager.warming_clusters") == 0)

        def step(name, text, version, applied, key):
            staged = source.staged(name, text)
            t = time.monotonic()
            source.put(name, staged)
            if not until(applied, args.timeout):
                raise RuntimeError(f"{proxy}: {name} {version} not applied within {args.timeout} s")
            since_sent = source.since_sent(name, version)
            out[key] = since_sent if since_sent is not None else time.monotonic() - t

        step("cds.yaml", cds, "1", cds_applied, "cds")
        if args.eds:
            out["eds"] = source.since_sent("cds.yaml", "1", ENDPOINTS)
        out["rss_cds"] = rss_kib(child.pid)
        step("lds.yaml", lds, "1", lambda: accepts(port), "lds")
        out["rss_lds"] = rss_kib(child.pid)
        repush = lds.replace('"1"', '"2"', 1).replace('"/r0/"', '"/x0/"')
        step("lds.yaml", repush, "2",
             lambda: stat(admin, "listener_manager.lds.update_success") == 3, "repush")
        out["rss_end"] = rss_kib(child.pid)
        return out
    finally:
        child.kill()
        child.wait()
        log.close()
        source.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default="target/release/ringway")
    parser.add_argument("--proxies", default="ringway,envoy")
    parser.add_argument("--clusters", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--source", choices=("files", "ads", "delta"), default="files")
    parser.add_argument("--eds", action="store_true")
    parser.add_argument("--out", default="perf/xds-scale.md")
    args = parser.parse_args()
    if args.eds and args.source == "files":
        parser.error("--eds needs --source ads or delta")
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
        f"# Applying a {args.clusters:,}-{'EDS-' if args.eds else ''}cluster, "
        f"{args.clusters:,}-route xDS push",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
        f"both proxies with 2 workers; LDS and CDS from "
        f"{SOURCES[args.source]}{'' if args.source == 'files' else ', timed from the response sent'}; "
        f"medians of {args.rounds} rounds.",
        f"Command: `{command}`",
        "",
        "| | " + " | ".join(proxies) + " |",
        "|---|" + "---|" * len(proxies),
    ]
    rows = [
        (f"CDS: {args.clusters:,} {'EDS clusters and their endpoints' if args.eds else 'clusters'}"
         " applied, s", "cds", "{:.2f}"),
        (f"LDS: a listener with {args.clusters:,} routes serving, s", "lds", "{:.2f}"),
        ("CDS + LDS, s", None, "{:.2f}"),
        *([("of CDS: from the endpoints sent, s", "eds", "{:.2f}")] if args.eds else []),
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
