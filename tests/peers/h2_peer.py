"""An HTTP/2 client for the tests, on the python-hyper `h2` library (and its
`hyperframe`/`hpack` for the raw frames of the attacks).

    h2_peer.py streams PORT PATH...       concurrent GETs on one connection;
                                          one line per finished stream:
                                          "<path> <status> <body bytes>"
    h2_peer.py trailers PORT PATH         POST PATH with a body and trailers;
                                          prints "<status> <body>"
    h2_peer.py drain PORT PATH            GET PATH, print "sent", then report
                                          "goaway <code>" and "done <status>"
    h2_peer.py twice PORT PATH            GET PATH, print "<status> <body>";
                                          wait for a line on stdin; GET PATH
                                          again on the same connection, print
                                          "<status> <body>", and "goaway <code>"
                                          if the server sent one by then
    h2_peer.py rapid-reset PORT N         N x (HEADERS, RST_STREAM)
    h2_peer.py continuation PORT N        one HEADERS then N CONTINUATIONs
    h2_peer.py ping-flood PORT N          N PINGs without reading answers
    h2_peer.py settings-flood PORT N      N SETTINGS without reading answers

    h2_peer.py websocket PORT PATH        WebSocket over HTTP/2 (RFC 8441
                                          extended CONNECT): whether SETTINGS
                                          allow it, "status <code>" (or the
                                          reset or GOAWAY), then "echo <text>"
                                          for a text message sent and echoed
    h2_peer.py silent PORT SECONDS        a connection that never answers a
                                          PING: "closed" when the server ends
                                          it within SECONDS, else "open"
    h2_peer.py upstream GOAWAY_AFTER [refuse-first] [early] [one-stream]
                                          an HTTP/2 server on a free port
                                          (printed): answers each request
                                          "<connection> <stream>" (and
                                          "trailers k=v,..." when it had
                                          some), sends GOAWAY after
                                          GOAWAY_AFTER streams on a
                                          connection (0: never), and with
                                          refuse-first resets its very first
                                          stream with REFUSED_STREAM; with
                                          early answers 413 "early" to each
                                          request's head, reading no body;
                                          with one-stream allows one stream
                                          per connection; /hold is never
                                          answered

The attacks end with one line: "goaway <code>" when the server sent GOAWAY,
"closed" when it closed without one, "open" when it still answers a PING
after the flood.
"""

import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def request_headers(port, path):
    return [
        (":method", "GET"),
        (":path", path),
        (":scheme", "http"),
        (":authority", "127.0.0.1:%d" % port),
    ]


def events(sock, conn):
    """Yields h2 events until the connection closes."""
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            data = b""
        if not data:
            yield None
            return
        for event in conn.receive_data(data):
            yield event
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                pass


def twice(port, path):
    # Hand-made frames: the h2 library takes its connection for closed
    # after a GOAWAY and then fails on the server's frames.
    sock = raw_preface(port)
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    frames_in = frames(sock)
    goaway = []

    def ask(stream_id):
        headers = HeadersFrame(stream_id)
        headers.data = encoder.encode(request_headers(port, path))
        headers.flags.add("END_HEADERS")
        headers.flags.add("END_STREAM")
        sock.sendall(headers.serialize())
        status, body = 0, b""
        for frame in frames_in:
            if frame is None:
                return "closed"
            kind, flags, sid, payload = frame
            if kind == 0x4 and not flags & 0x1:  # SETTINGS: acknowledge
                sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
            elif kind == 0x6 and not flags & 0x1:  # PING: answer
                sock.sendall(PingFrame(0, opaque_data=payload, flags=["ACK"]).serialize())
            elif kind == 0x7:
                goaway.append(int.from_bytes(payload[4:8], "big"))
            elif kind == 0x1 and sid == stream_id:
                status = int(dict(decoder.decode(payload))[":status"])
            elif kind == 0x0 and sid == stream_id:
                body += payload
            if kind in (0x0, 0x1) and sid == stream_id and flags & 0x1:
                return "%d %s" % (status, body.decode())
        return "closed"

    print(ask(1), flush=True)
    sys.stdin.readline()
    print(ask(3), flush=True)
    if goaway:
        print("goaway %d" % goaway[0], flush=True)
    sock.close()


