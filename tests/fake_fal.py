"""A fake fal.ai queue server for the xAI Grok Imagine image endpoints.

It is a real HTTP/1.1 server on 127.0.0.1 (stdlib `ThreadingHTTPServer`, keep-alive, one daemon
thread per connection) so the pack's real `httpx` client can talk to it through
`FAL_QUEUE_BASE_URL` / `FAL_REST_BASE_URL`. Used by the pytest suite, the benchmark and
end-to-end runs.

Library use::

    with FakeFal(accepted_keys={"k"}, run_time=0.1) as fake:
        os.environ["FAL_QUEUE_BASE_URL"] = fake.url
        fake.faults.status_status = [503]
        ...
        assert len(fake.submits) == 1

Script use (until SIGTERM / Ctrl-C; prints ``FAKE_FAL_URL=http://127.0.0.1:PORT`` once listening)::

    python tests/fake_fal.py --port 8765 [--key K ...] [--queue-time S] [--run-time S] [--cdn-latency S]

Protocol (mirrors fal's queue API)
----------------------------------
Queue requests need ``Authorization: Key <key>`` (any non-empty key unless `accepted_keys` is
given); otherwise 401 ``{"detail": "Invalid or missing API key"}``.

``POST /{endpoint}``
    Submit. Endpoints: ``xai/grok-imagine-image``, ``xai/grok-imagine-image/quality/text-to-image``,
    ``xai/grok-imagine-image/edit``, ``xai/grok-imagine-image/quality/edit``; others give 404.
    The body is validated (422 ``{"detail": [{"loc": ["body", FIELD], "msg", "type"}]}``):
    ``prompt`` (required, non-blank), ``num_images`` 1..4, ``aspect_ratio`` (see
    `ASPECT_RATIOS`; the edit endpoints also accept ``auto``, their default), ``resolution``
    1k|2k, ``output_format`` jpeg|png|webp, ``sync_mode`` bool, and on the edit endpoints
    ``image_urls`` (1..3 http(s) URLs or data URIs). Any other field is refused with type
    ``extra_forbidden`` (stricter than fal on purpose, so stray fields are caught).
    200 answer: ``{request_id, response_url, status_url, cancel_url, queue_position}``; request
    URLs use only ``owner/app`` (``xai/grok-imagine-image/requests/ID``) like fal does.
``GET  .../requests/ID/status[?logs=1]``
    ``{"status": "IN_QUEUE"|"IN_PROGRESS"|"COMPLETED", ...}`` with ``queue_position`` while
    queued, ``logs`` (null unless logs=1), ``metrics`` and, for failed jobs, ``error`` and
    ``error_type``. Unknown ids give 404.
``GET  .../requests/ID/status/stream[?logs=1]``
    Server-sent events: ``data: <status json>`` at once and on every change (checked every
    20 ms), ``: ping`` about once a second, and the connection closes after COMPLETED.
``GET  .../requests/ID``
    The result: 400 while running; ``{"images": [{url, content_type, file_name, width,
    height}], "revised_prompt": "Revised: <prompt>"}``; a content-policy failure gives 422 with
    ``type: content_policy_violation``, a cancelled job 400, another failure 500.
``PUT  .../requests/ID/cancel``
    202 ``{"status": "CANCELLATION_REQUESTED"}`` (the job completes with error "Request
    cancelled") or 400 ``{"status": "ALREADY_COMPLETED"}``.
``GET  /files/ID/N.ext``
    Result image N of a job, no auth (whether one was sent is recorded). Images are real
    Pillow images of `fake_image_size` in the requested format; pixel (0, 0) has red channel
    ``40 * N + 20`` (`index_colour`), so order is checkable. Sync-mode results carry data URIs.
``POST /storage/auth/token?storage_type=fal-cdn-v3`` (Key auth)
    ``{"token", "token_type": "Bearer", "base_url", "expires_at"}``.
``POST /files/upload`` (``Authorization: Bearer <token>``, raw body, ``Content-Type``,
``X-Fal-File-Name``)
    ``{"access_url": BASE/files/uploads/<uuid>/<name>}``, which then serves the bytes.

A job is IN_QUEUE for `queue_time` seconds after its submit (queue_position = remaining
seconds * 2), IN_PROGRESS for `run_time` seconds (logs "Generating image i/N" as it goes), then
COMPLETED. `fake_image_size` is a fixed table: at 1k the sizes xAI documents for Grok Imagine
(as listed by Runware's model page, which serves the same xAI model), at 2k each side doubled (an
assumption: no published 2k table was found)::

    ratio    1k           2k            ratio    1k           2k
    2:1      1408 x 704   2816 x 1408   1:2      704 x 1408   1408 x 2816
    20:9     1280 x 576   2560 x 1152   9:20     576 x 1280   1152 x 2560
    19.5:9   1248 x 576   2496 x 1152   9:19.5   576 x 1248   1152 x 2496
    16:9     1408 x 768   2816 x 1536   9:16     768 x 1408   1536 x 2816
    4:3      1280 x 896   2560 x 1792   3:4      896 x 1280   1792 x 2560
    3:2      1296 x 864   2592 x 1728   2:3      864 x 1296   1728 x 2592
    1:1      1024 x 1024  2048 x 2048   auto     square, but a job uses its first input
                                                 image's shape when it can read it (the longer
                                                 side 1024 or 2048, the other rounded to 8)

Faults (`Faults`, all off by default; mutable at any time)
----------------------------------------------------------
Lists of status codes are consumed one per matching request (pop front). 429 answers carry
``Retry-After: 0``; 502/503/504 answers look like a front door (HTML, no ``x-fal-request-id``).
Job-shaping faults (``never_complete``, ``stuck_in_queue``, errors, ``mixed_sizes``,
``run_time``/``queue_time``) are copied into the `Job` at submit time; the others act when a
request arrives.

- ``submit_status``: answer the next submits with these codes, creating no job.
- ``submit_accept_then_status``: create the job but answer with this code (and the request id)
  for every submit while set: "fal accepted it but the answer was lost".
- ``submit_drop_connection``: the next N submits are read, then the connection is closed with no
  answer and no job.
- ``status_status`` / ``status_drop_connection``: the same for status and stream requests.
- ``stream_unavailable``: the stream endpoint answers 404 (clients must poll).
- ``stream_cut``: the next N streams send one non-final event and then close.
- ``result_status``, ``image_status``, ``cancel_status``, ``upload_status``: codes for the next
  result / image / cancel / upload requests.
- ``never_complete`` / ``stuck_in_queue``: jobs stay IN_PROGRESS / IN_QUEUE (until cancelled or
  `FakeFal.complete_job`).
- ``complete_with_error`` (+ ``complete_error_type``): jobs complete with this error.
- ``content_policy``: jobs complete with a ``content_policy_violation`` error.
- ``result_body``: the result answers 200 with these raw bytes.
- ``result_images_override``: the result's ``images`` list is replaced by this one.
- ``image_404``, ``image_redirect_loop`` (302 to itself), ``image_trickle`` (seconds between
  64-byte chunks), ``image_truncate`` (half the declared body, then close), ``image_corrupt``
  (non-image bytes as image/jpeg), ``image_bomb`` (a small PNG declaring 30000 x 30000),
  ``image_wrong_content_type`` (a valid image as text/html), ``mixed_sizes`` (image N > 0 is
  ``64 * N`` pixels narrower than image 0).
- ``run_time``, ``queue_time``, ``cdn_latency``: override the server's settings when not None.

Control endpoints (no auth, never recorded): ``POST /_fake/faults`` (JSON object of fault
fields to set), ``GET /_fake/faults``, ``POST /_fake/reset``, ``GET /_fake/log``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import io
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from PIL import Image

__all__ = [
    "APP",
    "ASPECT_RATIOS",
    "CONTENT_POLICY_MESSAGE",
    "EDIT_ENDPOINTS",
    "ENDPOINTS",
    "TEXT_ENDPOINTS",
    "FakeFal",
    "Faults",
    "Job",
    "RecordedRequest",
    "fake_image_size",
    "index_colour",
    "index_from_colour",
    "render_image",
]

APP = "xai/grok-imagine-image"
TEXT_ENDPOINTS = (APP, f"{APP}/quality/text-to-image")
EDIT_ENDPOINTS = (f"{APP}/edit", f"{APP}/quality/edit")
ENDPOINTS = TEXT_ENDPOINTS + EDIT_ENDPOINTS

_LANDSCAPE = ("2:1", "20:9", "19.5:9", "16:9", "4:3", "3:2")
ASPECT_RATIOS = (*_LANDSCAPE, "1:1", "2:3", "3:4", "9:16", "9:19.5", "9:20", "1:2")
RESOLUTIONS = ("1k", "2k")
OUTPUT_FORMATS = ("jpeg", "png", "webp")
LONG_SIDE = {"1k": 1024, "2k": 2048}
MAX_NUM_IMAGES = 4
MAX_IMAGE_URLS = 3

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
CONTENT_POLICY_TYPES = frozenset({"content_policy_violation", "content_moderation", "nsfw"})
CONTENT_POLICY_MESSAGE = (
    "The content could not be processed because it contained material flagged by a content checker."
)
CANCELLED_MESSAGE = "Request cancelled"
FRONT_DOOR_STATUS = frozenset({502, 503, 504})
BOMB_SIDE = 30000
TRICKLE_CHUNK = 64
STREAM_TICK_S = 0.02

IN_QUEUE, IN_PROGRESS, COMPLETED = "IN_QUEUE", "IN_PROGRESS", "COMPLETED"

_PER_REQUEST_PATH = re.compile(
    r"^/(?P<app>[^/]+/[^/]+)/requests/(?P<rid>[^/]+)(?P<tail>/status/stream|/status|/cancel)?/?$"
)
_FILE_PATH = re.compile(r"^/files/(?P<rid>[^/]+)/(?P<index>\d+)\.(?P<ext>[a-z]+)$")
_UPLOAD_PATH = re.compile(r"^/files/uploads/(?P<key>[^/]+/[^/]+)$")


# --------------------------------------------------------------------------------------------
# Image sizes and pixels
# --------------------------------------------------------------------------------------------


def _round8(value: float) -> int:
    return max(8, 8 * int(value / 8 + 0.5))


def size_for_shape(width: float, height: float, resolution: str) -> tuple[int, int]:
    """(width, height) of an image of shape `width:height` at `resolution` (the table's rule)."""
    long_side = LONG_SIDE[resolution]
    if width >= height:
        return long_side, _round8(long_side * height / width)
    return _round8(long_side * width / height), long_side


SIZES_1K = {
    "2:1": (1408, 704), "20:9": (1280, 576), "19.5:9": (1248, 576), "16:9": (1408, 768), "4:3": (1280, 896),
    "3:2": (1296, 864), "1:1": (1024, 1024),
}


def fake_image_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """(width, height) the fake generates; see the table in the module docstring.

    "auto" gives a square here; a job with "auto" uses its first input image's shape when the
    fake can read it (a data URI or a file uploaded to the fake).
    """
    if resolution not in LONG_SIDE:
        raise ValueError(f"unknown resolution {resolution!r}")
    if aspect_ratio == "auto":
        return LONG_SIDE[resolution], LONG_SIDE[resolution]
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r}")
    width, _, height = aspect_ratio.partition(":")
    landscape = SIZES_1K.get(aspect_ratio) or SIZES_1K[f"{height}:{width}"][::-1]
    scale = 2 if resolution == "2k" else 1
    return landscape[0] * scale, landscape[1] * scale


