"""The fake fal's "foreign host" (the ``foreign_urls`` fault): a second server, on another 127.0.0.1 port,
that the submit answer's URLs point at. It answers anything fal-like and records everything, so a test can
show that a client never follows the URLs fal's answer gives (see `fake_fal.faults`).
"""

from __future__ import annotations

import json
import socket
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .handler import PER_REQUEST_PATH
from .jobs import COMPLETED

if TYPE_CHECKING:
    from .server import FakeFal

__all__ = ["ForeignServer"]


class ForeignServer(ThreadingHTTPServer):
    """The "foreign host" of `Faults.foreign_urls`: answers anything fal-like, records everything."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, fake: FakeFal) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", 0), _ForeignHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)) and not self.fake._stopping.is_set():
            self.fake._warn(f"foreign host: connection from {client_address} failed: {exc!r}")


class _ForeignHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ForeignServer

    def setup(self) -> None:
        super().setup()
        with self.server.fake._lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.fake._lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            sys.stderr.write(f"[fake_fal foreign] {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def _answer(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        rec = fake._record(self, body, store=False, kind="foreign")
        with fake._lock:
            fake.foreign_requests.append(rec)
            fake._seen.notify_all()
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        path = urlsplit(self.path).path
        match = PER_REQUEST_PATH.match(unquote(path))
        base = f"{host}{path}"
        rid = match["rid"] if match else str(uuid.uuid4())
        tail = (match["tail"] or "") if match else ""
        if match:
            base = f"{host}/{match['app']}/requests/{rid}"
        status = {
            "status": COMPLETED,
            "request_id": rid,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
            "logs": None,
            "metrics": {"inference_time": 0.1},
        }
        if tail == "/status/stream":
            self.close_connection = True
            data, content_type = f"data: {json.dumps(status)}\n\n".encode(), "text/event-stream"
            code = 200
        elif tail == "/cancel":
            code, data, content_type = 400, json.dumps({"status": "ALREADY_COMPLETED"}).encode(), "application/json"
        elif tail == "/status":
            code, data, content_type = 200, json.dumps(status).encode(), "application/json"
        elif match:
            image = {"url": f"{host}/files/{rid}/0.jpg", "content_type": "image/jpeg",
                     "file_name": "0.jpg", "width": 1024, "height": 1024}
            code = 200
            data = json.dumps({"images": [image], "revised_prompt": "Revised"}).encode()
            content_type = "application/json"
        else:
            code, data, content_type = 200, json.dumps(status).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-fal-request-id", rid)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
