#!/usr/bin/env python3
"""Opens COUNT keep-alive connections to 127.0.0.1:PORT, sends one GET on
each and reads its response, then leaves them idle. Prints "ready" when all
are idle, closes them all when a line arrives on stdin, prints "closed".
With a third argument `h2`, the connections speak HTTP/2 (prior knowledge,
python-hyper's h2); with `tls`, HTTP/1.1 over TLS (certificate unchecked)."""
import socket
import ssl
import sys

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE


def http1(port: int, tls: bool = False) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    if tls:
        s = TLS.wrap_socket(s, server_hostname="bench.local")
    s.sendall(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"hello"):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit(f"connection closed early: {got!r}")
        got += chunk
    return s


def http2(port: int) -> socket.socket:
    import h2.config
    import h2.connection
    import h2.events

    s = socket.create_connection(("127.0.0.1", port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "bench")],
        end_stream=True,
    )
    s.sendall(conn.data_to_send())
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed early")
        events = conn.receive_data(chunk)
        s.sendall(conn.data_to_send())
        if any(isinstance(e, h2.events.StreamEnded) for e in events):
            return s


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    mode = sys.argv[3:]
    if mode == ["h2"]:
        open_one = http2
    elif mode == ["tls"]:
        def open_one(port: int) -> socket.socket:
            return http1(port, tls=True)
    else:
        open_one = http1
    conns = [open_one(port) for _ in range(count)]
    print("ready", flush=True)
    sys.stdin.readline()
    for s in conns:
        s.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