def index_colour(index: int) -> tuple[int, int, int]:
    """RGB of the top half of image `index` (so of pixel (0, 0)): red encodes the index."""
    return (40 * index + 20) % 256, 96, (200 - 40 * index) % 256


def index_from_colour(red: int) -> int:
    """The image index whose pixel (0, 0) has this red value (tolerant of JPEG noise)."""
    return round((red - 20) / 40)


_image_cache: dict[tuple[int, int, str, int], bytes] = {}
_image_cache_lock = threading.Lock()
_bomb_cache: list[bytes] = []


def render_image(width: int, height: int, output_format: str, index: int) -> bytes:
    """Encoded image N: top half solid `index_colour(N)`, bottom half a green ramp. Cached."""
    key = (width, height, output_format, index)
    with _image_cache_lock:
        cached = _image_cache.get(key)
        if cached is None:
            red, green, blue = index_colour(index)
            image = Image.new("RGB", (width, height), (red, green, blue))
            top = height // 2
            if height - top > 0:
                band_size = (width, height - top)
                ramp = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(band_size)
                band = Image.merge(
                    "RGB", (Image.new("L", band_size, red), ramp, Image.new("L", band_size, blue))
                )
                image.paste(band, (0, top))
            buffer = io.BytesIO()
            if output_format == "jpeg":
                image.save(buffer, "JPEG", quality=90)
            elif output_format == "png":
                image.save(buffer, "PNG", compress_level=1)
            elif output_format == "webp":
                image.save(buffer, "WEBP", quality=85)
            else:
                raise ValueError(f"unknown output format {output_format!r}")
            cached = _image_cache[key] = buffer.getvalue()
    return cached


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit greyscale PNG of side x side pixels (about 110 KB for 30000). Cached."""
    with _image_cache_lock:
        if not _bomb_cache or side != BOMB_SIDE:
            row = b"\x00" + bytes((side + 7) // 8)  # filter byte + one row of black pixels
            compressor = zlib.compressobj(6)
            block = row * 256
            parts = [compressor.compress(block) for _ in range(side // 256)]
            parts += [compressor.compress(row * (side % 256)), compressor.flush()]
            ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
            png = (
                b"\x89PNG\r\n\x1a\n"
                + _png_chunk(b"IHDR", ihdr)
                + _png_chunk(b"IDAT", b"".join(parts))
                + _png_chunk(b"IEND", b"")
            )
            if side != BOMB_SIDE:
                return png
            _bomb_cache.append(png)
        return _bomb_cache[0]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unrecorded() -> RecordedRequest:
    return RecordedRequest("", "", {}, b"", None, 0.0)


def _corrupt_bytes(index: int) -> bytes:
    return b"NOT AN IMAGE\n" + random.Random(index).randbytes(2048)


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One HTTP request the fake received (control endpoints excluded).

    `kind` is one of submit, status, stream, result, cancel, file, token, upload, unknown.
    `outcome` is "accepted" (a submit that created a job), "ok", "error" (an ordinary 4xx/5xx),
    "unauthorized", "fault" (an injected status code) or "dropped" (closed with no answer).
    `time` is `time.monotonic()` at arrival.
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

    @property
    def has_authorization(self) -> bool:
        return "authorization" in self.headers


@dataclass
class Faults:
    """Misbehaviour to inject; see the module docstring. All off by default."""

    submit_status: list[int] = field(default_factory=list)
    submit_accept_then_status: int | None = None
    submit_drop_connection: int = 0
    status_status: list[int] = field(default_factory=list)
    status_drop_connection: int = 0
    stream_unavailable: bool = False
    stream_cut: int = 0
    result_status: list[int] = field(default_factory=list)
    image_status: list[int] = field(default_factory=list)
    cancel_status: list[int] = field(default_factory=list)
    upload_status: list[int] = field(default_factory=list)
    never_complete: bool = False
    stuck_in_queue: bool = False
    complete_with_error: str | None = None
    complete_error_type: str | None = None
    content_policy: bool = False
    result_body: bytes | None = None
    result_images_override: list[Any] | None = None
    image_404: bool = False
    image_redirect_loop: bool = False
    image_trickle: float | None = None
    image_truncate: bool = False
    image_corrupt: bool = False
    image_bomb: bool = False
    image_wrong_content_type: bool = False
    mixed_sizes: bool = False
    run_time: float | None = None
    queue_time: float | None = None
    cdn_latency: float | None = None

    def clear(self) -> None:
        """Back to all-off, in place (so references held by tests stay valid)."""
        for name, value in dataclasses.asdict(Faults()).items():
            setattr(self, name, value)

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from JSON values (the control endpoint); raises ValueError on bad input.

        `result_body` may be given as a string (sent UTF-8 encoded).
        """
        defaults = Faults()
        names = {f.name for f in dataclasses.fields(self)}
        for name, value in values.items():
            if name not in names:
                raise ValueError(f"unknown fault {name!r}")
            default = getattr(defaults, name)
            if name == "result_body" and isinstance(value, str):
                value = value.encode()
            if isinstance(default, list):
                valid = isinstance(value, list) and all(_is_int(v) for v in value)
            elif isinstance(default, bool):
                valid = isinstance(value, bool)
            elif isinstance(default, int):
                valid = _is_int(value)
            elif name in ("run_time", "queue_time", "cdn_latency", "image_trickle"):
                valid = value is None or ((_is_int(value) or isinstance(value, float)) and value >= 0)
            elif name == "submit_accept_then_status":
                valid = value is None or _is_int(value)
            else:
                valid = True
            if not valid:
                raise ValueError(f"invalid value for fault {name!r}: {value!r}")
            setattr(self, name, value)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.result_body is not None:
            data["result_body"] = self.result_body.decode("utf-8", "replace")
        return data