def streams(port, paths):
    sock, conn = connect(port)
    by_id = {}
    for path in paths:
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, request_headers(port, path), end_stream=True)
        by_id[stream_id] = {"path": path, "status": 0, "body": 0}
    sock.sendall(conn.data_to_send())
    left = len(paths)
    for event in events(sock, conn):
        if event is None:
            break
        if isinstance(event, h2.events.ResponseReceived):
            by_id[event.stream_id]["status"] = int(dict(event.headers)[":status"])
        elif isinstance(event, h2.events.DataReceived):
            by_id[event.stream_id]["body"] += len(event.data)
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            s = by_id[event.stream_id]
            print("%s %d %d" % (s["path"], s["status"], s["body"]), flush=True)
            left -= 1
            if left == 0:
                break
    sock.close()


def frames(sock):
    """Yields (type, flags, stream id, payload) for each frame received,
    then None when the connection closes. Raw, because python-hyper's
    state machine treats a first GOAWAY as the end of the connection,
    while a graceful shutdown (RFC 9113 section 6.8) goes on after it."""
    buf = b""
    while True:
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[0:3], "big"):
            length = int.from_bytes(buf[0:3], "big")
            stream_id = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            yield buf[3], buf[4], stream_id, buf[9 : 9 + length]
            buf = buf[9 + length :]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            yield None
            return
        buf += data


def trailers(port, path):
    """A POST with a body and trailers; prints the answer."""
    sock, conn = connect(port)
    headers = request_headers(port, path)
    headers[0] = (":method", "POST")
    conn.send_headers(1, headers + [("te", "trailers")])
    conn.send_data(1, b"payload")
    conn.send_headers(1, [("x-checksum", "abc"), ("x-count", "1")], end_stream=True)
    sock.sendall(conn.data_to_send())
    status, body = 0, b""
    for event in events(sock, conn):
        if event is None:
            break
        if isinstance(event, h2.events.ResponseReceived):
            status = int(dict(event.headers)[":status"])
        elif isinstance(event, h2.events.DataReceived):
            body += event.data
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            break
    print("%d %s" % (status, body.decode()), flush=True)
    sock.close()


def drain(port, path):
    sock = raw_preface(port)
    headers = HeadersFrame(1)
    headers.data = hpack.Encoder().encode(request_headers(port, path))
    headers.flags.add("END_HEADERS")
    headers.flags.add("END_STREAM")
    sock.sendall(headers.serialize())
    print("sent", flush=True)
    decoder = hpack.Decoder()
    status = 0
    for frame in frames(sock):
        if frame is None:
            print("closed", flush=True)
            break
        kind, flags, stream_id, payload = frame
        if kind == 0x4 and not flags & 0x1:  # SETTINGS: acknowledge
            sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
        elif kind == 0x6 and not flags & 0x1:  # PING: answer
            sock.sendall(PingFrame(0, opaque_data=payload, flags=["ACK"]).serialize())
        elif kind == 0x7:
            print("goaway %d" % int.from_bytes(payload[4:8], "big"), flush=True)
        elif kind == 0x1 and stream_id == 1:
            status = int(dict(decoder.decode(payload))[":status"])
        if kind in (0x0, 0x1) and stream_id == 1 and flags & 0x1:
            print("done %d" % status, flush=True)
    sock.close()


