"""A loopback sink for Segment's batch endpoint: ``python -m benchmarks._segment_sink``.

Accepts ``POST /v1/batch`` (JSON, optionally gzipped), counts the events of each batch
and answers ``200 {}``; ``GET /stats`` answers ``{"events": N, "requests": M}``. HTTP/1.1
keep-alive, as Segment's ``requests`` session expects. Listens on 127.0.0.1 only and
prints ``listening on http://127.0.0.1:PORT`` once ready.
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_lock = threading.Lock()
_counts = {"events": 0, "requests": 0}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/batch":
            self._answer(404, b'{"error": "not found"}')
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        batch = json.loads(body).get("batch", [])
        with _lock:
            _counts["events"] += len(batch)
            _counts["requests"] += 1
        self._answer(200, b"{}")

    def do_GET(self) -> None:
        if self.path == "/stats":
            with _lock:
                body = json.dumps(_counts).encode()
            self._answer(200, body)
        else:
            self._answer(404, b'{"error": "not found"}')

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._segment_sink")
    parser.add_argument("--port", type=int, default=0)
    port = parser.parse_args().port
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
