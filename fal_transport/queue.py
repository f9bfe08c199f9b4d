"""fal's queue protocol: submit, status, result, cancel.

    POST {base}/{endpoint}                 -> {request_id, status_url, response_url, cancel_url}
    GET  {base}/{app}/requests/{id}/status[?logs=1]   (and .../status/stream: see status_watch)
    GET  {base}/{app}/requests/{id}        -> the result JSON
    PUT  {base}/{app}/requests/{id}/cancel -> 202 when fal will stop the request

Only these requests carry `Authorization: Key ...`. The URLs of a submit answer are followed only
when they point at the queue base URL's own scheme, host and port; otherwise they are built from
the base URL and the request id, so the key never goes anywhere but fal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from . import config
from .aio import Deadline
from .credentials import FalCredentials
from .errors import (
    CONTENT_POLICY_TYPES,
    FalError,
    JobFailedError,
    ResultError,
    ServerError,
    SubmitUncertainError,
    content_policy_error,
    error_from_response,
)
from .http import DEFAULT_RETRY, NO_RETRY, RETRY_STATUS_IDEMPOTENT, BodyTooLarge, retry_after_seconds, send

log = logging.getLogger("grok_imagine_fal")

State = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
STATES: tuple[State, ...] = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
SUBMIT_TIMEOUT_S = 60.0
STATUS_TIMEOUT_S = 30.0
RESULT_TIMEOUT_S = 60.0
CANCEL_TIMEOUT_S = 4.0  # one cancel attempt
# The most of a result this pack reads. Sync mode puts the images in it as base64: 4 Grok images at 2k
# as PNG are at most about 4 x 13 MB of pixels, 70 MB in base64, about half of this.
MAX_RESULT_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class RequestHandle:
    """Where to follow one submitted request."""

    endpoint: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


@dataclass(frozen=True)
class CancelAnswer:
    """What fal answered to a cancel."""

    accepted: bool  # fal stops the request (HTTP 202)
    final: bool  # asking again would get the same answer (accepted, already completed, unknown, refused)
    unknown: bool = False  # fal does not know the request (HTTP 404)
    retry_after: float | None = None  # fal's own wait before asking again, when it gave one


@dataclass(frozen=True)
class LogLine:
    message: str
    timestamp: str = ""


@dataclass(frozen=True)
class QueueStatus:
    """One status report of a request."""

    state: State
    queue_position: int | None = None
    logs: tuple[LogLine, ...] = ()
    error: str | None = None
    error_type: str | None = None

    @property
    def failed(self) -> bool:
        return bool(self.error or self.error_type)

    @classmethod
    def from_json(cls, data: Any, request_id: str) -> QueueStatus:
        if not isinstance(data, dict) or data.get("status") not in STATES:
            raise ResultError("fal sent a status this pack does not understand.", request_id=request_id)
        logs = tuple(
            LogLine(str(item.get("message", "")), str(item.get("timestamp", "")))
            for item in data.get("logs") or ()
            if isinstance(item, dict)
        )
        position = data.get("queue_position")
        return cls(
            state=data["status"],
            queue_position=position if isinstance(position, int) and not isinstance(position, bool) else None,
            logs=logs,
            error=str(data["error"]) if data.get("error") else None,
            error_type=str(data["error_type"]) if data.get("error_type") else None,
        )


def endpoint_app(endpoint: str) -> str:
    """`owner/app` of an endpoint id: fal's request URLs drop any sub-path such as `/edit`."""
    return "/".join(endpoint.strip("/").split("/")[:2])


def same_origin(url: str, base: str) -> bool:
    """True when `url` has the scheme, host and port of `base`."""
    a, b = urlsplit(url), urlsplit(base)
    default = {"https": 443, "http": 80}
    try:
        ports = (a.port or default.get(a.scheme), b.port or default.get(b.scheme))
    except ValueError:
        return False
    return (a.scheme, (a.hostname or "").lower(), ports[0]) == (b.scheme, (b.hostname or "").lower(), ports[1])


