"""A webhook receiver for the cluster end-to-end test: keeps every POST it gets (path, headers,
body) in memory, prints one JSON line per delivery, and lists them at GET /received."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = []


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        entry = {"path": self.path, "headers": dict(self.headers), "body": body}
        received.append(entry)
        print(json.dumps(entry), flush=True)
        self.send_response(200)
        self.end_headers()

    def do_GET(self):
        data = json.dumps(received if self.path == "/received" else {"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
