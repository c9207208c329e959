"""An upstream whose health-check answer can be changed while it runs.

Prints its port, then serves HTTP/1.1 (keep-alive) with Python's
http.server. `GET /set?status=503&degraded=1&immediate=1` sets what every
later request gets: that status, with `x-envoy-degraded` and/or
`x-envoy-immediate-health-check-fail` when asked. Any other path gets the
current answer, body `ok`.
"""

import http.server
import socketserver
import sys
import urllib.parse

state = {"status": 200, "degraded": False, "immediate": False}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        status = state["status"]
        extra = []
        if url.path == "/set":
            query = urllib.parse.parse_qs(url.query)
            state["status"] = int(query.get("status", ["200"])[0])
            state["degraded"] = query.get("degraded") == ["1"]
            state["immediate"] = query.get("immediate") == ["1"]
            status = 200
        else:
            if state["degraded"]:
                extra.append(("x-envoy-degraded", "true"))
            if state["immediate"]:
                extra.append(("x-envoy-immediate-health-check-fail", "true"))
        body = b"ok"
        self.send_response(status)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