class FalQueue:
    """The queue protocol for one set of credentials. Cheap to create; holds no connections."""

    def __init__(self, credentials: FalCredentials) -> None:
        self.credentials = credentials

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self.credentials.authorization, "Accept": "application/json"}

    def error(self, response: httpx.Response, what: str, request_id: str | None = None) -> FalError:
        return error_from_response(response, what=what, key_source=self.credentials.source,
                                   scrub=self.credentials.scrub, request_id=request_id)

    def handle_for(self, endpoint: str, request_id: str) -> RequestHandle:
        """The handle of a request, built from the queue base URL, its endpoint and its id."""
        base = f"{config.queue_base_url()}/{endpoint_app(endpoint)}/requests/{request_id}"
        return RequestHandle(endpoint, request_id, f"{base}/status", base, f"{base}/cancel")

    def _handle_from_answer(self, endpoint: str, request_id: str, body: dict[str, Any]) -> RequestHandle:
        built = self.handle_for(endpoint, request_id)
        base = config.queue_base_url()
        urls = {}
        for name in ("status_url", "response_url", "cancel_url"):
            given = body.get(name)
            if isinstance(given, str) and given and same_origin(given, base):
                urls[name] = given.rstrip("/")
            else:
                if given:
                    log.warning("[Grok Imagine] fal's submit answer gave a %s on another host; using the queue's own",
                                name)
                urls[name] = getattr(built, name)
        return RequestHandle(endpoint, request_id, **urls)

    async def submit(self, endpoint: str, arguments: dict[str, Any], deadline: Deadline | None = None) -> RequestHandle:
        """Queue one request at fal. Retried only where fal cannot have accepted it."""
        what = f"the submit to {endpoint}"
        response = await send("POST", f"{config.queue_base_url()}/{endpoint}", what=what,
                              deadline=deadline or Deadline(SUBMIT_TIMEOUT_S), idempotent=False,
                              headers=self._headers(), json=arguments)
        request_id = response.headers.get("x-fal-request-id")
        if response.status_code >= 400:
            error = self.error(response, what)
            if isinstance(error, ServerError) and request_id:
                raise SubmitUncertainError(
                    f"fal answered HTTP {response.status_code} to the submit after accepting it, so it was not "
                    "sent again to avoid paying twice. The next run with the same inputs collects it, or load its "
                    "images by its request id once it completes.",
                    request_id=request_id,
                )
            raise error
        try:
            body = response.json()
            request_id = str(body["request_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SubmitUncertainError(
                "fal accepted the submit but its answer could not be read, so it was not sent again. Check your "
                "fal dashboard's request history.",
                request_id=request_id,
            ) from exc
        return self._handle_from_answer(endpoint, request_id, body if isinstance(body, dict) else {})

    async def status(self, handle: RequestHandle, deadline: Deadline | None = None) -> QueueStatus:
        response = await send("GET", handle.status_url, what="a status check",
                              deadline=deadline or Deadline(STATUS_TIMEOUT_S), headers=self._headers(),
                              params={"logs": "1"})
        if response.status_code >= 400:
            raise self.error(response, "a status check", handle.request_id)
        try:
            data = response.json()
        except ValueError as exc:
            raise ResultError("fal sent a status that is not JSON.", request_id=handle.request_id) from exc
        return QueueStatus.from_json(data, handle.request_id)

    async def result(self, handle: RequestHandle, final: QueueStatus | None = None,
                     deadline: Deadline | None = None) -> dict[str, Any]:
        """The result JSON of a completed request; raises the request's own error if it failed."""
        failed = final is not None and final.failed
        try:
            response = await send("GET", handle.response_url, what="fetching the result",
                                  deadline=deadline or Deadline(RESULT_TIMEOUT_S), headers=self._headers(),
                                  policy=NO_RETRY if failed else DEFAULT_RETRY, max_bytes=MAX_RESULT_BYTES)
        except BodyTooLarge as exc:
            raise ResultError(
                f"fal's result is larger than {exc.max_bytes // 2**20} MiB, the most this pack reads, so it was not "
                "loaded. Images sent inside the result (sync_mode) make it large: turn sync_mode off to download "
                "them one by one.",
                request_id=handle.request_id,
            ) from None
        if failed:
            assert final is not None
            reason = self.credentials.scrub(str(final.error or final.error_type))
            if final.error_type in CONTENT_POLICY_TYPES:
                raise content_policy_error(reason, handle.request_id)
            if response.status_code >= 400:
                error = self.error(response, "fetching the result", handle.request_id)
                if not isinstance(error, ServerError):
                    raise error
            raise JobFailedError(f"fal finished the request with an error: {reason}", request_id=handle.request_id)
        if response.status_code >= 400:
            raise self.error(response, "fetching the result", handle.request_id)
        try:
            data = response.json()
        except ValueError as exc:
            raise ResultError(
                "fal returned a result that is not JSON. Load it again later by its request id.",
                request_id=handle.request_id,
            ) from exc
        if not isinstance(data, dict):
            raise ResultError("fal returned a result that is not a JSON object.", request_id=handle.request_id)
        return data

    async def cancel(self, handle: RequestHandle, deadline: Deadline | None = None) -> CancelAnswer:
        """Ask fal once to stop the request, within `deadline` (`CANCEL_TIMEOUT_S` by default). Never
        raises: an answer that may change when asked again (no answer, 408, 429, 5xx) is not `final`."""
        try:
            response = await send("PUT", handle.cancel_url, what="cancelling",
                                  deadline=deadline or Deadline(CANCEL_TIMEOUT_S), headers=self._headers(),
                                  policy=NO_RETRY)
        except FalError as exc:
            log.debug("cancelling fal request %s: %s", handle.request_id, exc)
            return CancelAnswer(accepted=False, final=False)
        code = response.status_code
        log.debug("fal request %s cancel: HTTP %d", handle.request_id, code)
        if code < 300:
            return CancelAnswer(accepted=True, final=True)
        if code in RETRY_STATUS_IDEMPOTENT:
            return CancelAnswer(accepted=False, final=False, retry_after=retry_after_seconds(response))
        if code in (401, 403):
            log.warning("[Grok Imagine] fal refused the key when cancelling request %s (HTTP %d)",
                        handle.request_id, code)
        return CancelAnswer(accepted=False, final=True, unknown=code == 404)
