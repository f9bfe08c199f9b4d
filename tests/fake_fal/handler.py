"""The fake fal's HTTP side: one handler for every route, speaking fal's queue protocol.

Queue requests need ``Authorization: Key <key>`` (any non-empty key unless `accepted_keys` is
given); otherwise 401 ``{"detail": "Invalid or missing API key"}``. Every request but the control
ones is recorded as a `RecordedRequest` (see `fake_fal.server`).

``POST /{endpoint}``
    Submit to an image endpoint (`fake_fal.images`) or a video endpoint (`fake_fal.video`); others
    give 404. The body is validated by the endpoint's own rules (422 ``{"detail": [{"loc": ["body",
    FIELD], "msg", "type"}]}``); an image submit is paid from the balance when the fake charges it
    (`fake_fal.billing`). 200 answer: ``{request_id, response_url, status_url, cancel_url,
    queue_position}`` (``queue_position`` 0, or the job's place in the account queue when there is
    one); request URLs use only ``owner/app`` (``xai/grok-imagine-image/requests/ID``) like fal does.
``GET  .../requests/ID/status[?logs=1]``
    ``{"status": "IN_QUEUE"|"IN_PROGRESS"|"COMPLETED", ...}`` with ``queue_position`` while
    queued, ``logs`` (null unless logs=1), ``metrics`` and, for failed jobs, ``error`` and
    ``error_type``. Unknown ids give 404.
``GET  .../requests/ID/status/stream[?logs=1]``
    Server-sent events: ``data: <status json>`` at once and on every change (checked every
    20 ms, but only when something can have changed, so hundreds of idle streams are cheap),
    ``: ping`` about once a second, and the connection closes after COMPLETED.
``GET  .../requests/ID``
    The result: 400 while running; the job's result JSON (`Job.result`: its images, or its video);
    a content-policy failure gives 422 with ``type: content_policy_violation``, an input file the fake does not
    hold 422 with ``type: file_download_error`` (``loc: ["body", FIELD]``), a cancelled job 400, another
    failure 500.
``PUT  .../requests/ID/cancel``
    202 ``{"status": "CANCELLATION_REQUESTED"}`` (the job completes with error "Request
    cancelled") or 400 ``{"status": "ALREADY_COMPLETED"}``.
``GET  /files/ID/N.ext``
    File N of a job's result (an image, or the MP4 of a video job), no auth (whether one was sent is
    recorded), 404 once expired (`FakeFal.expire_files`); the ``image_*`` faults and ``cdn_latency`` act on
    every file.
``POST /storage/auth/token?storage_type=fal-cdn-v3`` (Key auth)
    ``{"token", "token_type": "Bearer", "base_url", "expires_at"}``.
``POST /files/upload`` (``Authorization: Bearer <token>``, raw body, ``Content-Type``,
``X-Fal-File-Name``)
    ``{"access_url": BASE/files/uploads/<uuid>/<name>}``, which then serves the bytes.
``GET /billing/user_balance`` (Key auth)
    The balance (`fake_fal.billing`).
``/_fake/...``
    The control endpoints (no auth, never recorded; see `fake_fal.server`).

Behind a name
-------------
The fake also serves requests in absolute form (``GET http://queue.fal.test/xai/...``), as an HTTP
proxy receives them for plain-http URLs: it answers them as its own paths, whatever the host. With
``HTTP_PROXY`` pointing at the fake, a client can use a public-looking base URL (a ``.test`` name,
which never resolves) and still reach the fake; every request then arrives at the fake, recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .billing import EXHAUSTED_BALANCE_MESSAGE, billed_price
from .images import ENDPOINTS, bomb_png, corrupt_bytes, render_image, validate_arguments
from .jobs import COMPLETED, CONTENT_POLICY_TYPES, FILE_DOWNLOAD_ERROR, Job
from .video import VIDEO_ENDPOINTS, billed_video_price, check_input_video, validate_video_arguments

if TYPE_CHECKING:
    from .server import FakeFal

__all__ = ["RecordedRequest", "Server"]

FRONT_DOOR_STATUS = frozenset({502, 503, 504})
TRICKLE_CHUNK = 64
HUGE_CHUNK = b"x" * 65536  # what the huge-line and huge-result faults are written in
STREAM_TICK_S = 0.02
STREAM_MAX_IDLE_S = 0.25  # a stream re-checks at least this often even when nothing is due to change

PER_REQUEST_PATH = re.compile(
    r"^/(?P<app>[^/]+/[^/]+)/requests/(?P<rid>[^/]+)(?P<tail>/status/stream|/status|/cancel)?/?$"
)
FILE_PATH = re.compile(r"^/files/(?P<rid>[^/]+)/(?P<index>\d+)\.(?P<ext>[a-z0-9]+)$")
UPLOAD_PATH = re.compile(r"^/files/uploads/(?P<key>[^/]+/[^/]+)$")


@dataclass
class RecordedRequest:
    """One HTTP request the fake received (control endpoints excluded).

    `kind` is one of submit, status, stream, result, cancel, file, token, upload, balance, unknown.
    `outcome` is "accepted" (a submit that created a job), "ok", "error" (an ordinary 4xx/5xx),
    "unauthorized", "fault" (an injected status code) or "dropped" (closed with no answer).
    `time` is `time.monotonic()` at arrival; `connection` the client's end of the TCP connection it came on
    ("host:port"), so a test can tell which of its requests shared a connection.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    time: float
    kind: str = "unknown"
    status: int | None = None
    outcome: str = ""
    request_id: str | None = None
    connection: str = ""

    @property
    def has_authorization(self) -> bool:
        return "authorization" in self.headers


