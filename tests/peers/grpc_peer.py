"""A gRPC server and client on grpcio (messages are raw bytes, so no
generated code is needed).

    grpc_peer.py server            serves test.Echo on a free port; prints it
    grpc_peer.py client PORT       runs every call kind through PORT, one
                                   result line per call
    grpc_peer.py health            serves grpc.health.v1 (grpcio's own
                                   servicer) on a free port; prints it:
                                   "" and "up" SERVING, "down" NOT_SERVING,
                                   any other service NOT_FOUND

Service test.Echo:
    Unary          echoes the request
    ServerStream   the request, 5 times
    ClientStream   the requests joined
    Bidi           each request echoed as it arrives (the client's
                   bidi-ping-pong call waits for each echo before sending on)
    Fail           aborts with the status named in the request (trailers only)
    FailLate       one message, then aborts with the status named (trailers)
    Slow           sleeps the request's milliseconds, then echoes
    Big            a message of the request's decimal size
"""

import queue
import sys
import threading
import time
from concurrent import futures

import grpc


def abort_with(context, name):
    code = getattr(grpc.StatusCode, name.decode())
    context.abort(code, "failed with " + name.decode())


def server():
    def unary(request, context):
        return request

    def server_stream(request, context):
        for _ in range(5):
            yield request

    def client_stream(requests, context):
        return b"+".join(requests)

    def bidi(requests, context):
        for request in requests:
            yield request

    def fail(request, context):
        abort_with(context, request)

    def fail_late(request, context):
        yield b"first"
        abort_with(context, request)

    def slow(request, context):
        time.sleep(int(request) / 1000)
        return request

    def big(request, context):
        return b"x" * int(request)

    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "FailLate": grpc.unary_stream_rpc_method_handler(fail_late),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
            "Big": grpc.unary_unary_rpc_method_handler(big),
        },
    )
    options = [
        ("grpc.max_receive_message_length", 16 << 20),
        ("grpc.max_send_message_length", 16 << 20),
    ]
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    print(port, flush=True)
    srv.wait_for_termination()


def status_line(name, error):
    return "%s %s %s" % (name, error.code().name, error.details())


def ping_pong(bidi):
    """Sends each message only after the previous one came back: both
    directions must flow at once through the proxy."""
    echoed = queue.Queue()

    def requests():
        for message in [b"p1", b"p2", b"p3"]:
            yield message
            echoed.get(timeout=5)

    got = []
    for reply in bidi(requests(), timeout=10):
        got.append(reply)
        echoed.put(reply)
    return got


def client(port):
    options = [
        ("grpc.max_receive_message_length", 16 << 20),
        ("grpc.max_send_message_length", 16 << 20),
    ]
    channel = grpc.insecure_channel("127.0.0.1:%d" % port, options=options)
    grpc.channel_ready_future(channel).result(timeout=10)

    def call(kind, method):
        return getattr(channel, kind)("/test.Echo/" + method)

    def run(name, fn):
        try:
            print("%s OK %s" % (name, fn()), flush=True)
        except grpc.RpcError as e:
            print(status_line(name, e), flush=True)

    run("unary", lambda: call("unary_unary", "Unary")(b"hello", timeout=10))
    run(
        "server-stream",
        lambda: list(call("unary_stream", "ServerStream")(b"tick", timeout=10)),
    )
    run(
        "client-stream",
        lambda: call("stream_unary", "ClientStream")(iter([b"a", b"b", b"c"]), timeout=10),
    )
    run(
        "bidi",
        lambda: list(call("stream_stream", "Bidi")(iter([b"x", b"y", b"z"]), timeout=10)),
    )
    run("bidi-ping-pong", lambda: ping_pong(call("stream_stream", "Bidi")))
    run("large", lambda: len(call("unary_unary", "Big")(b"4194304", timeout=20)))
    run(
        "large-upload",
        lambda: len(call("unary_unary", "Unary")(b"u" * (3 << 20), timeout=20)),
    )
    run("trailers-only", lambda: call("unary_unary", "Fail")(b"NOT_FOUND", timeout=10))
    run(
        "error-after-message",
        lambda: list(call("unary_stream", "FailLate")(b"RESOURCE_EXHAUSTED", timeout=10)),
    )
    run("deadline", lambda: call("unary_unary", "Slow")(b"3000", timeout=0.5))

    # A call the client cancels while the server works on it.
    future = call("unary_unary", "Slow").future(b"2000", timeout=10)
    time.sleep(0.3)
    future.cancel()
    print("cancel cancelled=%s" % future.cancelled(), flush=True)
    # The channel still works after the cancellation.
    run("after-cancel", lambda: call("unary_unary", "Unary")(b"again", timeout=10))


def health():
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("up", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("down", health_pb2.HealthCheckResponse.NOT_SERVING)
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    print(port, flush=True)
    srv.wait_for_termination()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server()
    elif sys.argv[1] == "health":
        health()
    else:
        client(int(sys.argv[2]))
