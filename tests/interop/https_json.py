"""Serves one JSON document over HTTPS at a path, for the Client ID Metadata Document test.

usage: https_json.py CERT KEY PATH JSON; `__PORT__` in JSON becomes the port it listens on
(the document names its own URL). Prints {"port": N}, then logs each GET as a JSON line.
"""

import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

cert, key, path, document = sys.argv[1:5]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        print(json.dumps({"get": self.path}), flush=True)
        if self.path != path:
            self.send_response(404)
            self.end_headers()
            return
        body = document.encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
document = document.replace("__PORT__", str(server.server_port))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(json.dumps({"port": server.server_port}), flush=True)
server.serve_forever()
