#!/usr/bin/env python3
"""Kill one of three backends under load, then revive it, through a proxy
with retries and outlier detection; report what clients saw.

    scripts/chaos_outlier.py --proxy ringway [--binary target/release/ringway]
    scripts/chaos_outlier.py --proxy envoy [--binary envoy]

Prints one JSON object: requests, failures (any answer but 200, or no
answer), how long after the kill the proxy ejected the dead host
(eject_ms, read from /stats), how long after the revival the host served
again (recover_ms), and each backend's share. Loopback only, bounded in
time and load: --before seconds of load, the host dead for --dead seconds
(shorter than base_ejection_time, 2 s, so it is back when its ejection
ends), --after seconds more; --clients keep-alive clients.
"""

import argparse
import http.client
import json
import os
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


class Backend:
    """A keep-alive HTTP/1.1 server that can be killed (listener closed,
    every open connection reset) and revived on the same port."""

    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.served = 0
        self.lock = threading.Lock()
        self.conns = set()
        self.listener = None
        self.revive()

    def revive(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.time() + 2
        while True:
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                # A connection of the dead server is still closing.
                if time.time() > deadline:
                    raise
                time.sleep(0.01)
        s.listen(256)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def kill(self):
        with self.lock:
            listener, self.listener = self.listener, None
        listener.close()
        with self.lock:
            conns, self.conns = self.conns, set()
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()
            except OSError:
                pass

    def _accept(self, listener):
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                if listener is not self.listener:
                    # Accepted as it was killed: reset it too.
                    conn.close()
                    continue
                self.conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        body = self.name.encode()
        head = (
            f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\nx-backend: {self.name}\r\n\r\n"
        ).encode()
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, buf = buf.split(b"\r\n\r\n", 1)
                with self.lock:
                    self.served += 1
                conn.sendall(head + body)
        except OSError:
            return
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()


def config(port, admin, backends):
    endpoints = "".join(
        f"        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {b.port} }} }} }}\n"
        for b in backends
    )
    return f"""admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: l
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: h
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: c
                  retry_policy:
                    retry_on: 5xx,connect-failure,reset
                    num_retries: 2
                    retry_back_off: {{ base_interval: 0.005s, max_interval: 0.02s }}
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config: {{ "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate }}
                    host_selection_retry_max_attempts: 3
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: c
    type: STATIC
    connect_timeout: 0.25s
    outlier_detection: {{ consecutive_5xx: 3, interval: 1s, base_ejection_time: 2s, max_ejection_percent: 50 }}
    load_assignment:
      cluster_name: c
      endpoints:
      - lb_endpoints:
{endpoints}"""


def stat(admin, name):
    try:
        c = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
        c.request("GET", "/stats")
        for line in c.getresponse().read().decode().splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", choices=["ringway", "envoy"], required=True)
    ap.add_argument("--binary")
    ap.add_argument("--before", type=float, default=2)
    ap.add_argument("--dead", type=float, default=1.5)
    ap.add_argument("--after", type=float, default=4)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()
    backends = [Backend(n) for n in ("a", "b", "c")]
    port, admin = free_port(), free_port()
    work = tempfile.mkdtemp()
    path = os.path.join(work, "config.yaml")
    with open(path, "w") as f:
        f.write(config(port, admin, backends))
    if args.proxy == "ringway":
        cmd = [args.binary or "target/release/ringway", "-c", path]
    else:
        cmd = [args.binary or "envoy", "-c", path, "--base-id", str(os.getpid() % 10000 + 100), "-l", "error"]
    cmd += ["--concurrency", str(args.concurrency)]
    proxy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 15
        while stat(admin, "cluster.c.membership_total") != 3:
            if time.time() > deadline:
                sys.exit("the proxy did not start")
            time.sleep(0.05)
        results = run(args, port, admin, backends)
    finally:
        proxy.kill()
        proxy.wait()
    print(json.dumps(results))


def run(args, port, admin, backends):
    stop = threading.Event()
    outcomes = []
    lock = threading.Lock()

    def client():
        conn = None
        mine = []
        while not stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                mine.append((time.time(), r.status, r.getheader("x-backend")))
                if r.getheader("connection") == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                mine.append((time.time(), 0, None))
                conn = None
        with lock:
            outcomes.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    time.sleep(args.before)
    victim = backends[1]
    killed_at = time.time()
    victim.kill()
    eject_ms = None
    while time.time() < killed_at + args.dead:
        if eject_ms is None and (stat(admin, "cluster.c.outlier_detection.ejections_active") or 0) > 0:
            eject_ms = round((time.time() - killed_at) * 1000)
        time.sleep(0.01)
    revived_at = time.time()
    victim.revive()
    time.sleep(args.after)
    stop.set()
    for t in threads:
        t.join()
    back = [t for t, status, name in outcomes if name == victim.name and t > revived_at]
    failures = sum(1 for _, status, _ in outcomes if status != 200)
    return {
        "requests": len(outcomes),
        "failures": failures,
        "failures_after_kill": sum(1 for t, s, _ in outcomes if s != 200 and t >= killed_at),
        "failure_statuses": sorted({s for _, s, _ in outcomes if s != 200}),
        "eject_ms": eject_ms,
        "recover_ms": round((min(back) - revived_at) * 1000) if back else None,
        "served": {b.name: b.served for b in backends},
        "ejections_enforced": stat(admin, "cluster.c.outlier_detection.ejections_enforced_total"),
        "retries": stat(admin, "cluster.c.upstream_rq_retry"),
        "retry_overflow": stat(admin, "cluster.c.upstream_rq_retry_overflow"),
        "retry_limit_exceeded": stat(admin, "cluster.c.upstream_rq_retry_limit_exceeded"),
    }


if __name__ == "__main__":
    main()