def websocket(port, path):
    """Raw frames: python-hyper's state machine refuses a HEADERS frame
    that follows a GOAWAY, which is how a refused upgrade is answered."""
    sock = raw_preface(port)
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    text = b"hello over h2"
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    ws_frame = bytes([0x81, 0x80 | len(text)]) + mask + masked
    sent = False
    finished = False
    received = b""
    for frame in frames(sock):
        if frame is None:
            # After the stream ended, the wait was only for a late GOAWAY.
            if not finished:
                print("closed", flush=True)
            break
        kind, flags, stream_id, payload = frame
        if kind == 0x4 and not flags & 0x1:
            settings = {
                int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(payload[i + 2 : i + 6], "big")
                for i in range(0, len(payload), 6)
            }
            print("extended-connect %d" % settings.get(0x8, 0), flush=True)
            sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
            if not sent:
                headers = HeadersFrame(1)
                headers.data = encoder.encode(
                    [
                        (":method", "CONNECT"),
                        (":protocol", "websocket"),
                        (":scheme", "http"),
                        (":path", path),
                        (":authority", "127.0.0.1:%d" % port),
                        ("sec-websocket-version", "13"),
                        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ]
                )
                headers.flags.add("END_HEADERS")
                sock.sendall(headers.serialize())
                sent = True
        elif kind == 0x6 and not flags & 0x1:
            sock.sendall(PingFrame(0, opaque_data=payload, flags=["ACK"]).serialize())
        elif kind == 0x7:
            print("goaway %d" % int.from_bytes(payload[4:8], "big"), flush=True)
        elif kind == 0x3 and stream_id == 1:
            print("reset %d" % int.from_bytes(payload[0:4], "big"), flush=True)
            finished = True
            sock.settimeout(0.5)
        elif kind == 0x1 and stream_id == 1:
            status = int(dict(decoder.decode(payload))[":status"])
            print("status %d" % status, flush=True)
            if status == 200:
                data = DataFrame(1)
                data.data = ws_frame
                sock.sendall(data.serialize())
            if flags & 0x1:
                # A refusal may come with a GOAWAY, before or after it.
                finished = True
                sock.settimeout(0.5)
        elif kind == 0x0 and stream_id == 1:
            received += payload
            if len(received) >= 2 and len(received) >= 2 + (received[1] & 0x7F):
                length = received[1] & 0x7F
                print("echo %s" % received[2 : 2 + length].decode(), flush=True)
                break
            if flags & 0x1:
                break
    sock.close()


def silent(port, seconds):
    sock = raw_preface(port)
    sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        print("closed", flush=True)
    except socket.timeout:
        print("open", flush=True)
    except OSError:
        print("closed", flush=True)