@dataclass
class Job:
    """One accepted request. Times are `time.monotonic()` seconds; fields may be edited by tests."""

    request_id: str
    endpoint: str
    app: str
    arguments: dict[str, Any]
    prompt: str
    num_images: int
    aspect_ratio: str
    resolution: str
    output_format: str
    sync_mode: bool
    image_urls: list[str]
    size: tuple[int, int]
    submitted_at: float
    submitted_wall: float
    queue_time: float
    run_time: float
    never_complete: bool = False
    stuck_in_queue: bool = False
    mixed_sizes: bool = False
    error: str | None = None
    error_type: str | None = None
    cancelled: bool = False
    completed_at: float | None = None
    base_url: str = ""

    def result(self) -> dict[str, Any]:
        """The result JSON of a successful job (before any `result_images_override`)."""
        images: list[dict[str, Any]] = []
        for index in range(self.num_images):
            width, height = self.image_size(index)
            file_name = f"{index}.{self.extension}"
            if self.sync_mode:
                data = render_image(width, height, self.output_format, index)
                url = f"data:{self.content_type};base64,{base64.b64encode(data).decode()}"
            else:
                url = f"{self.base_url}/files/{self.request_id}/{file_name}"
            images.append(
                {
                    "url": url,
                    "content_type": self.content_type,
                    "file_name": file_name,
                    "width": width,
                    "height": height,
                }
            )
        return {"images": images, "revised_prompt": f"Revised: {self.prompt}"}

    def image_size(self, index: int) -> tuple[int, int]:
        width, height = self.size
        if self.mixed_sizes and index > 0:
            return max(64, width - 64 * index), height
        return width, height

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.output_format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.output_format]

    @property
    def failed(self) -> bool:
        return bool(self.error or self.error_type)

    def log_script(self) -> list[tuple[float, str, str]]:
        """(offset from submit, level, message) of every log line the job can emit."""
        q, r, n = self.queue_time, self.run_time, self.num_images
        lines = [(q, "INFO", f"Starting Grok Imagine: {n} image(s), {self.aspect_ratio}, {self.resolution}")]
        lines += [(q + r * i / n, "INFO", f"Generating image {i + 1}/{n}") for i in range(n)]
        if self.failed:
            lines.append((q + r, "ERROR", f"Generation failed: {self.error or self.error_type}"))
        else:
            lines.append((q + r, "INFO", f"Generated {n} image(s)"))
        return lines


