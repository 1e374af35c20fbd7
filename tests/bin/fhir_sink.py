#!/usr/bin/env python3
"""Minimal FHIR sink for scripts/bench-e2e: answers every POST of a Bundle with 200 and a
`transaction-response` (or `batch-response`) Bundle holding one `response: {status: "200 OK"}`
entry per request entry, and stores nothing. It shows the gateway's own delivery ceiling.

    python3 tests/bin/fhir_sink.py [--port 0]

Prints `listening http://127.0.0.1:<port>` on stdout once it accepts requests.
`GET /__count` answers `{"requests": N, "entries": M}`.
"""
import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
counts = {"requests": 0, "entries": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as ureq expects
    disable_nagle_algorithm = True  # TCP_NODELAY: no 40 ms delayed-ACK stalls

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/fhir+json"):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        # Head and body in one write.
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def do_GET(self):
        with lock:
            self.reply(200, dict(counts), "application/json")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            bundle = json.loads(raw)
        except ValueError:
            self.reply(400, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "structure"}]})
            return
        n = len(bundle.get("entry") or [])
        kind = "batch-response" if bundle.get("type") == "batch" else "transaction-response"
        with lock:
            counts["requests"] += 1
            counts["entries"] += n
        self.reply(200, {"resourceType": "Bundle", "type": kind,
                         "entry": [{"response": {"status": "200 OK"}} for _ in range(n)]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