def raw_preface(port):
    """A connection past the preface and SETTINGS, for hand-made frames."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
    return sock


def outcome(sock):
    """Reads what the server says after an attack: GOAWAY, a close, or
    the answer to a PING (the connection still works)."""
    try:
        sock.sendall(PingFrame(0, opaque_data=b"stillok!").serialize())
    except OSError:
        print("closed", flush=True)
        return
    buf = b""
    deadline = time.time() + 5
    sock.settimeout(1)
    while time.time() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            data = b""
        if not data:
            print("closed", flush=True)
            return
        buf += data
        while len(buf) >= 9:
            length = int.from_bytes(buf[0:3], "big")
            kind = buf[3]
            flags = buf[4]
            if len(buf) < 9 + length:
                break
            payload = buf[9 : 9 + length]
            buf = buf[9 + length :]
            if kind == 0x7:
                print("goaway %d" % int.from_bytes(payload[4:8], "big"), flush=True)
                return
            if kind == 0x6 and flags & 0x1 and payload == b"stillok!":
                print("open", flush=True)
                return
    print("open", flush=True)


def rapid_reset(port, n):
    sock = raw_preface(port)
    encoder = hpack.Encoder()
    block = b""
    for i in range(n):
        stream_id = 1 + 2 * i
        headers = HeadersFrame(stream_id)
        headers.data = encoder.encode(request_headers(port, "/"))
        headers.flags.add("END_HEADERS")
        headers.flags.add("END_STREAM")
        reset = RstStreamFrame(stream_id)
        reset.error_code = 8  # CANCEL
        block += headers.serialize() + reset.serialize()
        if len(block) > 32768:
            try:
                sock.sendall(block)
            except OSError:
                break
            block = b""
    try:
        sock.sendall(block)
    except OSError:
        pass
    outcome(sock)


def continuation(port, n):
    sock = raw_preface(port)
    encoder = hpack.Encoder()
    headers = HeadersFrame(1)
    headers.data = encoder.encode(request_headers(port, "/"))
    try:
        sock.sendall(headers.serialize())
        filler = b"\x40\x01a\x03xyz" * 120  # literal headers, no indexing
        for _ in range(n):
            frame = ContinuationFrame(1)
            frame.data = filler
            sock.sendall(frame.serialize())
    except OSError:
        pass
    outcome(sock)


def flood(port, n, frame):
    sock = raw_preface(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    block = frame.serialize() * 1000
    sent = 0
    sock.settimeout(3)
    try:
        while sent < n:
            sock.sendall(block)
            sent += 1000
    except OSError:
        pass
    outcome(sock)


def upstream(goaway_after, refuse_first, early, one_stream):
    import socketserver

    connections = [0]

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            connections[0] += 1
            number = connections[0]
            conn = h2.connection.H2Connection(
                config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
            )
            conn.initiate_connection()
            if one_stream:
                conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
            self.request.sendall(conn.data_to_send())
            served = 0
            trailers = {}
            paths = {}
            while True:
                try:
                    data = self.request.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    return
                for event in events:
                    if early and isinstance(event, h2.events.RequestReceived):
                        body = b"early"
                        conn.send_headers(
                            event.stream_id,
                            [(":status", "413"), ("content-length", str(len(body)))],
                        )
                        conn.send_data(event.stream_id, body, end_stream=True)
                        continue
                    if isinstance(event, h2.events.RequestReceived):
                        paths[event.stream_id] = dict(event.headers).get(":path")
                    if isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.TrailersReceived):
                        trailers[event.stream_id] = event.headers
                    elif isinstance(event, h2.events.StreamEnded) and paths.get(event.stream_id) == "/hold":
                        pass  # never answered: the stream holds its slot
                    elif isinstance(event, h2.events.StreamEnded) and not early:
                        served += 1
                        if refuse_first and number == 1 and served == 1:
                            conn.reset_stream(event.stream_id, error_code=7)  # REFUSED_STREAM
                            continue
                        text = "%d %d" % (number, event.stream_id)
                        if event.stream_id in trailers:
                            text += " trailers " + ",".join(
                                "%s=%s" % (k, v) for k, v in trailers[event.stream_id]
                            )
                        body = text.encode()
                        conn.send_headers(
                            event.stream_id,
                            [(":status", "200"), ("content-length", str(len(body)))],
                        )
                        conn.send_data(event.stream_id, body, end_stream=True)
                        if goaway_after and served == goaway_after:
                            conn.close_connection(last_stream_id=event.stream_id)
                self.request.sendall(conn.data_to_send())

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def main():
    command, port = sys.argv[1], int(sys.argv[2])  # upstream: GOAWAY_AFTER
    args = sys.argv[3:]
    if command == "streams":
        streams(port, args)
    elif command == "trailers":
        trailers(port, args[0])
    elif command == "drain":
        drain(port, args[0])
    elif command == "twice":
        twice(port, args[0])
    elif command == "rapid-reset":
        rapid_reset(port, int(args[0]))
    elif command == "continuation":
        continuation(port, int(args[0]))
    elif command == "ping-flood":
        flood(port, int(args[0]), PingFrame(0, opaque_data=b"flooding"))
    elif command == "websocket":
        websocket(port, args[0])
    elif command == "silent":
        silent(port, float(args[0]))
    elif command == "upstream":
        upstream(port, "refuse-first" in args, "early" in args, "one-stream" in args)
    elif command == "settings-flood":
        flood(port, int(args[0]), SettingsFrame(0))
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main()
