"""A fake fal.ai queue server for the xAI Grok Imagine image and video endpoints.

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
                             [--account-concurrency N] [--balance USD] [--charge-balance]

Protocol (mirrors fal's queue API)
----------------------------------
Queue requests need ``Authorization: Key <key>`` (any non-empty key unless `accepted_keys` is
given); otherwise 401 ``{"detail": "Invalid or missing API key"}``.

``POST /{endpoint}``
    Submit. Endpoints (`ENDPOINTS`): ``xai/grok-imagine-image``,
    ``xai/grok-imagine-image/quality/text-to-image``, ``xai/grok-imagine-image/edit``,
    ``xai/grok-imagine-image/quality/edit`` and Grok Imagine 2.0's
    ``xai/grok-imagine-image/v2.0/text-to-image`` and ``xai/grok-imagine-image/v2.0/edit``
    (`V2_ENDPOINTS`), and the video endpoints of `fake_fal_video.VIDEO_ENDPOINTS` (see "Video endpoints"
    below); others give 404. `TEXT_ENDPOINTS` / `EDIT_ENDPOINTS` split the image ones by kind.
    The body is validated (422 ``{"detail": [{"loc": ["body", FIELD], "msg", "type"}]}``):
    ``prompt`` (required, non-blank; at most 8,000 characters on every endpoint, as fal's schema
    says, else type ``string_too_long``), ``num_images`` 1..4, ``aspect_ratio`` (see
    `ASPECT_RATIOS`; the edit endpoints also accept ``auto``, their default), ``resolution`` 1k|2k, ``output_format``
    jpeg|png|webp, ``sync_mode`` bool, on the edit endpoints ``image_urls`` (1..3 http(s) URLs or
    data URIs), and on the 2.0 endpoints only ``quality`` low|medium (default medium; kept in
    `Job.quality`). Any other field, ``quality`` on the older endpoints included, is refused with
    type ``extra_forbidden`` (stricter than fal on purpose, so stray fields are caught).
    200 answer: ``{request_id, response_url, status_url, cancel_url, queue_position}``
    (``queue_position`` 0, or the job's place in the account queue when there is one); request
    URLs use only ``owner/app`` (``xai/grok-imagine-image/requests/ID``) like fal does.
``GET  .../requests/ID/status[?logs=1]``
    ``{"status": "IN_QUEUE"|"IN_PROGRESS"|"COMPLETED", ...}`` with ``queue_position`` while
    queued, ``logs`` (null unless logs=1), ``metrics`` and, for failed jobs, ``error`` and
    ``error_type``. Unknown ids give 404.
``GET  .../requests/ID/status/stream[?logs=1]``
    Server-sent events: ``data: <status json>`` at once and on every change (checked every
    20 ms, but only when something can have changed, so hundreds of idle streams are cheap),
    ``: ping`` about once a second, and the connection closes after COMPLETED.
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
``GET /billing/user_balance`` (Key auth)
    The account's balance in US dollars, as a bare JSON number (``12.5``): `FakeFal.balance_usd`
    (``FakeFal(balance_usd=...)``, 100.0 unless given; tests may set it at any time). With
    `FakeFal.charge_balance` (``FakeFal(charge_balance=True)``, off by default) the balance pays:
    every accepted submit takes its price (`billed_price`: xAI's rates per image at the requested
    resolution, and per reference image; a video's `fake_fal_video.billed_video_price`, per second)
    off it, and a submit that arrives while the balance is 0 or less is refused with fal's 403
    ``{"detail": EXHAUSTED_BALANCE_MESSAGE}`` ("User is locked. Reason: Exhausted balance. ...") and
    creates no job. Like fal, the last request accepted may take the balance below zero.

Video endpoints
---------------
``xai/grok-imagine-video/text-to-video``, ``.../image-to-video``, ``.../v1.5/text-to-video``,
``.../v1.5/image-to-video``, ``.../reference-to-video``, ``.../edit-video`` and ``.../extend-video``:
their fields, ranges, defaults, output sizes and MP4 files are described in `fake_fal_video`. A video job
follows the same queue, account concurrency, faults (refusals, errors, cancel, ``never_complete``...) and
status protocol as an image job (its logs say "Generating video"). Its result is ``{"video": {url,
content_type, file_name, file_size, width, height, fps, duration, num_frames}}``; the URL is
``BASE/files/ID/0.mp4`` (served like an image file, so the ``image_*`` faults and ``cdn_latency`` apply
to it) and serves a real H.264/AAC MP4 whose last frame is flat `fake_fal_video.LAST_RGB`.

A job is IN_QUEUE for `queue_time` seconds after its submit (queue_position = remaining
seconds * 2), IN_PROGRESS for `run_time` seconds (logs "Generating image i/N" as it goes), then
COMPLETED.

Account concurrency (``FakeFal(account_concurrency=N)``, ``--account-concurrency N``, or the
``account_concurrency`` fault, which overrides it when not None; None or 0: no limit, the
default): at most N jobs are IN_PROGRESS at once across the whole server. A job is eligible to
start `queue_time` after its submit; jobs then start strictly in submit order (FIFO) as slots
free, a slot freeing when a running job completes, is cancelled or is completed by
`FakeFal.complete_job`; each then runs its `run_time`. While waiting a job is IN_QUEUE with
``queue_position`` = the number of queued jobs submitted before it (0: next to run), so positions
count down as jobs finish; a cancelled queued job leaves the queue and the positions behind it
drop. ``never_complete`` jobs hold their slot until cancelled; ``stuck_in_queue`` jobs stay out of
the account queue (no slot, not counted in others' positions; their position never changes). A
change of the limit takes effect when the fake next looks at the queue (any request). States are
worked out lazily from the clock under the lock (no thread per job; O(1) per status between
events), so 400+ jobs and 400 open streams are cheap. Every job records `Job.started_at` and
`Job.completed_at` (monotonic; None until then), and `FakeFal.max_running_seen` is the most
jobs ever IN_PROGRESS at once (limit or not) since the last reset.

`fake_image_size` is a fixed table: at 1k the sizes xAI documents for Grok Imagine
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
``Retry-After: 0`` (unless ``retry_after`` is set); 502/503/504 answers look like a front door
(HTML, no ``x-fal-request-id``). Job-shaping faults (``never_complete``, ``stuck_in_queue``,
errors and content-policy refusals, ``mixed_sizes``, ``extra_images``, ``run_time``/``queue_time``)
are copied into the `Job` at submit time; the others act when a request arrives.

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
  ``image_wrong_content_type`` (a valid image as text/html), ``file_chunked`` (result files are sent with
  ``Transfer-Encoding: chunked`` and no ``Content-Length``, as some CDNs do), ``mixed_sizes`` (image N > 0 is
  ``64 * N`` pixels narrower than image 0).
- ``extra_images`` (N): a result lists N images more than the request asked for (``num_images``
  + N, each served like the others, index colours going on): "fal made one too many".
- ``run_time``, ``queue_time``, ``cdn_latency``: override the server's settings when not None.
- ``account_concurrency``: overrides `FakeFal.account_concurrency` when not None (0: no limit);
  see "Account concurrency" above.
- ``submit_delay`` (seconds): an accepted submit creates its job at once but its answer (200, or
  the ``submit_accept_then_status`` one) is sent only after this delay; if the client hangs up
  meanwhile the job still exists.
- ``result_trickle`` (seconds): a 200 result (the JSON, or ``result_body``) is sent one byte every
  this many seconds, with the full, correct Content-Length.
- ``foreign_urls``: the submit answer's ``status_url``, ``response_url`` and ``cancel_url`` point
  at the "foreign host" (`FakeFal.foreign_url`, a second server on another 127.0.0.1 port, started
  on first use) instead of the fake. It answers anything fal-like (status COMPLETED, a stream of
  one COMPLETED event, a result whose image is on the foreign host, cancel 400
  ALREADY_COMPLETED) and records every request (`RecordedRequest`, kind "foreign": method, path,
  headers, body) in `FakeFal.foreign_requests`. A well-behaved client builds its own URLs from the
  queue base URL and the request id, so tests assert ``fake.foreign_requests == []``.
- ``retry_after`` (a string): every 429 and 503 answer the fake gives (the submit, status,
  result, cancel, image, upload and accept-then codes) carries ``Retry-After: <that string>``,
  exactly, instead of the default (``0`` on 429, none on 503): e.g. ``"inf"``, ``"1e12"``,
  ``"nan"``, ``"-5"`` or an HTTP date (`http_date`).
- ``content_policy_every`` (N): the k-th accepted submit since the last reset (1-based, every
  accepted submit counts, whichever endpoint) is refused under the content policy when
  k % N == 0, like ``content_policy``.
- ``content_policy_prompts`` (strings): jobs whose prompt contains any of these substrings
  (case-sensitive) are refused under the content policy.
- ``balance_status``: codes for the next balance requests (injected like ``result_status``).
- ``balance_body`` (a string): the balance answers 200 with this raw body instead of the number
  (e.g. ``"not a number"``, ``"{}"``).
- ``balance_delay`` (seconds): the balance is answered only after this delay.
- ``stream_pings_only``: every stream sends its first event, then only ``: ping`` comments and
  never closes, whatever the job does (a stream gone silent).
- ``stream_huge_line`` (bytes): every stream sends, after its first event, one ``data:`` line of
  this many bytes (written 64 KiB at a time, so the fake holds none of it), then goes on as usual.
- ``result_huge`` (bytes): a completed job's result is its usual JSON with a ``"padding"`` string of
  this many bytes, sent 64 KiB at a time without ``Content-Length`` (the body ends when the
  connection closes).
- ``image_host`` (a base URL such as ``http://cdn.fal.test``): result image URLs use it instead of
  the fake's own URL (reach it through the fake as a proxy: see "Behind a name" below).
- ``image_redirect_to`` (a URL): every result image answers 302 to it.

Behind a name
-------------
The fake also serves requests in absolute form (``GET http://queue.fal.test/xai/...``), as an HTTP
proxy receives them for plain-http URLs: it answers them as its own paths, whatever the host. With
``HTTP_PROXY`` pointing at the fake, a client can use a public-looking base URL (a ``.test`` name,
which never resolves) and still reach the fake; every request then arrives at the fake, recorded.

What the fake records
---------------------
`FakeFal.requests` (every request but control ones; `requests_of("balance")`: the balance reads),
`submits` (accepted ones), `cancels`
(request ids), `uploads`, `jobs`, `foreign_requests`; `max_running_seen`; `open_streams` /
`max_open_streams` (status streams open now / at most at once); `open_connections` /
`max_open_connections` (TCP connections to the fake, not the foreign host, open now / at most at
once); `connections_opened` (TCP connections to the fake accepted since the last reset);
`job_times()` (per job ``submitted_at``/``started_at``/``completed_at`` in seconds since
`FakeFal.epoch`, None when not yet). `reset()` clears them; the high-water marks restart from what
is open now. `wait_for(condition, timeout)` blocks until a condition on them holds, looking again
after every accepted submit and every cancel (tests synchronise on it rather than sleep).

Control endpoints (no auth, never recorded): ``POST /_fake/faults`` (JSON object of fault
fields to set), ``GET /_fake/faults``, ``POST /_fake/reset``, ``GET /_fake/log`` (`log_json`:
``submits``, ``cancels``, ``requests``, ``uploads``, ``jobs`` (id: state), ``job_times``,
``max_running_seen``, ``open_streams``, ``max_open_streams``, ``open_connections``,
``max_open_connections``, ``foreign_requests``).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import dataclasses
import email.utils
import io
import itertools
import json
import math
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from fake_fal_video import (
    VIDEO_ENDPOINTS,
    VideoSpec,
    billed_video_price,
    check_input_video,
    data_uri_bytes,
    planned_video,
    probe_mp4,
    validate_video_arguments,
)
from PIL import Image

__all__ = [
    "APP",
    "ASPECT_RATIOS",
    "CONTENT_POLICY_MESSAGE",
    "EDIT_ENDPOINTS",
    "EXHAUSTED_BALANCE_MESSAGE",
    "ENDPOINTS",
    "TEXT_ENDPOINTS",
    "V2_ENDPOINTS",
    "FakeFal",
    "Faults",
    "Job",
    "RecordedRequest",
    "billed_price",
    "fake_image_size",
    "http_date",
    "index_colour",
    "index_from_colour",
    "render_image",
]

APP = "xai/grok-imagine-image"
V2_ENDPOINTS = (f"{APP}/v2.0/text-to-image", f"{APP}/v2.0/edit")  # Grok Imagine 2.0
TEXT_ENDPOINTS = (APP, f"{APP}/quality/text-to-image", V2_ENDPOINTS[0])
EDIT_ENDPOINTS = (f"{APP}/edit", f"{APP}/quality/edit", V2_ENDPOINTS[1])
ENDPOINTS = (*TEXT_ENDPOINTS[:2], *EDIT_ENDPOINTS[:2], *V2_ENDPOINTS)  # the older four first, as before

_LANDSCAPE = ("2:1", "20:9", "19.5:9", "16:9", "4:3", "3:2")
ASPECT_RATIOS = (*_LANDSCAPE, "1:1", "2:3", "3:4", "9:16", "9:19.5", "9:20", "1:2")
RESOLUTIONS = ("1k", "2k")
OUTPUT_FORMATS = ("jpeg", "png", "webp")
LONG_SIDE = {"1k": 1024, "2k": 2048}
MAX_NUM_IMAGES = 4
MAX_IMAGE_URLS = 3
QUALITIES = ("low", "medium")  # Grok Imagine 2.0 only
DEFAULT_QUALITY = "medium"
MAX_PROMPT_CHARS = 8000

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "mp4": "video/mp4"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "mp4": "mp4"}
CONTENT_POLICY_TYPES = frozenset({"content_policy_violation", "content_moderation", "nsfw"})
CONTENT_POLICY_MESSAGE = (
    "The content could not be processed because it contained material flagged by a content checker."
)
CANCELLED_MESSAGE = "Request cancelled"
EXHAUSTED_BALANCE_MESSAGE = (
    "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
)
DEFAULT_BALANCE_USD = 100.0
# What fal bills (xAI's rates): endpoint (and quality on 2.0) -> (per image at 1k, at 2k, per reference image)
BILLING_RATES: dict[tuple[str, str | None], tuple[float, float, float]] = {
    (APP, None): (0.02, 0.02, 0.002),
    (f"{APP}/edit", None): (0.02, 0.02, 0.002),
    (f"{APP}/quality/text-to-image", None): (0.05, 0.07, 0.01),
    (f"{APP}/quality/edit", None): (0.05, 0.07, 0.01),
    **{(endpoint, "low"): (0.04, 0.06, 0.01) for endpoint in V2_ENDPOINTS},
    **{(endpoint, "medium"): (0.06, 0.08, 0.01) for endpoint in V2_ENDPOINTS},
}
FRONT_DOOR_STATUS = frozenset({502, 503, 504})
BOMB_SIDE = 30000
TRICKLE_CHUNK = 64
HUGE_CHUNK = b"x" * 65536  # what the huge-line and huge-result faults are written in
STREAM_TICK_S = 0.02
STREAM_MAX_IDLE_S = 0.25  # a stream re-checks at least this often even when nothing is due to change

IN_QUEUE, IN_PROGRESS, COMPLETED = "IN_QUEUE", "IN_PROGRESS", "COMPLETED"

_PER_REQUEST_PATH = re.compile(
    r"^/(?P<app>[^/]+/[^/]+)/requests/(?P<rid>[^/]+)(?P<tail>/status/stream|/status|/cancel)?/?$"
)
_FILE_PATH = re.compile(r"^/files/(?P<rid>[^/]+)/(?P<index>\d+)\.(?P<ext>[a-z0-9]+)$")
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


def http_date(wall_time: float) -> str:
    """`wall_time` (seconds since the epoch, like `time.time()`) as an HTTP date, e.g. for
    `Faults.retry_after`: ``http_date(time.time() + 3)`` is "retry in 3 s" in date form."""
    return email.utils.formatdate(wall_time, usegmt=True)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and value >= 0


def _header_safe(value: str) -> bool:
    """Can `value` go out as one HTTP header value (latin-1, no line breaks)?"""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any(c in value for c in "\r\n\0")


def _unrecorded() -> RecordedRequest:
    return RecordedRequest("", "", {}, b"", None, 0.0)


def billed_price(endpoint: str, args: dict[str, Any]) -> float:
    """What the fake bills for an accepted submit of these (validated) arguments, in US dollars."""
    quality = (args.get("quality") or DEFAULT_QUALITY) if endpoint in V2_ENDPOINTS else None
    per_1k, per_2k, per_reference = BILLING_RATES[(endpoint, quality)]
    per_image = per_2k if args["resolution"] == "2k" else per_1k
    return round(args["num_images"] * per_image + len(args.get("image_urls") or ()) * per_reference, 6)


def _corrupt_bytes(index: int) -> bytes:
    return b"NOT AN IMAGE\n" + random.Random(index).randbytes(2048)


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One HTTP request the fake received (control endpoints excluded).

    `kind` is one of submit, status, stream, result, cancel, file, token, upload, balance, unknown.
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
    file_chunked: bool = False
    mixed_sizes: bool = False
    extra_images: int = 0
    run_time: float | None = None
    queue_time: float | None = None
    cdn_latency: float | None = None
    account_concurrency: int | None = None
    submit_delay: float | None = None
    result_trickle: float | None = None
    foreign_urls: bool = False
    retry_after: str | None = None
    content_policy_every: int | None = None
    content_policy_prompts: list[str] | None = None
    balance_status: list[int] = field(default_factory=list)
    balance_body: str | None = None
    balance_delay: float | None = None
    stream_pings_only: bool = False
    stream_huge_line: int | None = None
    result_huge: int | None = None
    image_host: str | None = None
    image_redirect_to: str | None = None

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
            elif value is None:
                valid = True
            elif name in ("run_time", "queue_time", "cdn_latency", "image_trickle", "submit_delay", "result_trickle",
                          "balance_delay"):
                valid = _is_seconds(value)
            elif name == "submit_accept_then_status":
                valid = _is_int(value)
            elif name == "account_concurrency":
                valid = _is_int(value) and value >= 0
            elif name == "content_policy_every":
                valid = _is_int(value) and value >= 1
            elif name == "content_policy_prompts":
                valid = isinstance(value, list) and all(isinstance(v, str) for v in value)
            elif name == "retry_after":
                valid = isinstance(value, str) and _header_safe(value)
            elif name == "balance_body":
                valid = isinstance(value, str)
            elif name in ("stream_huge_line", "result_huge"):
                valid = _is_int(value) and value >= 0
            elif name in ("image_host", "image_redirect_to"):
                valid = isinstance(value, str) and value.startswith(("http://", "https://")) and _header_safe(value)
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
    """One accepted request. Times are `time.monotonic()` seconds; fields may be edited by tests
    (the timing fields before the job starts).

    `started_at` / `completed_at` are when it went IN_PROGRESS / COMPLETED (None until then; a job
    cancelled while queued never starts). They are worked out lazily from the clock: any status,
    stream or result request, `FakeFal.state_of`, `FakeFal.log_json` or
    `FakeFal.max_running_seen` brings them up to date.
    """

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
    extra_images: int = 0  # images listed beyond num_images (the extra_images fault)
    error: str | None = None
    error_type: str | None = None
    cancelled: bool = False
    completed_at: float | None = None
    base_url: str = ""
    quality: str | None = None  # Grok Imagine 2.0 endpoints only
    video: VideoSpec | None = None  # video endpoints only: what the job returns
    started_at: float | None = None
    seq: int = field(default=0, repr=False)  # submit order (FIFO rank in the account queue)
    generation: int = field(default=0, repr=False)  # FakeFal.reset() count when submitted

    @property
    def eligible_at(self) -> float:
        """When the job may start running: submit time + queue time."""
        return self.submitted_at + self.queue_time

    def result(self, image_host: str | None = None) -> dict[str, Any]:
        """The result JSON of a successful job (before any `result_images_override`); its image URLs on
        `image_host` when given, else on the fake."""
        if self.video is not None:
            return self.video.result(f"{self.base_url}/files/{self.request_id}/0.mp4", "0.mp4")
        images: list[dict[str, Any]] = []
        for index in range(self.images_made):
            width, height = self.image_size(index)
            file_name = f"{index}.{self.extension}"
            if self.sync_mode:
                data = render_image(width, height, self.output_format, index)
                url = f"data:{self.content_type};base64,{base64.b64encode(data).decode()}"
            else:
                url = f"{image_host or self.base_url}/files/{self.request_id}/{file_name}"
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

    @property
    def images_made(self) -> int:
        """How many images the result lists (and the file route serves)."""
        return self.num_images + self.extra_images

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
        """(offset from submit, level, message) of every log line the job can emit (offsets count
        from when it started, or from its queue time while it has not)."""
        q = self.queue_time if self.started_at is None else self.started_at - self.submitted_at
        r, n = self.run_time, self.num_images
        if self.video is not None:
            lines = [(q, "INFO", f"Starting Grok Imagine Video: {self.video.duration:g} s, {self.video.width}x"
                                 f"{self.video.height}"), (q, "INFO", "Generating video")]
        else:
            lines = [(q, "INFO", f"Starting Grok Imagine: {n} image(s), {self.aspect_ratio}, {self.resolution}")]
            lines += [(q + r * i / n, "INFO", f"Generating image {i + 1}/{n}") for i in range(n)]
        if self.failed:
            lines.append((q + r, "ERROR", f"Generation failed: {self.error or self.error_type}"))
        else:
            lines.append((q + r, "INFO", "Generated the video" if self.video else f"Generated {n} image(s)"))
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
    v2 = endpoint in V2_ENDPOINTS
    args: dict[str, Any] = {}

    prompt = body.get("prompt")
    if "prompt" not in body:
        error(["prompt"], "Field required", "missing")
    elif not isinstance(prompt, str):
        error(["prompt"], "Input should be a valid string", "string_type")
    elif not prompt.strip():
        error(["prompt"], "String should have at least 1 character", "string_too_short")
    elif len(prompt) > MAX_PROMPT_CHARS:
        error(["prompt"], f"String should have at most {MAX_PROMPT_CHARS} characters", "string_too_long")
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
    if v2:
        allowed.add("quality")
        quality = body.get("quality", DEFAULT_QUALITY)
        if quality not in QUALITIES:
            error(["quality"], _literal_message(QUALITIES), "literal_error")
        args["quality"] = quality
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
        if path == "/billing/user_balance":
            self.rec.kind = "balance"
            return self._balance() if self.command == "GET" else self._method_not_allowed()
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
        if not fake._pay(billed_video_price(endpoint, args, shape) if video else billed_price(endpoint, args)):
            return self._send_json(403, {"detail": EXHAUSTED_BALANCE_MESSAGE})
        if endpoint in VIDEO_ENDPOINTS:
            job = fake._create_video_job(endpoint, args, shape, self.rec)
        else:
            job = fake._create_job(endpoint, args, self.rec)
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
            if fake._account_limit() is not None:
                position = fake._advance(job)[1] or 0
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
        with fake._lock:
            fake.open_streams += 1
            fake.max_open_streams = max(fake.max_open_streams, fake.open_streams)
        try:
            self._stream_events(job, with_logs, cut)
        finally:
            with fake._lock:
                fake.open_streams -= 1

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
                change_at = fake._next_change(job, with_logs, time.monotonic())
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
            return self._send_bytes(302, b"", "text/plain", {"Location": f"{fake.url}{path}"})
        if faults.image_redirect_to:
            return self._send_bytes(302, b"", "text/plain", {"Location": faults.image_redirect_to})
        job = fake.jobs.get(rid)
        if job is None or index >= job.images_made or match["ext"] != job.extension:
            return self._send_json(404, {"detail": "Not Found"})
        latency = faults.cdn_latency if faults.cdn_latency is not None else fake.cdn_latency
        if latency > 0 and fake._stopping.wait(latency):
            self.close_connection = True
            return
        if faults.image_bomb:
            data, content_type = bomb_png(), "image/png"
        elif faults.image_corrupt:
            data, content_type = _corrupt_bytes(index), "image/jpeg"
        elif job.video is not None:
            data, content_type = job.video.data(), job.content_type
        else:
            width, height = job.image_size(index)
            data, content_type = render_image(width, height, job.output_format, index), job.content_type
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


class _ForeignServer(ThreadingHTTPServer):
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
    server: _ForeignServer

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
        rec = fake._record(self, body, store=False)
        rec.kind = "foreign"
        with fake._lock:
            fake.foreign_requests.append(rec)
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        path = urlsplit(self.path).path
        match = _PER_REQUEST_PATH.match(unquote(path))
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
        account_concurrency: int | None = None,
        balance_usd: float = DEFAULT_BALANCE_USD,
        charge_balance: bool = False,
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.accepted_keys = set(accepted_keys) if accepted_keys is not None else None
        self.initial_balance_usd = balance_usd
        self.balance_usd = balance_usd  # what GET /billing/user_balance answers
        self.initial_charge_balance = charge_balance
        self.charge_balance = charge_balance  # accepted submits pay from the balance
        self.queue_time = queue_time
        self.run_time = run_time
        self.cdn_latency = cdn_latency
        self.account_concurrency = account_concurrency  # None or 0: no limit
        self.verbose = verbose
        self.heartbeat_interval = 1.0
        self.epoch = time.monotonic()  # the origin of the offsets in log_json()
        self.requests: list[RecordedRequest] = []
        self.submits: list[RecordedRequest] = []
        self.cancels: list[str] = []
        self.uploads: list[dict[str, Any]] = []
        self.foreign_requests: list[RecordedRequest] = []
        self.jobs: dict[str, Job] = {}
        self.faults = Faults()
        self.open_streams = 0
        self.max_open_streams = 0
        self.max_open_connections = 0
        self.connections_opened = 0
        self._port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # notified on cancels, completions by hand, resets
        self._recorded = threading.Condition(self._lock)  # notified on every accepted submit and every cancel
        self._version = 0  # bumped with every notification of `_changed`
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._files: dict[str, tuple[str, bytes]] = {}
        self._tokens: set[str] = set()
        self._server: _Server | None = None
        self._base_url: str | None = None
        self._thread: threading.Thread | None = None
        self._foreign: _ForeignServer | None = None
        self._foreign_url: str | None = None
        self._foreign_lock = threading.Lock()
        # The account queue, worked out lazily from the clock (see _schedule).
        self._seq = itertools.count(1)
        self._generation = 0
        self._accepted = 0  # accepted submits since the last reset (content_policy_every)
        self._waiting: list[Job] = []  # not started yet, in submit order
        self._waiting_seqs: list[int] = []  # their `seq`, for bisect
        self._running: list[Job] = []
        self._sched_clock = -math.inf  # time of the last event processed
        self._sched_limit: int | None = None
        self._next_event = math.inf  # nothing can change before this time (unless notified)
        self._max_running = 0

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
        with self._lock:
            self._notify()
        server.shutdown()
        server.server_close()
        with self._foreign_lock:
            foreign, self._foreign, self._foreign_url = self._foreign, None, None
        if foreign is not None:
            foreign.shutdown()
            foreign.server_close()
        with self._lock:
            connections = list(self._connections) + (list(foreign.connections) if foreign else [])
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

    @property
    def foreign_url(self) -> str:
        """Base URL of the "foreign host" (`Faults.foreign_urls`); started on first use."""
        if self._server is None or self._stopping.is_set():
            raise RuntimeError("FakeFal is not running; call start() first")
        with self._foreign_lock:
            if self._foreign_url is None:
                foreign = _ForeignServer(self)
                threading.Thread(
                    target=foreign.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-fal-foreign", daemon=True
                ).start()
                self._foreign = foreign
                self._foreign_url = f"http://127.0.0.1:{foreign.server_address[1]}"
            return self._foreign_url

    @property
    def open_connections(self) -> int:
        """TCP connections to the fake (not the foreign host) open now."""
        with self._lock:
            return len(self._connections)

    @property
    def max_running_seen(self) -> int:
        """The most jobs ever IN_PROGRESS at once (since the last reset)."""
        with self._lock:
            self._schedule(time.monotonic())
            return self._max_running

    # ---- public helpers -------------------------------------------------------------------

    def reset(self) -> None:
        """Clear the logs, jobs, uploaded files, faults, the account queue and the high-water marks
        (those restart from what is open now; issued upload tokens stay valid), and give the balance
        and `charge_balance` back their constructor values. Jobs from before keep following the clock
        for anyone still holding them, outside the account queue."""
        with self._lock:
            self.balance_usd, self.charge_balance = self.initial_balance_usd, self.initial_charge_balance
            self.requests.clear()
            self.submits.clear()
            self.cancels.clear()
            self.uploads.clear()
            self.foreign_requests.clear()
            self.jobs.clear()
            self._files.clear()
            self.faults.clear()
            self._generation += 1
            self._accepted = 0
            self._waiting.clear()
            self._waiting_seqs.clear()
            self._running.clear()
            self._sched_clock, self._sched_limit, self._next_event = -math.inf, None, math.inf
            self._max_running = 0
            self.max_open_streams = self.open_streams
            self.max_open_connections = len(self._connections)
            self.connections_opened = 0
            self._notify()

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

    def wait_for(self, condition: Callable[[FakeFal], bool], timeout: float) -> bool:
        """Block until `condition(self)` holds (looked at under the lock, after every accepted submit and
        every cancel), or `timeout` seconds pass; answers whether it holds. From an event loop, call it in
        a thread: ``await asyncio.to_thread(fake.wait_for, lambda f: len(f.cancels) == 3, 10)``."""
        with self._lock:
            return self._recorded.wait_for(lambda: condition(self), timeout)

    def requests_of(self, kind: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind]

    def state_of(self, request_id: str) -> str:
        """The job's current status (IN_QUEUE, IN_PROGRESS or COMPLETED)."""
        with self._lock:
            return self._advance(self.jobs[request_id])[0]

    def queue_position_of(self, request_id: str) -> int | None:
        """The job's queue_position now (None unless IN_QUEUE)."""
        with self._lock:
            return self._advance(self.jobs[request_id])[1]

    def complete_job(
        self, request_id: str, *, error: str | None = None, error_type: str | None = None
    ) -> None:
        """Complete a job now (e.g. one held by `never_complete`), optionally with an error. A running
        job frees its account slot; a queued one leaves the queue (and counts as started now)."""
        with self._lock:
            job = self.jobs[request_id]
            now = time.monotonic()
            if self._advance(job, now)[0] != COMPLETED:
                self._unschedule(job, now)
                job.error, job.error_type = error, error_type
                if job.started_at is None:
                    job.started_at = now
                job.completed_at = now
                self._notify()

    def job_times(self) -> dict[str, dict[str, float | None]]:
        """Per job: submitted_at, started_at, completed_at, as seconds since `epoch` (None: not yet)."""
        with self._lock:
            self._schedule(time.monotonic())

            def offset(value: float | None) -> float | None:
                return None if value is None else round(value - self.epoch, 6)

            return {
                rid: {
                    "submitted_at": offset(job.submitted_at),
                    "started_at": offset(job.started_at),
                    "completed_at": offset(job.completed_at),
                }
                for rid, job in self.jobs.items()
            }

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
                "job_times": self.job_times(),
                "max_running_seen": self.max_running_seen,
                "open_streams": self.open_streams,
                "max_open_streams": self.max_open_streams,
                "open_connections": len(self._connections),
                "max_open_connections": self.max_open_connections,
                "foreign_requests": [
                    {"method": r.method, "path": r.path, "has_authorization": r.has_authorization}
                    for r in self.foreign_requests
                ],
            }

    # ---- internals used by the handler ------------------------------------------------------

    def _warn(self, message: str) -> None:
        sys.stderr.write(f"[fake_fal] {message}\n")
        sys.stderr.flush()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
                self.max_open_connections = max(self.max_open_connections, len(self._connections))
                self.connections_opened += 1
            else:
                self._connections.discard(conn)

    def _notify(self) -> None:
        """Wake every waiting stream (call with the lock held)."""
        self._version += 1
        self._changed.notify_all()

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes, *, store: bool) -> RecordedRequest:
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

    def _pay(self, price: float) -> bool:
        """With `charge_balance`: take `price` off the balance, or False when it is exhausted (fal's lock)."""
        with self._lock:
            if not self.charge_balance:
                return True
            if self.balance_usd <= 0:
                return False
            self.balance_usd = round(self.balance_usd - price, 6)
            return True

    def _response_url(self, job: Job) -> str:
        return f"{self.url}/{job.app}/requests/{job.request_id}"

    def _create_job(self, endpoint: str, args: dict[str, Any], rec: RecordedRequest) -> Job:
        aspect, resolution = args["aspect_ratio"], args["resolution"]
        size = fake_image_size(aspect, resolution)
        if aspect == "auto" and args["image_urls"]:
            shape = self._input_shape(args["image_urls"][0])
            if shape:
                size = size_for_shape(shape[0], shape[1], resolution)
        return self._add_job(endpoint, rec, args["prompt"], num_images=args["num_images"], aspect_ratio=aspect,
                             resolution=resolution, output_format=args["output_format"], sync_mode=args["sync_mode"],
                             image_urls=list(args.get("image_urls") or []), size=size, quality=args.get("quality"))

    def _create_video_job(self, endpoint: str, args: dict[str, Any], shape: tuple[int, int, float] | None,
                          rec: RecordedRequest) -> Job:
        """A job on a video endpoint (`shape`: its first input's width, height and seconds, if readable)."""
        spec = planned_video(endpoint, args, shape)
        urls = args.get("reference_image_urls") or [args[name] for name in ("image_url", "video_url") if name in args]
        return self._add_job(endpoint, rec, args["prompt"], num_images=1, aspect_ratio=args.get("aspect_ratio", "auto"),
                             resolution=args.get("resolution", "auto"), output_format="mp4", sync_mode=False,
                             image_urls=list(urls), size=(spec.width, spec.height), video=spec)

    def _video_input_shape(self, args: dict[str, Any]) -> tuple[int, int, float] | None:
        """(width, height, seconds) of a video submit's first input image or video, when the fake can read it
        (seconds 0 for an image)."""
        urls = args.get("reference_image_urls") or [args.get("image_url")]
        if args.get("video_url"):
            data = self._stored_bytes(args["video_url"])
            return probe_mp4(data) if data is not None else None
        shape = self._input_shape(urls[0]) if isinstance(urls[0], str) else None
        return (shape[0], shape[1], 0.0) if shape else None

    def _stored_bytes(self, url: str) -> bytes | None:
        """The bytes behind a data URI, an upload to the fake or a video the fake serves; None otherwise."""
        data = data_uri_bytes(url)
        if data is not None:
            return data
        prefix = f"{self.url}/files/"
        if not url.startswith(prefix):
            return None
        path = unquote(url[len(self.url):])
        upload = _UPLOAD_PATH.match(path)
        if upload:
            with self._lock:
                stored = self._files.get(upload["key"])
            return stored[1] if stored else None
        match = _FILE_PATH.match(path)
        job = self.jobs.get(match["rid"]) if match else None
        return job.video.data() if job is not None and job.video is not None else None

    def _add_job(self, endpoint: str, rec: RecordedRequest, prompt: str, **fields: Any) -> Job:
        """Register an accepted submit as a job, shaped by the faults set now."""
        with self._lock:
            faults = self.faults
            now = time.monotonic()
            self._schedule(now)
            self._accepted += 1
            error, error_type = faults.complete_with_error, faults.complete_error_type
            every, words = faults.content_policy_every, faults.content_policy_prompts
            if (
                faults.content_policy
                or (every and self._accepted % every == 0)
                or (words and any(word in prompt for word in words))
            ):
                error, error_type = CONTENT_POLICY_MESSAGE, "content_policy_violation"
            rid = str(uuid.uuid4())
            job = Job(
                request_id=rid,
                endpoint=endpoint,
                app="/".join(endpoint.split("/")[:2]),
                arguments=dict(rec.json),
                prompt=prompt,
                submitted_at=now,
                submitted_wall=time.time(),
                queue_time=self.queue_time if faults.queue_time is None else float(faults.queue_time),
                run_time=self.run_time if faults.run_time is None else float(faults.run_time),
                never_complete=faults.never_complete,
                stuck_in_queue=faults.stuck_in_queue,
                mixed_sizes=faults.mixed_sizes,
                extra_images=faults.extra_images,
                error=error,
                error_type=error_type,
                base_url=self.url,
                seq=next(self._seq),
                generation=self._generation,
                **fields,
            )
            self.jobs[rid] = job
            self.submits.append(rec)
            rec.outcome, rec.request_id = "accepted", rid
            self._recorded.notify_all()
            if not job.stuck_in_queue:  # a stuck job never gets near the account queue
                self._waiting.append(job)
                self._waiting_seqs.append(job.seq)
                self._next_event = min(self._next_event, job.eligible_at)
        return job

    def _input_shape(self, url: str) -> tuple[int, int] | None:
        """(width, height) of an edit input the fake can read without the network."""
        data = self._stored_bytes(url)
        if data is None:
            return None
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.size
        except Exception:  # any unreadable input: fall back to square
            return None

    # ---- the account queue ------------------------------------------------------------------
    #
    # Every job of the current generation is in `_waiting` (FIFO by `seq`) until it starts, then in
    # `_running` until it completes. `_schedule(now)` replays the events (completions, starts) up to
    # `now` in time order, so `started_at` / `completed_at` are exact whenever they are looked at,
    # with no thread per job. Between events it costs O(1): nothing can change before `_next_event`
    # unless a cancel, `complete_job` or a change of the limit says so. With no limit every job starts
    # at its own `eligible_at`; with a limit of N the head of the queue starts when it is eligible and
    # fewer than N are running. All of this runs with the lock held.

    def _account_limit(self) -> int | None:
        value = self.faults.account_concurrency
        if value is None:
            value = self.account_concurrency
        return value or None

    def _schedule(self, now: float) -> None:
        limit = self._account_limit()
        if limit != self._sched_limit:
            self._run_until(now, self._sched_limit)  # up to now under the old limit, then switch
            self._sched_limit = limit
            self._sched_clock = max(self._sched_clock, now)
            self._next_event = -math.inf
            self._notify()
        if now >= self._next_event:
            self._run_until(now, limit)

    def _run_until(self, now: float, limit: int | None) -> None:
        while True:
            done_at = min(
                (
                    job.started_at + job.run_time
                    for job in self._running
                    if not job.never_complete and job.started_at is not None
                ),
                default=math.inf,
            )
            start_at = math.inf
            if self._waiting:
                if limit is None:
                    start_at = min(job.eligible_at for job in self._waiting)
                elif len(self._running) < limit:
                    start_at = self._waiting[0].eligible_at
            first = min(done_at, start_at)
            if first > now:
                self._next_event = first
                return
            at = max(first, self._sched_clock)
            self._sched_clock = at
            if done_at <= at:
                still = []
                for job in self._running:
                    assert job.started_at is not None
                    end = job.started_at + job.run_time
                    if not job.never_complete and end <= at:
                        job.completed_at = end
                    else:
                        still.append(job)
                self._running = still
            if limit is None:
                starting = [job for job in self._waiting if job.eligible_at <= at]
                if starting:
                    self._waiting = [job for job in self._waiting if job.eligible_at > at]
                    self._waiting_seqs = [job.seq for job in self._waiting]
            else:
                count = 0
                while (
                    len(self._running) + count < limit
                    and count < len(self._waiting)
                    and self._waiting[count].eligible_at <= at
                ):
                    count += 1
                starting = self._waiting[:count]
                del self._waiting[:count], self._waiting_seqs[:count]
            for job in starting:
                job.started_at = at
                self._running.append(job)
            self._max_running = max(self._max_running, len(self._running))

    def _unschedule(self, job: Job, now: float) -> None:
        """Take a job that completes at `now` (by hand) out of the queue or its slot (lock held)."""
        if job.generation != self._generation:
            return  # from before a reset: never in this queue
        self._schedule(now)  # every event before `now` first, at its own time
        if job in self._running:
            self._running.remove(job)
        else:
            index = bisect.bisect_left(self._waiting_seqs, job.seq)
            if index < len(self._waiting_seqs) and self._waiting_seqs[index] == job.seq:
                del self._waiting[index], self._waiting_seqs[index]
        self._sched_clock = max(self._sched_clock, now)
        self._next_event = -math.inf  # a slot may have freed, positions may have dropped

    def _advance(self, job: Job, now: float | None = None) -> tuple[str, int | None]:
        """(state, queue position) of a job now; latches start and completion. Call with the lock held."""
        if job.completed_at is not None:
            return COMPLETED, None
        if job.stuck_in_queue:
            return IN_QUEUE, max(1, int(job.queue_time * 2))
        now = time.monotonic() if now is None else now
        if job.generation != self._generation:
            return self._advance_by_clock(job, now)
        self._schedule(now)
        if job.completed_at is not None:
            return COMPLETED, None
        if job.started_at is not None:
            return IN_PROGRESS, None
        if self._sched_limit is None:
            return IN_QUEUE, max(0, int((job.eligible_at - now) * 2))
        return IN_QUEUE, bisect.bisect_left(self._waiting_seqs, job.seq)

    def _advance_by_clock(self, job: Job, now: float) -> tuple[str, int | None]:
        """A job from before the last reset: no account queue, just its own times."""
        start = job.eligible_at if job.started_at is None else job.started_at
        if now < start:
            return IN_QUEUE, max(0, int((start - now) * 2))
        job.started_at = start
        if job.never_complete or now < start + job.run_time:
            return IN_PROGRESS, None
        job.completed_at = start + job.run_time
        return COMPLETED, None

    def _next_change(self, job: Job, with_logs: bool, now: float) -> float:
        """A time before which the job's status body cannot change unless `_changed` is notified
        (call with the lock held, right after `_advance(job, now)`)."""
        if job.completed_at is not None:
            return now
        if job.stuck_in_queue:
            return math.inf
        if job.generation != self._generation:
            return now  # next tick, as ever
        change = self._next_event
        if job.started_at is None:
            if self._sched_limit is None:  # the position counts down by the clock
                position = int((job.eligible_at - now) * 2)
                if position > 0:
                    change = min(change, job.eligible_at - position / 2 + 1e-6)
        elif with_logs:
            elapsed = now - job.submitted_at
            for offset, _, _ in job.log_script():
                if offset > elapsed:
                    change = min(change, job.submitted_at + offset)
                    break
        return change

    def _logs(self, job: Job, now: float) -> list[dict[str, str]]:
        if job.started_at is None:  # queued (or cancelled while queued): nothing logged yet
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
                ran = 0.0 if job.started_at is None else max(0.0, job.completed_at - job.started_at)
                body["metrics"] = {"inference_time": round(ran, 6)}
                if job.error:
                    body["error"] = job.error
                if job.error_type:
                    body["error_type"] = job.error_type
            return body

    def _result_body(self, job: Job) -> dict[str, Any]:
        body = job.result(self.faults.image_host)
        override = self.faults.result_images_override
        if override is not None:
            body["images"] = list(override)
        return body

    def _cancel_job(self, job: Job) -> bool:
        """Record a cancel; True when the job was still running (and is now cancelled)."""
        with self._lock:
            self.cancels.append(job.request_id)
            self._recorded.notify_all()
            now = time.monotonic()
            if self._advance(job, now)[0] == COMPLETED:
                return False
            self._unschedule(job, now)
            job.cancelled = True
            job.error, job.error_type = CANCELLED_MESSAGE, "request_cancelled"
            job.completed_at = now
            self._notify()
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
    parser.add_argument(
        "--account-concurrency", type=int, default=None, metavar="N",
        help="at most N jobs IN_PROGRESS at once; the others wait IN_QUEUE in submit order (default: no limit)",
    )
    parser.add_argument("--balance", type=float, default=DEFAULT_BALANCE_USD, metavar="USD",
                        help=f"what GET /billing/user_balance answers (default {DEFAULT_BALANCE_USD:g})")
    parser.add_argument("--charge-balance", action="store_true",
                        help="accepted submits pay from the balance; an exhausted balance refuses submits (403)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if args.account_concurrency is not None and args.account_concurrency < 0:
        parser.error("--account-concurrency must be >= 0 (0: no limit)")

    keys = set(_iter_keys(args.key))
    fake = FakeFal(
        accepted_keys=keys or None,
        queue_time=args.queue_time,
        run_time=args.run_time,
        cdn_latency=args.cdn_latency,
        account_concurrency=args.account_concurrency,
        balance_usd=args.balance,
        charge_balance=args.charge_balance,
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