# --------------------------------------------------------------------------------------------
# Input validation (pydantic-shaped errors)
# --------------------------------------------------------------------------------------------


def _literal_message(choices: tuple[str, ...]) -> str:
    quoted = [f"'{c}'" for c in choices]
    return f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"


def validate_arguments(endpoint: str, body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(normalised arguments, 422 error details) for a submit body."""
    errors: list[dict[str, Any]] = []

    def error(loc: list[Any], msg: str, type_: str) -> None:
        errors.append({"loc": ["body", *loc], "msg": msg, "type": type_})

    if not isinstance(body, dict):
        error([], "Input should be a valid dictionary or object", "model_attributes_type")
        return {}, errors
    edit = endpoint in EDIT_ENDPOINTS
    args: dict[str, Any] = {}

    prompt = body.get("prompt")
    if "prompt" not in body:
        error(["prompt"], "Field required", "missing")
    elif not isinstance(prompt, str):
        error(["prompt"], "Input should be a valid string", "string_type")
    elif not prompt.strip():
        error(["prompt"], "String should have at least 1 character", "string_too_short")
    args["prompt"] = prompt

    num_images = body.get("num_images", 1)
    if not isinstance(num_images, int) or isinstance(num_images, bool):
        error(["num_images"], "Input should be a valid integer", "int_type")
    elif num_images < 1:
        error(["num_images"], "Input should be greater than or equal to 1", "greater_than_equal")
    elif num_images > MAX_NUM_IMAGES:
        error(["num_images"], f"Input should be less than or equal to {MAX_NUM_IMAGES}", "less_than_equal")
    args["num_images"] = num_images

    ratios = ("auto", *ASPECT_RATIOS) if edit else ASPECT_RATIOS
    for name, choices, default in (
        ("aspect_ratio", ratios, "auto" if edit else "1:1"),
        ("resolution", RESOLUTIONS, "1k"),
        ("output_format", OUTPUT_FORMATS, "jpeg"),
    ):
        value = body.get(name, default)
        if value not in choices:
            error([name], _literal_message(choices), "literal_error")
        args[name] = value

    sync_mode = body.get("sync_mode", False)
    if not isinstance(sync_mode, bool):
        error(["sync_mode"], "Input should be a valid boolean", "bool_type")
    args["sync_mode"] = sync_mode

    allowed = {"prompt", "num_images", "aspect_ratio", "resolution", "output_format", "sync_mode"}
    if edit:
        allowed.add("image_urls")
        urls = body.get("image_urls")
        if "image_urls" not in body:
            error(["image_urls"], "Field required", "missing")
        elif not isinstance(urls, list):
            error(["image_urls"], "Input should be a valid list", "list_type")
        elif not urls:
            error(["image_urls"], "List should have at least 1 item after validation, not 0", "too_short")
        elif len(urls) > MAX_IMAGE_URLS:
            error(
                ["image_urls"],
                f"List should have at most {MAX_IMAGE_URLS} items after validation, not {len(urls)}",
                "too_long",
            )
        else:
            for i, url in enumerate(urls):
                if not isinstance(url, str):
                    error(["image_urls", i], "Input should be a valid string", "string_type")
                elif not url.startswith(("http://", "https://", "data:")):
                    error(
                        ["image_urls", i], "Value error, must be an http(s) URL or a data URI", "value_error"
                    )
        args["image_urls"] = urls if isinstance(urls, list) else []

    for name in body:
        if name not in allowed:
            error([name], "Extra inputs are not permitted", "extra_forbidden")
    return args, errors


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat()


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

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
    server: _Server
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
        self.rec = self.fake._record(self, body, store=not control)
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
        if code == 429:
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
            self.rec.kind = "token"
            return self._storage_token() if self.command == "POST" else self._method_not_allowed()
        if path == "/files/upload":
            self.rec.kind = "upload"
            return self._upload(body) if self.command == "POST" else self._method_not_allowed()
        if path.startswith("/files/"):
            self.rec.kind = "file"
            return self._file(path) if self.command == "GET" else self._method_not_allowed()
        match = _PER_REQUEST_PATH.match(path)
        if match:
            return self._per_request(match["app"], match["rid"], match["tail"] or "", query)
        if self.command == "POST":
            self.rec.kind = "submit"
            return self._submit(path.strip("/"), body)
        self._send_json(404, {"detail": "Not Found"})

    def _submit(self, endpoint: str, body: bytes) -> None:
        fake = self.fake
        known = endpoint in ENDPOINTS
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
        args, errors = validate_arguments(endpoint, self.rec.json)
        if errors:
            return self._send_json(422, {"detail": errors})
        job = fake._create_job(endpoint, args, self.rec)
        rid = job.request_id
        accept_then = fake.faults.submit_accept_then_status
        if accept_then is not None:
            return self._send_fault(accept_then, rid, keep_id=True)
        self._send_json(
            200,
            {
                "request_id": rid,
                "response_url": fake._response_url(job),
                "status_url": f"{fake._response_url(job)}/status",
                "cancel_url": f"{fake._response_url(job)}/cancel",
                "queue_position": 0,
            },
            {"x-fal-request-id": rid},
        )

    def _per_request(self, app: str, rid: str, tail: str, query: dict[str, list[str]]) -> None:
        fake = self.fake
        kind = {"": "result", "/status": "status", "/status/stream": "stream", "/cancel": "cancel"}[tail]
        self.rec.kind, self.rec.request_id = kind, rid
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
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("x-fal-request-id", job.request_id)
        self.end_headers()
        last_payload = ""
        last_write = time.monotonic()
        while not fake._stopping.is_set():
            status = fake._status_body(job, with_logs=with_logs)
            payload = json.dumps(status)
            final = status["status"] == COMPLETED
            if payload != last_payload:
                if cut and final:
                    return  # a cut stream never delivers COMPLETED
                self.wfile.write(f"data: {payload}\n\n".encode())
                last_payload, last_write = payload, time.monotonic()
                if final:
                    return
            elif time.monotonic() - last_write >= fake.heartbeat_interval:
                self.wfile.write(b": ping\n\n")
                last_write = time.monotonic()
            if cut and last_payload:
                return
            fake._stopping.wait(STREAM_TICK_S)

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
            return self._send_bytes(200, raw, content_type, headers)
        with fake._lock:
            state, _ = fake._advance(job)
        if state != COMPLETED:
            return self._send_json(400, {"detail": "Request is still in progress"}, headers)
        if job.failed:
            message = job.error or job.error_type or "Request failed"
            if job.error_type in CONTENT_POLICY_TYPES:
                detail = [{"loc": ["body", "prompt"], "msg": message, "type": job.error_type}]
                return self._send_json(422, {"detail": detail}, headers)
            if job.cancelled:
                return self._send_json(400, {"detail": message}, headers)
            return self._send_json(500, {"detail": message}, headers)
        self._send_json(200, fake._result_body(job), headers)

    def _file(self, path: str) -> None:
        fake = self.fake
        upload = _UPLOAD_PATH.match(path)
        if upload:
            with fake._lock:
                stored = fake._files.get(upload["key"])
            if stored is None:
                return self._send_json(404, {"detail": "Not Found"})
            return self._send_bytes(200, stored[1], stored[0])
        match = _FILE_PATH.match(path)
        if match is None:
            return self._send_json(404, {"detail": "Not Found"})
        rid, index = match["rid"], int(match["index"])
        self.rec.request_id = rid
        code = fake._take_fault(None, "image_status")[1]
        if code is not None:
            return self._send_fault(code)
        faults = dataclasses.replace(fake.faults)  # a snapshot; lists are shared but unused below
        if faults.image_404:
            return self._send_json(404, {"detail": "Not Found"})
        if faults.image_redirect_loop:
            return self._send_bytes(302, b"", "text/plain", {"Location": f"{fake.url}{self.path}"})
        job = fake.jobs.get(rid)
        if job is None or index >= job.num_images or match["ext"] != job.extension:
            return self._send_json(404, {"detail": "Not Found"})
        latency = faults.cdn_latency if faults.cdn_latency is not None else fake.cdn_latency
        if latency > 0 and fake._stopping.wait(latency):
            self.close_connection = True
            return
        if faults.image_bomb:
            data, content_type = bomb_png(), "image/png"
        elif faults.image_corrupt:
            data, content_type = _corrupt_bytes(index), "image/jpeg"
        else:
            width, height = job.image_size(index)
            data, content_type = render_image(width, height, job.output_format, index), job.content_type
        if faults.image_wrong_content_type:
            content_type = "text/html; charset=utf-8"
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
        self.rec.kind = "control"
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


# --------------------------------------------------------------------------------------------
# The server object
# --------------------------------------------------------------------------------------------


class FakeFal:
    """A fake fal queue (and storage) server on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        *,
        accepted_keys: set[str] | None = None,
        queue_time: float = 0.0,
        run_time: float = 0.05,
        cdn_latency: float = 0.0,
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.accepted_keys = set(accepted_keys) if accepted_keys is not None else None
        self.queue_time = queue_time
        self.run_time = run_time
        self.cdn_latency = cdn_latency
        self.verbose = verbose
        self.heartbeat_interval = 1.0
        self.requests: list[RecordedRequest] = []
        self.submits: list[RecordedRequest] = []
        self.cancels: list[str] = []
        self.uploads: list[dict[str, Any]] = []
        self.jobs: dict[str, Job] = {}
        self.faults = Faults()
        self._port = port
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._files: dict[str, tuple[str, bytes]] = {}
        self._tokens: set[str] = set()
        self._server: _Server | None = None
        self._base_url: str | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeFal:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self._port), self)
        self._port = self._server.server_address[1]
        self._base_url = f"http://127.0.0.1:{self._port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-fal", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeFal:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL, for both `FAL_QUEUE_BASE_URL` and `FAL_REST_BASE_URL` (set by start())."""
        if self._base_url is None:
            raise RuntimeError("FakeFal has not been started; call start() first")
        return self._base_url

    # ---- public helpers -------------------------------------------------------------------

    def reset(self) -> None:
        """Clear the logs, jobs, uploaded files and faults (issued upload tokens stay valid)."""
        with self._lock:
            self.requests.clear()
            self.submits.clear()
            self.cancels.clear()
            self.uploads.clear()
            self.jobs.clear()
            self._files.clear()
            self.faults.clear()

    @property
    def accepted_submits(self) -> list[RecordedRequest]:
        """The submits that created a job (a copy of `submits`)."""
        with self._lock:
            return list(self.submits)

    @property
    def submit_attempts(self) -> list[RecordedRequest]:
        """Every POST that looked like a submit, accepted or not."""
        with self._lock:
            return [r for r in self.requests if r.kind == "submit"]

    def requests_of(self, kind: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind]

    def state_of(self, request_id: str) -> str:
        """The job's current status (IN_QUEUE, IN_PROGRESS or COMPLETED)."""
        with self._lock:
            return self._advance(self.jobs[request_id])[0]

    def complete_job(
        self, request_id: str, *, error: str | None = None, error_type: str | None = None
    ) -> None:
        """Complete a job now (e.g. one held by `never_complete`), optionally with an error."""
        with self._lock:
            job = self.jobs[request_id]
            if job.completed_at is None:
                job.error, job.error_type = error, error_type
                job.completed_at = time.monotonic()

    def log_json(self) -> dict[str, Any]:
        """What `GET /_fake/log` answers."""
        with self._lock:
            return {
                "submits": [r.json for r in self.submits],
                "cancels": list(self.cancels),
                "requests": [
                    {
                        "method": r.method,
                        "path": r.path,
                        "has_authorization": r.has_authorization,
                        "kind": r.kind,
                        "status": r.status,
                        "outcome": r.outcome,
                    }
                    for r in self.requests
                ],
                "uploads": list(self.uploads),
                "jobs": {rid: self._advance(job)[0] for rid, job in self.jobs.items()},
            }

    # ---- internals used by the handler ------------------------------------------------------

    def _warn(self, message: str) -> None:
        sys.stderr.write(f"[fake_fal] {message}\n")
        sys.stderr.flush()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _record(self, handler: _Handler, body: bytes, *, store: bool) -> RecordedRequest:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = RecordedRequest(
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            json=parsed,
            time=time.monotonic(),
        )
        if store:
            with self._lock:
                self.requests.append(rec)
        return rec

    def _take_fault(self, counter: str | None, codes: str | None) -> tuple[bool, int | None]:
        """(consume one `counter` drop?, pop one code from `codes`), atomically."""
        with self._lock:
            if counter and getattr(self.faults, counter) > 0:
                setattr(self.faults, counter, getattr(self.faults, counter) - 1)
                return True, None
            queue = getattr(self.faults, codes) if codes else None
            if queue:
                return False, int(queue.pop(0))
            return False, None

    def _response_url(self, job: Job) -> str:
        return f"{self.url}/{job.app}/requests/{job.request_id}"

    def _create_job(self, endpoint: str, args: dict[str, Any], rec: RecordedRequest) -> Job:
        aspect, resolution = args["aspect_ratio"], args["resolution"]
        size = fake_image_size(aspect, resolution)
        if aspect == "auto" and args["image_urls"]:
            shape = self._input_shape(args["image_urls"][0])
            if shape:
                size = size_for_shape(shape[0], shape[1], resolution)
        with self._lock:
            faults = self.faults
            error, error_type = faults.complete_with_error, faults.complete_error_type
            if faults.content_policy:
                error, error_type = CONTENT_POLICY_MESSAGE, "content_policy_violation"
            rid = str(uuid.uuid4())
            job = Job(
                request_id=rid,
                endpoint=endpoint,
                app="/".join(endpoint.split("/")[:2]),
                arguments=dict(rec.json),
                prompt=args["prompt"],
                num_images=args["num_images"],
                aspect_ratio=aspect,
                resolution=resolution,
                output_format=args["output_format"],
                sync_mode=args["sync_mode"],
                image_urls=list(args.get("image_urls") or []),
                size=size,
                submitted_at=time.monotonic(),
                submitted_wall=time.time(),
                queue_time=self.queue_time if faults.queue_time is None else float(faults.queue_time),
                run_time=self.run_time if faults.run_time is None else float(faults.run_time),
                never_complete=faults.never_complete,
                stuck_in_queue=faults.stuck_in_queue,
                mixed_sizes=faults.mixed_sizes,
                error=error,
                error_type=error_type,
                base_url=self.url,
            )
            self.jobs[rid] = job
            self.submits.append(rec)
            rec.outcome, rec.request_id = "accepted", rid
        return job

    def _input_shape(self, url: str) -> tuple[int, int] | None:
        """(width, height) of an edit input the fake can read without the network."""
        try:
            if url.startswith("data:"):
                data = base64.b64decode(url.partition(",")[2])
            else:
                prefix = f"{self.url}/files/uploads/"
                if not url.startswith(prefix):
                    return None
                with self._lock:
                    stored = self._files.get(unquote(url[len(prefix) :]))
                if stored is None:
                    return None
                data = stored[1]
            with Image.open(io.BytesIO(data)) as image:
                return image.size
        except Exception:  # any unreadable input: fall back to square
            return None

    def _advance(self, job: Job, now: float | None = None) -> tuple[str, int | None]:
        """(state, queue position) of a job now; latches completion. Call with the lock held."""
        if job.completed_at is not None:
            return COMPLETED, None
        now = time.monotonic() if now is None else now
        elapsed = now - job.submitted_at
        if job.stuck_in_queue:
            return IN_QUEUE, max(1, int(job.queue_time * 2))
        if elapsed < job.queue_time:
            return IN_QUEUE, max(0, int((job.queue_time - elapsed) * 2))
        if job.never_complete or elapsed < job.queue_time + job.run_time:
            return IN_PROGRESS, None
        job.completed_at = job.submitted_at + job.queue_time + job.run_time
        return COMPLETED, None

    def _logs(self, job: Job, now: float) -> list[dict[str, str]]:
        if job.stuck_in_queue and job.completed_at is None:
            return []
        natural = job.completed_at is not None and not job.cancelled
        end = job.completed_at if job.completed_at is not None else now
        elapsed = end - job.submitted_at
        script = job.log_script()
        if not natural:
            script = [line for line in script[:-1] if line[0] <= elapsed]
        return [
            {
                "message": message,
                "level": level,
                "source": "USER",
                "timestamp": _iso(job.submitted_wall + offset),
            }
            for offset, level, message in script
        ]

    def _status_body(self, job: Job, *, with_logs: bool) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            state, position = self._advance(job, now)
            base = self._response_url(job)
            body: dict[str, Any] = {
                "status": state,
                "request_id": job.request_id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "logs": self._logs(job, now) if with_logs else None,
                "metrics": {},
            }
            if state == IN_QUEUE:
                body["queue_position"] = position
            elif state == COMPLETED:
                assert job.completed_at is not None
                ran = max(0.0, job.completed_at - job.submitted_at - job.queue_time)
                body["metrics"] = {"inference_time": round(ran, 6)}
                if job.error:
                    body["error"] = job.error
                if job.error_type:
                    body["error_type"] = job.error_type
            return body

    def _result_body(self, job: Job) -> dict[str, Any]:
        body = job.result()
        override = self.faults.result_images_override
        if override is not None:
            body["images"] = list(override)
        return body

    def _cancel_job(self, job: Job) -> bool:
        """Record a cancel; True when the job was still running (and is now cancelled)."""
        with self._lock:
            self.cancels.append(job.request_id)
            if self._advance(job)[0] == COMPLETED:
                return False
            job.cancelled = True
            job.error, job.error_type = CANCELLED_MESSAGE, "request_cancelled"
            job.completed_at = time.monotonic()
            return True

    def _issue_token(self) -> str:
        token = f"tok-{uuid.uuid4().hex}"
        with self._lock:
            self._tokens.add(token)
        return token

    def _store_upload(self, name: str, content_type: str, data: bytes) -> str:
        folder = uuid.uuid4().hex
        key = f"{folder}/{name}"
        access_url = f"{self.url}/files/uploads/{folder}/{quote(name)}"
        with self._lock:
            self._files[key] = (content_type, data)
            self.uploads.append(
                {"file_name": name, "content_type": content_type, "size": len(data), "access_url": access_url}
            )
        return access_url


# --------------------------------------------------------------------------------------------
# Script mode
# --------------------------------------------------------------------------------------------


def _iter_keys(values: list[str] | None) -> Iterator[str]:
    for value in values or ():
        yield from (part.strip() for part in value.split(",") if part.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fake fal.ai queue server until SIGTERM / Ctrl-C.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--key", action="append", help="accepted API key (repeatable; default: any key)")
    parser.add_argument("--queue-time", type=float, default=0.0, help="seconds each job stays IN_QUEUE")
    parser.add_argument("--run-time", type=float, default=0.05, help="seconds each job stays IN_PROGRESS")
    parser.add_argument("--cdn-latency", type=float, default=0.0, help="seconds before each image download")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    keys = set(_iter_keys(args.key))
    fake = FakeFal(
        accepted_keys=keys or None,
        queue_time=args.queue_time,
        run_time=args.run_time,
        cdn_latency=args.cdn_latency,
        port=args.port,
        verbose=args.verbose,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    fake.start()
    print(f"FAKE_FAL_URL={fake.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
