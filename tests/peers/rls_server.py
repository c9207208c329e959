"""A rate limit service (envoy.service.ratelimit.v3) on grpcio with the
gRPC team's generated Envoy API (xds-protos).

    rls_server.py LOG      serves on a free port and prints it; appends
                           each request it answers to LOG as one JSON line
                           (domain, descriptors, hits_addend)

The verdict comes from the descriptor entries' values:
    "over"      OVER_LIMIT, with a response header and a descriptor status
    "error"     the call fails (UNAVAILABLE)
    "unknown"   overall code UNKNOWN
    "slow"      answers OK after 1.5 s
    otherwise   OK, with a header for the upstream request and one for the
                response
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

Code = rls_pb2.RateLimitResponse.Code


def header(key, value):
    return base_pb2.HeaderValue(key=key, value=value)


class Service(rls_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, log):
        self.log = log
        self.lock = threading.Lock()

    def ShouldRateLimit(self, request, context):
        descriptors = [
            [[e.key, e.value] for e in d.entries] for d in request.descriptors
        ]
        with self.lock, open(self.log, "a") as out:
            record = {
                "domain": request.domain,
                "descriptors": descriptors,
                "hits_addend": request.hits_addend,
            }
            out.write(json.dumps(record) + "\n")
        values = {value for d in descriptors for _, value in d}
        if "error" in values:
            context.abort(grpc.StatusCode.UNAVAILABLE, "told to fail")
        if "slow" in values:
            time.sleep(1.5)
        if "unknown" in values:
            return rls_pb2.RateLimitResponse(overall_code=Code.UNKNOWN)
        if "over" in values:
            return rls_pb2.RateLimitResponse(
                overall_code=Code.OVER_LIMIT,
                statuses=[
                    rls_pb2.RateLimitResponse.DescriptorStatus(
                        code=Code.OVER_LIMIT, limit_remaining=0
                    )
                ],
                response_headers_to_add=[header("x-rl-response", "over")],
                request_headers_to_add=[header("x-rl-request", "over")],
            )
        return rls_pb2.RateLimitResponse(
            overall_code=Code.OK,
            response_headers_to_add=[header("x-rl-response", "ok")],
            request_headers_to_add=[header("x-rl-request", "ok")],
        )


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(Service(sys.argv[1]), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
