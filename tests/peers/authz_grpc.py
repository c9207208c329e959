"""An external authorization service (envoy.service.auth.v3) on grpcio
with the gRPC team's generated Envoy API (xds-protos).

    authz_grpc.py LOG      serves on a free port and prints it; appends
                           each CheckRequest it answers to LOG as one JSON
                           line (protobuf's JSON mapping)

The verdict is the request path's first segment:
    /allow     OK: a header set and one appended upstream, one removed,
               one added to the response
    /append    OK: a header appended (the legacy `append`) and another
               set with append_action APPEND_IF_EXISTS_OR_ADD, which
               Envoy's filter does not read
    /deny      PERMISSION_DENIED with a denied_response (401, headers, body)
    /refuse    PERMISSION_DENIED without a denied_response
    /error     the call fails (UNAVAILABLE)
    /slow      OK after 1.5 s
    otherwise  OK, nothing else
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import json_format, wrappers_pb2
from google.rpc import status_pb2


def option(key, value, append=False):
    """A header; `append` sets the legacy BoolValue Envoy's filter reads
    (its append_action is not read)."""
    header = base_pb2.HeaderValue(key=key, value=value)
    if not append:
        return base_pb2.HeaderValueOption(header=header)
    return base_pb2.HeaderValueOption(header=header, append=wrappers_pb2.BoolValue(value=True))


class Service(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, log):
        self.log = log
        self.lock = threading.Lock()

    def Check(self, request, context):
        with self.lock, open(self.log, "a") as out:
            record = json_format.MessageToDict(request)
            out.write(json.dumps(record, sort_keys=True) + "\n")
        path = request.attributes.request.http.path
        verdict = path.split("/")[1] if path.count("/") else ""
        if verdict == "error":
            context.abort(grpc.StatusCode.UNAVAILABLE, "told to fail")
        if verdict == "slow":
            time.sleep(1.5)
        if verdict == "deny":
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=7),
                denied_response=external_auth_pb2.DeniedHttpResponse(
                    status=http_status_pb2.HttpStatus(code=401),
                    headers=[option("www-authenticate", "Bearer"), option("x-deny-reason", "nope")],
                    body="denied by authz",
                ),
            )
        if verdict == "refuse":
            return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=7))
        if verdict == "append":
            appended = base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="x-other", value="added"),
                append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
            )
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=0),
                ok_response=external_auth_pb2.OkHttpResponse(
                    headers=[
                        option("x-append", "two", True),
                        option("x-absent", "new", True),
                        appended,
                    ],
                ),
            )
        if verdict == "allow":
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=0),
                ok_response=external_auth_pb2.OkHttpResponse(
                    headers=[option("x-auth-user", "alice"), option("x-other", "o")],
                    headers_to_remove=["x-remove-me"],
                    response_headers_to_add=[option("x-resp", "r")],
                ),
            )
        return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=0))


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Service(sys.argv[1]), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
