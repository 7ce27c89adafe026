"""The cluster test's upstream service, on loopback.

- `GET /data`: behaves as the file named on the command line says: `ok` (200 JSON), `slow`
  (answers after 3 s, past the tool's timeout) or `fail` (500). The fault run flips it.
- `GET /notes`: a service reached with the caller's own OAuth connection. It answers 401
  without a bearer token and otherwise names the token it received by a digest (never the token
  itself), so a test can tell which access token each replica used.

Usage: upstream.py PORT MODE_FILE
"""

import hashlib
import http.server
import json
import sys
import time

port, mode_file = int(sys.argv[1]), sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/notes"):
            auth = self.headers.get("authorization", "")
            if not auth.startswith("Bearer "):
                return self.answer(401, b'{"error": "no token"}')
            digest = hashlib.sha256(auth[7:].encode()).hexdigest()[:16]
            return self.answer(200, json.dumps({"token": digest}).encode())
        mode = open(mode_file).read().strip()
        if mode == "slow":
            time.sleep(3)
        if mode == "fail":
            return self.answer(500, b"upstream broke", "text/plain")
        self.answer(200, b'{"ok": true}')

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
