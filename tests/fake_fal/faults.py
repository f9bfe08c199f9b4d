"""The fake fal's faults: misbehaviour a test injects, all off by default and mutable at any time.

`FakeFal.faults` is a `Faults`; tests set its fields directly (``fake.faults.image_404 = True``), a
script user through ``POST /_fake/faults`` (a JSON object of fields, checked by `Faults.update`).

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
  the fake's own URL (reach it through the fake as a proxy: see "Behind a name" in `fake_fal.handler`).
- ``image_redirect_to`` (a URL): every result image answers 302 to it.
- ``photo_like_images``: result images are textured pictures (a photograph's detail) instead of flat colour
  fields.
- ``inputs_unreadable``: every job given an input file (an image or video URL, not a data URI) fails as
  when fal cannot download it (422 ``file_download_error``, not billed), whatever the URL.
"""

from __future__ import annotations

import dataclasses
import email.utils
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Faults", "http_date"]


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
    inputs_unreadable: bool = False
    photo_like_images: bool = False

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