_SERVICE_KINDS = {"/storage/auth/token": "token", "/billing/user_balance": "balance", "/files/upload": "upload"}


def classify(method: str, path: str) -> tuple[str, str | None]:
    """What a request is (`RecordedRequest.kind`) and which job it is about, from its method and path alone, so it
    is recorded whole as it arrives."""
    if path in _SERVICE_KINDS:
        return _SERVICE_KINDS[path], None
    if path.startswith("/files/"):
        match = FILE_PATH.match(path)
        return "file", match["rid"] if match else None
    match = PER_REQUEST_PATH.match(path)
    if match:
        tail = {"": "result", "/status": "status", "/status/stream": "stream", "/cancel": "cancel"}
        return tail[match["tail"] or ""], match["rid"]
    return ("submit" if method == "POST" else "unknown"), None


def _unrecorded() -> RecordedRequest:
    return RecordedRequest("", "", {}, b"", None, 0.0)


def _front_door_page(code: int) -> bytes:
    phrase = _phrase(code)
    return (
        f"<html><head><title>{code} {phrase}</title></head>"
        f"<body><center><h1>{code} {phrase}</h1></center><hr><center>nginx</center></body></html>"
    ).encode()


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # hundreds of clients connecting at once must not overflow the backlog

    def __init__(self, address: tuple[str, int], fake: FakeFal) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) or self.fake._stopping.is_set():
            return
        self.fake._warn(f"connection from {client_address} failed: {exc!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server
    rec: RecordedRequest

    # ---- plumbing ----------------------------------------------------------------------

    @property
    def fake(self) -> FakeFal:
        return self.server.fake

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, add=False)

    def handle_one_request(self) -> None:
        self.rec = _unrecorded()  # replaced in _dispatch; absorbs send_error() on malformed requests
        self._answered = False
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        if self.fake.verbose:
            sys.stderr.write(f"[fake_fal] {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        self.rec.status = code
        if not self.rec.outcome:
            self.rec.outcome = "ok" if code < 400 else "error"
        self.fake._saw()
        super().send_response(code, message)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query)
        control = path.startswith("/_fake/")
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send_json(400, {"detail": "Bad request body"})
            return
        kind, request_id = ("control", None) if control else classify(self.command, path)
        self.rec = self.fake._record(self, body, store=not control, kind=kind, request_id=request_id)
        try:
            if control:
                self._control(path, body)
            else:
                self._route(path, query, body)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # never let a handler kill the server
            if not self.fake._stopping.is_set():
                self.fake._warn(f"{self.command} {self.path} failed: {type(exc).__name__}: {exc}")
            self.close_connection = True
            if not self._answered:
                with contextlib.suppress(OSError):
                    self._send_json(500, {"detail": f"fake_fal internal error: {type(exc).__name__}"})

    def _send_bytes(
        self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, code: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(code, json.dumps(data).encode(), "application/json", headers)

    def _send_fault(self, code: int, request_id: str | None = None, *, keep_id: bool = False) -> None:
        """An injected error answer: for 502/503/504 a front-door HTML page without the request id
        (unless `keep_id`), else fal-style JSON with it."""
        self.rec.outcome = "fault"
        headers: dict[str, str] = {}
        retry_after = self.fake.faults.retry_after
        if code in (429, 503) and retry_after is not None:
            headers["Retry-After"] = retry_after
        elif code == 429:
            headers["Retry-After"] = "0"
        if request_id and (keep_id or code not in FRONT_DOOR_STATUS):
            headers["x-fal-request-id"] = request_id
        if code in FRONT_DOOR_STATUS:
            self._send_bytes(code, _front_door_page(code), "text/html; charset=utf-8", headers)
            return
        detail = "Invalid or missing API key" if code in (401, 403) else f"{_phrase(code)} (injected fault)"
        self._send_json(code, {"detail": detail}, headers)

    def _drop(self) -> None:
        """Close the connection without any answer."""
        self.rec.outcome = "dropped"
        self.fake._saw()
        self.close_connection = True
        self._answered = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _authorized(self) -> bool:
        scheme, _, key = self.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        accepted = self.fake.accepted_keys
        if scheme.lower() == "key" and key and (accepted is None or key in accepted):
            return True
        self.rec.outcome = "unauthorized"
        self._send_json(401, {"detail": "Invalid or missing API key"})
        return False

    def _method_not_allowed(self) -> None:
        self._send_json(405, {"detail": "Method Not Allowed"})

    # ---- routing -----------------------------------------------------------------------

    def _route(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        if path == "/storage/auth/token":
            return self._storage_token() if self.command == "POST" else self._method_not_allowed()
        if path == "/billing/user_balance":
            return self._balance() if self.command == "GET" else self._method_not_allowed()
        if path == "/files/upload":
            return self._upload(body) if self.command == "POST" else self._method_not_allowed()
        if path.startswith("/files/"):
            return self._file(path) if self.command == "GET" else self._method_not_allowed()
        match = PER_REQUEST_PATH.match(path)
        if match:
            return self._per_request(match["app"], match["rid"], query)
        if self.command == "POST":
            return self._submit(path.strip("/"), body)
        self._send_json(404, {"detail": "Not Found"})

    def _submit(self, endpoint: str, body: bytes) -> None:
        fake = self.fake
        known = endpoint in ENDPOINTS or endpoint in VIDEO_ENDPOINTS
        if known:
            drop, code = fake._take_fault("submit_drop_connection", "submit_status")
            if drop:
                return self._drop()
            if code is not None:
                return self._send_fault(code)
        if not self._authorized():
            return
        if not known:
            return self._send_json(404, {"detail": f"Application '{endpoint}' not found"})
        if self.rec.json is None:
            detail = [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]
            return self._send_json(422, {"detail": detail})
        if endpoint in VIDEO_ENDPOINTS:
            args, errors = validate_video_arguments(endpoint, self.rec.json)
            shape = None if errors else fake._video_input_shape(args)
            errors = errors or check_input_video(endpoint, shape)
        else:
            args, errors = validate_arguments(endpoint, self.rec.json)
        if errors:
            return self._send_json(422, {"detail": errors})
        video = endpoint in VIDEO_ENDPOINTS
        price = billed_video_price(endpoint, args, shape) if video else billed_price(endpoint, args)
        if not fake._pay(price):
            return self._send_json(403, {"detail": EXHAUSTED_BALANCE_MESSAGE})
        if video:
            job = fake._create_video_job(endpoint, args, shape, self.rec)
        else:
            job = fake._create_job(endpoint, args, self.rec)
        if job.error_type == FILE_DOWNLOAD_ERROR:
            fake._refund(price)  # fal bills no request it refused for its input
        rid = job.request_id
        faults = fake.faults
        accept_then, delay = faults.submit_accept_then_status, faults.submit_delay
        base = f"{fake.foreign_url}/{job.app}/requests/{rid}" if faults.foreign_urls else fake._response_url(job)
        if delay and fake._stopping.wait(delay):  # the job exists; only the answer is late
            self.close_connection = True
            return
        if accept_then is not None:
            return self._send_fault(accept_then, rid, keep_id=True)
        position = 0  # as before, unless there is an account queue to be in
        with fake._lock:
            if fake._queue.limited:
                position = fake._queue.advance(job)[1] or 0
        self._send_json(
            200,
            {
                "request_id": rid,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "queue_position": position,
            },
            {"x-fal-request-id": rid},
        )

    def _per_request(self, app: str, rid: str, query: dict[str, list[str]]) -> None:
        fake = self.fake
        kind = self.rec.kind  # result, status, stream or cancel (`classify`)
        if self.command != ("PUT" if kind == "cancel" else "GET"):
            return self._method_not_allowed()
        if kind in ("status", "stream"):
            drop, code = fake._take_fault("status_drop_connection", "status_status")
            if drop:
                return self._drop()
        else:
            code = fake._take_fault(None, f"{kind}_status")[1]
        if code is not None:
            return self._send_fault(code, rid)
        if kind == "stream" and fake.faults.stream_unavailable:
            return self._send_json(404, {"detail": "Not Found"})
        if not self._authorized():
            return
        job = fake.jobs.get(rid)
        if job is None or job.app != app:
            return self._send_json(404, {"detail": f"Request {rid} not found"}, {"x-fal-request-id": rid})
        with_logs = query.get("logs", ["0"])[-1].lower() in ("1", "true", "yes")
        if kind == "status":
            self._send_json(200, fake._status_body(job, with_logs=with_logs), {"x-fal-request-id": rid})
        elif kind == "stream":
            self._stream(job, with_logs)
        elif kind == "cancel":
            self._cancel(job)
        else:
            self._result(job)

    def _stream(self, job: Job, with_logs: bool) -> None:
        fake = self.fake
        cut = fake._take_fault("stream_cut", None)[0]
        with fake._lock:
            fake.open_streams += 1
            fake.max_open_streams = max(fake.max_open_streams, fake.open_streams)
            fake._seen.notify_all()
        try:
            self._stream_events(job, with_logs, cut)
        finally:
            with fake._lock:
                fake.open_streams -= 1
                fake._seen.notify_all()

    def _stream_events(self, job: Job, with_logs: bool, cut: bool) -> None:
        """The status is checked on a 20 ms tick (`STREAM_TICK_S`) from the stream's start, but a tick
        is only acted on when something can have changed by then (the job's or the account queue's
        next event, its next log line, a ping due, a cancel or reset), or `STREAM_MAX_IDLE_S` passed:
        hundreds of idle streams cost next to nothing, and changes are seen exactly as before."""
        fake = self.fake
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("x-fal-request-id", job.request_id)
        self.end_headers()
        last_payload = ""
        pings_only, huge = fake.faults.stream_pings_only, fake.faults.stream_huge_line
        opened = last_write = time.monotonic()
        while not fake._stopping.is_set():
            with fake._lock:
                status = fake._status_body(job, with_logs=with_logs)
                version = fake._version
                change_at = fake._queue.next_change(job, with_logs, time.monotonic())
            payload = json.dumps(status)
            final = status["status"] == COMPLETED
            if payload != last_payload:
                if cut and final:
                    return  # a cut stream never delivers COMPLETED
                self.wfile.write(f"data: {payload}\n\n".encode())
                last_payload, last_write = payload, time.monotonic()
                if final:
                    return
                if pings_only:
                    while not fake._stopping.wait(fake.heartbeat_interval):
                        self.wfile.write(b": ping\n\n")
                    return
                if huge is not None:
                    self.wfile.write(b"data: ")
                    self._write_huge(huge)
                    self.wfile.write(b"\n\n")
                    huge = None
            elif time.monotonic() - last_write >= fake.heartbeat_interval:
                self.wfile.write(b": ping\n\n")
                last_write = time.monotonic()
            if cut and last_payload:
                return
            now = time.monotonic()
            due = min(change_at, last_write + fake.heartbeat_interval, now + STREAM_MAX_IDLE_S)
            ticks = max(math.floor((now - opened) / STREAM_TICK_S) + 1, math.ceil((due - opened) / STREAM_TICK_S))
            wake = opened + ticks * STREAM_TICK_S
            with fake._lock:
                if fake._version == version and not fake._stopping.is_set():
                    fake._changed.wait(max(0.0, wake - time.monotonic()))

    def _cancel(self, job: Job) -> None:
        rid = job.request_id
        accepted = self.fake._cancel_job(job)
        if accepted:
            self._send_json(202, {"status": "CANCELLATION_REQUESTED"}, {"x-fal-request-id": rid})
        else:
            self._send_json(400, {"status": "ALREADY_COMPLETED"}, {"x-fal-request-id": rid})

    def _result(self, job: Job) -> None:
        fake = self.fake
        rid = job.request_id
        headers = {"x-fal-request-id": rid}
        raw = fake.faults.result_body
        if raw is not None:
            content_type = "text/html; charset=utf-8" if raw.lstrip()[:1] == b"<" else "application/json"
            return self._send_result(raw, content_type, headers)
        with fake._lock:
            state, _ = fake._queue.advance(job)
        if state != COMPLETED:
            return self._send_json(400, {"detail": "Request is still in progress"}, headers)
        if job.failed:
            message = job.error or job.error_type or "Request failed"
            if job.error_type in CONTENT_POLICY_TYPES:
                detail = [{"loc": ["body", "prompt"], "msg": message, "type": job.error_type}]
                return self._send_json(422, {"detail": detail}, headers)
            if job.error_type == FILE_DOWNLOAD_ERROR:
                detail = [{"loc": ["body", job.error_field], "msg": message, "type": job.error_type,
                           "url": "https://docs.fal.ai/errors#file_download_error"}]
                return self._send_json(422, {"detail": detail}, headers)
            if job.cancelled:
                return self._send_json(400, {"detail": message}, headers)
            return self._send_json(500, {"detail": message}, headers)
        body = json.dumps(fake._result_body(job)).encode()
        huge = fake.faults.result_huge
        if huge is None:
            return self._send_result(body, "application/json", headers)
        self.close_connection = True  # no Content-Length: the body ends when the connection closes
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body[:-1] + b', "padding": "')
        self._write_huge(huge)
        self.wfile.write(b'"}')

    def _write_huge(self, size: int) -> None:
        """`size` bytes of "x", from one shared chunk (the fake holds no copy of them)."""
        chunk = memoryview(HUGE_CHUNK)
        for start in range(0, size, len(HUGE_CHUNK)):
            self.wfile.write(chunk[: min(len(HUGE_CHUNK), size - start)])

    def _send_result(self, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        """A 200 result, trickled one byte per `result_trickle` seconds when that fault is set."""
        fake = self.fake
        delay = fake.faults.result_trickle
        if delay is None:
            return self._send_bytes(200, body, content_type, headers)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        for index in range(len(body)):
            if index and fake._stopping.wait(delay):
                self.close_connection = True
                return
            self.wfile.write(body[index : index + 1])

    def _file(self, path: str) -> None:
        fake = self.fake
        upload = UPLOAD_PATH.match(path)
        if upload:
            with fake._lock:
                stored = fake._files.get(upload["key"])
            if stored is None:
                return self._send_json(404, {"detail": "Not Found"})
            return self._send_bytes(200, stored[1], stored[0])
        match = FILE_PATH.match(path)
        if match is None:
            return self._send_json(404, {"detail": "Not Found"})
        rid, index = match["rid"], int(match["index"])
        code = fake._take_fault(None, "image_status")[1]
        if code is not None:
            return self._send_fault(code)
        faults = dataclasses.replace(fake.faults)  # a snapshot; lists are shared but unused below
        if faults.image_404:
            return self._send_json(404, {"detail": "Not Found"})
        if faults.image_redirect_loop:
            return self._send_bytes(302, b"", "text/plain", {"Location": f"{fake.url}{path}"})
        if faults.image_redirect_to:
            return self._send_bytes(302, b"", "text/plain", {"Location": faults.image_redirect_to})
        job = fake.job_file_owner(rid, index, match["ext"])
        if job is None:
            return self._send_json(404, {"detail": "Not Found"})
        latency = faults.cdn_latency if faults.cdn_latency is not None else fake.cdn_latency
        if latency > 0 and fake._stopping.wait(latency):
            self.close_connection = True
            return
        if faults.image_bomb:
            data, content_type = bomb_png(), "image/png"
        elif faults.image_corrupt:
            data, content_type = corrupt_bytes(index), "image/jpeg"
        elif job.video is not None:
            data, content_type = job.video.data(), job.content_type
        else:
            width, height = job.image_size(index)
            data = render_image(width, height, job.output_format, index, faults.photo_like_images)
            content_type = job.content_type
        if faults.image_wrong_content_type:
            content_type = "text/html; charset=utf-8"
        if faults.file_chunked:
            return self._send_chunked(data, content_type)
        if not (faults.image_truncate or faults.image_trickle):
            return self._send_bytes(200, data, content_type)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if faults.image_truncate:
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        delay = float(faults.image_trickle or 0.0)
        for start in range(0, len(data), TRICKLE_CHUNK):
            if start and fake._stopping.wait(delay):
                self.close_connection = True
                return
            self.wfile.write(data[start : start + TRICKLE_CHUNK])

    def _send_chunked(self, data: bytes, content_type: str) -> None:
        """A 200 answer in chunked transfer encoding (no Content-Length)."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(data), 65536):
            chunk = data[start : start + 65536]
            self.wfile.write(f"{len(chunk):X}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _storage_token(self) -> None:
        if not self._authorized():
            return
        token = self.fake._issue_token()
        expires = datetime.now(timezone.utc) + timedelta(hours=1)
        self._send_json(
            200,
            {
                "token": token,
                "token_type": "Bearer",
                "base_url": self.fake.url,
                "expires_at": expires.isoformat(),
            },
        )

    def _balance(self) -> None:
        fake = self.fake
        code = fake._take_fault(None, "balance_status")[1]
        if code is not None:
            return self._send_fault(code)
        if not self._authorized():
            return
        delay, body = fake.faults.balance_delay, fake.faults.balance_body
        if delay and fake._stopping.wait(delay):
            self.close_connection = True
            return
        if body is not None:
            return self._send_bytes(200, body.encode(), "application/json")
        with fake._lock:
            balance = fake.balance_usd
        self._send_json(200, round(balance, 6))

    def _upload(self, body: bytes) -> None:
        fake = self.fake
        code = fake._take_fault(None, "upload_status")[1]
        if code is not None:
            return self._send_fault(code)
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        with fake._lock:
            valid = scheme.lower() == "bearer" and token.strip() in fake._tokens
        if not valid:
            self.rec.outcome = "unauthorized"
            return self._send_json(401, {"detail": "Invalid or missing upload token"})
        name = self.headers.get("X-Fal-File-Name", "").replace("\\", "/").rsplit("/", 1)[-1] or "upload.bin"
        content_type = self.headers.get("Content-Type") or "application/octet-stream"
        access_url = fake._store_upload(name, content_type, body)
        self._send_json(
            200,
            {
                "access_url": access_url,
                "file_name": name,
                "content_type": content_type,
                "file_size": len(body),
            },
        )

    # ---- control endpoints ---------------------------------------------------------------

    def _control(self, path: str, body: bytes) -> None:
        fake = self.fake
        if path == "/_fake/faults" and self.command == "GET":
            return self._send_json(200, fake.faults.to_json())
        if path == "/_fake/faults" and self.command == "POST":
            try:
                values = json.loads(body or b"{}")
                if not isinstance(values, dict):
                    raise ValueError("the body must be a JSON object")
                with fake._lock:
                    fake.faults.update(values)
            except ValueError as exc:
                return self._send_json(400, {"detail": str(exc)})
            return self._send_json(200, fake.faults.to_json())
        if path == "/_fake/reset" and self.command == "POST":
            fake.reset()
            return self._send_json(200, {"ok": True})
        if path == "/_fake/log" and self.command == "GET":
            return self._send_json(200, fake.log_json())
        self._send_json(404, {"detail": "Not Found"})
