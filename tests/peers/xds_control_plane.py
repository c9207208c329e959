#!/usr/bin/env python3
"""An xDS control plane for the xDS tests, state of the world and incremental
(delta), on grpcio and the gRPC team's generated Envoy API (xds-protos),
written without Ringway in mind. It serves ADS and each type's own service
(LDS, CDS, RDS, EDS, SDS: what an api_config_source calls) from one state.

    xds_control_plane.py STATE LOG [PORT]     serves on PORT (default: a free
                                              one) and prints the port

STATE is a JSON file the test replaces (by rename) to publish resources:
    {"<type URL>": {"version": "v1", "resources": [{"@type": ..., ...}, ...]}}
It is polled every 50 ms; a type whose version changed is pushed to every
stream that asked for it. A type missing from STATE is never answered.
LOG gets one JSON line per response sent, {"sent": type URL, "version",
"at": Unix time}, and one per request received:
    {"type", "version", "nonce", "names", "error", "node"}           (SotW)
    {"type", "subscribe", "unsubscribe", "initial", "nonce", "error",
     "node", "delta": true}                                            (delta)
In delta, every resource has its type's version; one that leaves STATE is
sent as removed.
"""

import json
import os
import queue
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import any_pb2, json_format

# Registers every message a test resource may name with the default pool.
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.route.v3 import route_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.endpoint.v3 import eds_pb2_grpc
from envoy.service.listener.v3 import lds_pb2_grpc
from envoy.service.route.v3 import rds_pb2_grpc
from envoy.service.secret.v3 import sds_pb2_grpc

NAME_FIELD = {
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": "cluster_name",
}
WILDCARD = {
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
}


class State:
    """The published resources, re-read when the file changes."""

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.types = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def poll(self):
        while True:
            try:
                mtime = os.stat(self.path).st_mtime_ns
                if mtime != self.mtime:
                    with open(self.path) as f:
                        types = json.load(f)
                    with self.lock:
                        self.mtime = mtime
                        self.types = types
                        self.changed.notify_all()
            except (OSError, ValueError):
                pass
            time.sleep(0.05)


class Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, state, log):
        self.state = state
        self.log = log
        self.nonce = 0
        self.nonce_lock = threading.Lock()

    def next_nonce(self):
        with self.nonce_lock:
            self.nonce += 1
            return str(self.nonce)

    def read(self, requests, done, out, take, fields):
        """Logs each of a stream's requests (its protocol's `fields` with the
        common ones) and hands it to `take`, until the client goes."""
        try:
            for request in requests:
                entry = {
                    "type": request.type_url,
                    "nonce": request.response_nonce,
                    "error": request.error_detail.message
                    if request.HasField("error_detail")
                    else None,
                    "node": request.node.id if request.HasField("node") else None,
                }
                entry.update(fields(request))
                self.log.write(json.dumps(entry) + "\n")
                self.log.flush()
                with self.state.lock:
                    take(request)
        except grpc.RpcError:
            pass  # the client went away
        finally:
            done.set()
            out.put(None)

    def watch(self, done, types, push):
        """Pushes what changed of the stream's `types()` until it is done."""
        while not done.is_set():
            with self.state.lock:
                self.state.changed.wait(0.2)
                for type_url in types():
                    push(type_url)

    def note_sent(self, type_url, version):
        """Logs when a response was handed to gRPC (benchmarks time from it)."""
        self.log.write(json.dumps({"sent": type_url, "version": version, "at": time.time()}) + "\n")
        self.log.flush()

    def StreamAggregatedResources(self, request_iterator, context):
        out = queue.Queue()
        names = {}  # type URL -> requested names
        sent = {}  # type URL -> (version, names) last sent
        done = threading.Event()

        def push(type_url):
            """Sends the type's current version if this stream lacks it."""
            entry = self.state.types.get(type_url)
            if entry is None or type_url not in names:
                return
            wanted = names[type_url]
            if sent.get(type_url) == (entry["version"], tuple(wanted)):
                return
            field = NAME_FIELD.get(type_url, "name")
            resources = [
                r
                for r in entry["resources"]
                if type_url in WILDCARD or not wanted or r.get(field) in wanted
            ]
            response = discovery_pb2.DiscoveryResponse(
                version_info=entry["version"],
                type_url=type_url,
                nonce=self.next_nonce(),
            )
            for r in resources:
                any_message = any_pb2.Any()
                json_format.ParseDict(r, any_message)
                response.resources.append(any_message)
            sent[type_url] = (entry["version"], tuple(wanted))
            out.put(response)
            self.note_sent(type_url, entry["version"])

        def take(request):
            names[request.type_url] = sorted(request.resource_names)
            push(request.type_url)

        def read():
            self.read(request_iterator, done, out, take, lambda r: {
                "version": r.version_info,
                "names": sorted(r.resource_names),
            })

        def watch():
            self.watch(done, lambda: list(names), push)

        yield from stream(read, watch, out)


    def DeltaAggregatedResources(self, request_iterator, context):
        out = queue.Queue()
        subscribed = {}  # type URL -> set of names ("*": every resource)
        sent = {}  # type URL -> {name: version} this stream has
        done = threading.Event()

        def push(type_url):
            """Sends what changed of the type for this stream's names."""
            entry = self.state.types.get(type_url)
            names = subscribed.get(type_url)
            if entry is None or names is None:
                return
            field = NAME_FIELD.get(type_url, "name")
            have = sent.setdefault(type_url, {})
            current = {
                r[field]: r
                for r in entry["resources"]
                if "*" in names or r[field] in names
            }
            changed = [r for n, r in current.items() if have.get(n) != entry["version"]]
            removed = [n for n in have if n not in current]
            if not changed and not removed:
                return
            response = discovery_pb2.DeltaDiscoveryResponse(
                system_version_info=entry["version"],
                type_url=type_url,
                nonce=self.next_nonce(),
                removed_resources=removed,
            )
            for r in changed:
                resource = response.resources.add(name=r[field], version=entry["version"])
                json_format.ParseDict(r, resource.resource)
                have[r[field]] = entry["version"]
            for n in removed:
                del have[n]
            out.put(response)
            self.note_sent(type_url, entry["version"])

        def take(request):
            t = request.type_url
            first = t not in subscribed
            names = subscribed.setdefault(t, set())
            if first and t in WILDCARD and not request.resource_names_subscribe:
                names.add("*")
            names.update(request.resource_names_subscribe)
            names.difference_update(request.resource_names_unsubscribe)
            if first:
                # What the client says it has is not sent again.
                sent[t] = dict(request.initial_resource_versions)
            push(t)

        def read():
            self.read(request_iterator, done, out, take, lambda r: {
                "delta": True,
                "subscribe": sorted(r.resource_names_subscribe),
                "unsubscribe": sorted(r.resource_names_unsubscribe),
                "initial": dict(r.initial_resource_versions),
            })

        def watch():
            self.watch(done, lambda: list(subscribed), push)

        yield from stream(read, watch, out)


def stream(read, watch, out):
    """Runs a stream's reader and watcher; yields its responses until the
    reader ends."""
    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=watch, daemon=True).start()
    while True:
        response = out.get()
        if response is None:
            return
        yield response


def single_type_services(ads):
    """Each type's own discovery service, answering as ADS does."""
    services = [
        (lds_pb2_grpc, "ListenerDiscoveryService", "Listeners"),
        (cds_pb2_grpc, "ClusterDiscoveryService", "Clusters"),
        (rds_pb2_grpc, "RouteDiscoveryService", "Routes"),
        (eds_pb2_grpc, "EndpointDiscoveryService", "Endpoints"),
        (sds_pb2_grpc, "SecretDiscoveryService", "Secrets"),
    ]
    for module, service, noun in services:
        base = getattr(module, f"{service}Servicer")
        methods = {
            f"Stream{noun}": lambda self, it, ctx: ads.StreamAggregatedResources(it, ctx),
            f"Delta{noun}": lambda self, it, ctx: ads.DeltaAggregatedResources(it, ctx),
        }
        servicer = type(f"{service}Servicer", (base,), methods)()
        yield getattr(module, f"add_{service}Servicer_to_server"), servicer


def main():
    state_path, log_path = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    state = State(state_path)
    threading.Thread(target=state.poll, daemon=True).start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    with open(log_path, "a") as log:
        ads = Ads(state, log)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server)
        for add, servicer in single_type_services(ads):
            add(servicer, server)
        port = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        print(port, flush=True)
        server.wait_for_termination()


if __name__ == "__main__":
    main()
