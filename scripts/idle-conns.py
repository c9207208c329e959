#!/usr/bin/env python3
"""Opens COUNT keep-alive connections to 127.0.0.1:PORT, sends one GET on
each and reads its response, then leaves them idle. Prints "ready" when all
are idle, closes them all when a line arrives on stdin, prints "closed"."""
import socket
import sys


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    conns = []
    request = b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n"
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        got = b""
        while b"\r\n\r\n" not in got or not got.endswith(b"hello"):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit(f"connection {len(conns)} closed early: {got!r}")
            got += chunk
        conns.append(s)
    print("ready", flush=True)
    sys.stdin.readline()
    for s in conns:
        s.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
