"""fal's queue protocol: submit, follow the status stream (or poll), fetch the result, cancel.

    POST {base}/{endpoint}                 -> {request_id, status_url, response_url, cancel_url}
    GET  {status_url}/stream?logs=1        -> server-sent events, one status JSON per event
    GET  {status_url}?logs=1               -> the same status JSON (fallback when streaming fails)
    GET  {response_url}                    -> the result JSON
    PUT  {cancel_url}                      -> 202 when fal will stop the request

Only these requests carry `Authorization: Key ...`; the key never goes anywhere else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from . import config
from .config import Limits
from .credentials import FalCredentials
from .errors import (
    AuthenticationError,
    ContentPolicyError,
    FalError,
    FalTimeoutError,
    InvalidInputError,
    JobFailedError,
    RequestCancelledError,
    RequestNotFoundError,
    ResultError,
    ServerError,
    SubmitUncertainError,
)
from .http import DEFAULT_RETRY, Deadline, RetryPolicy, http_client, send

log = logging.getLogger("grok_imagine_fal")

State = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
STATES: tuple[State, ...] = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
CONTENT_POLICY_TYPES = frozenset({"content_policy_violation", "content_moderation", "nsfw"})
POLL_INTERVAL_S = 0.25
TICK_S = 0.1
STREAM_READ_TIMEOUT_S = 30.0
MAX_STREAM_FAILURES = 3
CANCEL_TIMEOUT_S = 5.0
SUBMIT_TIMEOUT_S = 60.0
_NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class RequestHandle:
    """Where to follow one submitted request."""

    endpoint: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


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
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, request_id: str) -> QueueStatus:
        if not isinstance(data, dict) or data.get("status") not in STATES:
            raise ResultError(
                f"fal sent a status this pack does not understand: {str(data)[:200]!r}.", request_id=request_id
            )
        logs = tuple(
            LogLine(str(item.get("message", "")), str(item.get("timestamp", "")))
            for item in data.get("logs") or ()
            if isinstance(item, dict)
        )
        position = data.get("queue_position")
        return cls(
            state=data["status"],
            queue_position=position if isinstance(position, int) else None,
            logs=logs,
            error=data.get("error") or None,
            error_type=data.get("error_type") or None,
            metrics=data.get("metrics") or {},
        )


StatusCallback = Callable[[QueueStatus], None]
CancelCheck = Callable[[], bool]


def endpoint_app(endpoint: str) -> str:
    """`owner/app` of an endpoint id: fal's request URLs drop any sub-path such as `/edit`."""
    parts = endpoint.strip("/").split("/")
    return "/".join(parts[:2])


def _detail_text(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """(human text, field name, error type) from a fal error body."""
    content_type = response.headers.get("content-type", "")
    error_type = response.headers.get("x-fal-error-type")
    try:
        body = response.json()
    except ValueError:
        if "html" in content_type or response.text.lstrip().startswith("<"):
            return "an HTML error page instead of fal's JSON", None, error_type
        return (response.text.strip()[:300] or "an empty body"), None, error_type
    if isinstance(body, dict):
        error_type = body.get("error_type") or error_type
        detail = body.get("detail", body)
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            first = detail[0]
            loc = first.get("loc") or []
            field_name = str(loc[-1]) if loc else None
            error_type = first.get("type") or error_type
            return str(first.get("msg", detail)), field_name, error_type
        return str(detail)[:300], None, error_type
    return str(body)[:300], None, error_type


def error_from_response(
    response: httpx.Response, *, what: str, credentials: FalCredentials, request_id: str | None = None
) -> FalError:
    """Turn a fal error response into the exception a user can act on."""
    request_id = request_id or response.headers.get("x-fal-request-id")
    text, field_name, error_type = _detail_text(response)
    text = credentials.scrub(text)
    code = response.status_code
    if code in (401, 403):
        return AuthenticationError(
            f"fal rejected the API key (HTTP {code}) during {what}. The key from {credentials.source} "
            "is wrong, revoked or lacks access: create a new key at https://fal.ai/dashboard/keys, set "
            "FAL_KEY to it and restart ComfyUI.",
            request_id=request_id,
        )
    if code == 404 and request_id:
        return RequestNotFoundError(
            f"fal does not know this request (HTTP 404 during {what}). Check the request id; fal keeps a "
            "result for about an hour after it completes (minutes for large sync-mode results).",
            request_id=request_id,
        )
    if error_type in CONTENT_POLICY_TYPES or "content polic" in text.lower():
        return ContentPolicyError(
            f"fal refused the request under its content policy: {text} Change the prompt (or the "
            "input images) and queue again; refused requests may still be billed.",
            request_id=request_id,
        )
    if code == 422:
        named = f"input '{field_name}'" if field_name else "the inputs"
        return InvalidInputError(
            f"fal rejected {named}: {text} Fix that input on the node and queue again.",
            field=field_name,
            request_id=request_id,
        )
    if code == 429:
        return ServerError(
            f"fal is rate-limiting this key (HTTP 429) during {what} and retries did not get through. "
            "Wait a minute or lower the number of parallel requests, then queue again.",
            status_code=code,
            request_id=request_id,
        )
    if code >= 500:
        return ServerError(
            f"fal had a server error (HTTP {code}) during {what}: {text}. This is usually temporary; "
            "queue again in a moment.",
            status_code=code,
            request_id=request_id,
        )
    return ServerError(f"fal answered HTTP {code} during {what}: {text}", status_code=code, request_id=request_id)


class FalQueue:
    """The queue protocol for one set of credentials. Cheap to create; holds no connections."""

    def __init__(self, credentials: FalCredentials) -> None:
        self.credentials = credentials

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self.credentials.authorization, "Accept": "application/json"}

    def handle_for(self, endpoint: str, request_id: str) -> RequestHandle:
        """The handle of an earlier request, rebuilt from its endpoint and id (for recovery)."""
        base = f"{config.queue_base_url()}/{endpoint_app(endpoint)}/requests/{request_id}"
        return RequestHandle(endpoint, request_id, f"{base}/status", base, f"{base}/cancel")

    async def submit(self, endpoint: str, arguments: dict[str, Any]) -> RequestHandle:
        """Queue one request at fal. Retried only where fal cannot have accepted it."""
        url = f"{config.queue_base_url()}/{endpoint}"
        response = await send(
            "POST",
            url,
            what=f"the submit to {endpoint}",
            deadline=Deadline(SUBMIT_TIMEOUT_S),
            idempotent=False,
            headers=self._headers(),
            json=arguments,
        )
        request_id = response.headers.get("x-fal-request-id")
        if response.status_code >= 400:
            error = error_from_response(response, what=f"the submit to {endpoint}", credentials=self.credentials)
            if isinstance(error, ServerError) and response.status_code >= 500 and request_id:
                raise SubmitUncertainError(
                    f"fal answered HTTP {response.status_code} to the submit after accepting it, so it was "
                    "not sent again to avoid paying twice. Load its images with the Grok Imagine Result "
                    "node once it completes, or check your fal dashboard.",
                    request_id=request_id,
                )
            raise error
        try:
            body = response.json()
            request_id = str(body["request_id"])
            base = f"{config.queue_base_url()}/{endpoint_app(endpoint)}/requests/{request_id}"
            return RequestHandle(
                endpoint=endpoint,
                request_id=request_id,
                status_url=str(body.get("status_url") or f"{base}/status"),
                response_url=str(body.get("response_url") or base),
                cancel_url=str(body.get("cancel_url") or f"{base}/cancel"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SubmitUncertainError(
                "fal accepted the submit but its answer could not be read, so it was not sent again. "
                "Check your fal dashboard's request history.",
                request_id=request_id,
            ) from exc

    async def status(self, handle: RequestHandle, deadline: Deadline) -> QueueStatus:
        response = await send(
            "GET",
            handle.status_url,
            what="a status check",
            deadline=deadline,
            headers=self._headers(),
            params={"logs": "1"},
        )
        if response.status_code >= 400:
            raise error_from_response(
                response, what="a status check", credentials=self.credentials, request_id=handle.request_id
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise ResultError("fal sent a status that is not JSON.", request_id=handle.request_id) from exc
        return QueueStatus.from_json(data, handle.request_id)

    async def _stream(self, handle: RequestHandle) -> AsyncIterator[QueueStatus]:
        """Status events from `{status_url}/stream`. Raises `_StreamUnavailable` to ask for polling."""
        timeout = httpx.Timeout(STREAM_READ_TIMEOUT_S, connect=10.0)
        async with http_client().stream(
            "GET", f"{handle.status_url}/stream", params={"logs": "1"}, headers=self._headers(), timeout=timeout
        ) as response:
            if response.status_code in (401, 403):
                await response.aread()
                raise error_from_response(
                    response, what="the status stream", credentials=self.credentials, request_id=handle.request_id
                )
            if response.status_code != 200 or "text/event-stream" not in response.headers.get("content-type", ""):
                raise _StreamUnavailable(f"HTTP {response.status_code}")
            data_lines: list[str] = []
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data_lines.append(line[5:].lstrip())
                elif not line and data_lines:
                    payload, data_lines = "\n".join(data_lines), []
                    try:
                        yield QueueStatus.from_json(json.loads(payload), handle.request_id)
                    except ValueError as exc:
                        raise _StreamUnavailable("unreadable event") from exc

    async def _watch(self, handle: RequestHandle, sink: asyncio.Queue[QueueStatus | BaseException]) -> None:
        """Feed status reports into `sink`: from the stream while it works, then by polling."""
        try:
            failures = 0
            while failures < MAX_STREAM_FAILURES:
                try:
                    async for status in self._stream(handle):
                        sink.put_nowait(status)
                        if status.state == "COMPLETED":
                            return
                    failures += 1  # the stream ended before COMPLETED: it was cut
                except _StreamUnavailable:
                    break
                except httpx.ReadTimeout:
                    continue  # a quiet stream: reconnect
                except (httpx.TransportError, httpx.TimeoutException):
                    failures += 1
                await asyncio.sleep(0.05 * failures)
            log.debug("status stream unavailable for %s; polling", handle.request_id)
            while True:
                status = await self.status(handle, Deadline(60.0))
                sink.put_nowait(status)
                if status.state == "COMPLETED":
                    return
                await asyncio.sleep(POLL_INTERVAL_S)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the waiting side, which raises it
            sink.put_nowait(exc)

    async def wait(
        self,
        handle: RequestHandle,
        *,
        limits: Limits,
        submitted_at: float,
        on_status: StatusCallback | None = None,
        should_cancel: CancelCheck | None = None,
        on_tick: Callable[[], None] | None = None,
        cancel_on_stop: bool = True,
    ) -> QueueStatus:
        """Wait until the request completes, honouring the user's cancel and both time limits.

        `on_status` gets every status report, `on_tick` is called about ten times a second.
        On cancel or when a limit passes, fal is asked to cancel the request before raising (unless
        `cancel_on_stop` is False: a request recovered by id is only watched, never cancelled).
        """
        cancel_at_fal = self.cancel if cancel_on_stop else _not_cancelled
        sending: asyncio.Future[bool] | None = None

        async def cancel(request: RequestHandle) -> bool:
            """At most one cancel per request, and one that a task cancellation cannot cut short."""
            nonlocal sending
            if sending is None:
                sending = asyncio.ensure_future(cancel_at_fal(request))
            return await _complete(sending)

        sink: asyncio.Queue[QueueStatus | BaseException] = asyncio.Queue()
        watcher = asyncio.create_task(self._watch(handle, sink))
        running = False
        finished = False
        try:
            while True:
                try:
                    item = await asyncio.wait_for(sink.get(), timeout=TICK_S)
                except asyncio.TimeoutError:
                    item = None
                if isinstance(item, BaseException):
                    raise item
                if item is not None:
                    running = running or item.state != "IN_QUEUE"
                    if on_status is not None:
                        on_status(item)
                    if item.state == "COMPLETED":
                        finished = True
                        return item
                elif on_tick is not None:
                    on_tick()
                await self._check_stop(handle, limits, submitted_at, running, should_cancel, cancel)
        except (FalTimeoutError, RequestCancelledError):
            finished = True  # already cancelled at fal
            raise
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if not finished:
                # Anything else ends the wait early (another node failed, the task was cancelled, a
                # status error): do not leave fal working and billing for nobody.
                await cancel(handle)

    async def _check_stop(
        self,
        handle: RequestHandle,
        limits: Limits,
        submitted_at: float,
        running: bool,
        should_cancel: CancelCheck | None,
        cancel: Callable[[RequestHandle], Awaitable[bool]],
    ) -> None:
        if should_cancel is not None and should_cancel():
            await cancel(handle)
            raise RequestCancelledError("Cancelled by the user; fal was asked to stop.", request_id=handle.request_id)
        elapsed = time.monotonic() - submitted_at
        if not running and elapsed > limits.queue_timeout:
            outcome = "was cancelled at fal" if await cancel(handle) else "was given up"
            raise FalTimeoutError(
                f"The request waited in fal's queue longer than {limits.queue_timeout:g} s "
                f"({config.QUEUE_TIMEOUT_ENV}) and {outcome}. fal is busy: queue again later, or raise "
                f"{config.QUEUE_TIMEOUT_ENV}.",
                limit_name=config.QUEUE_TIMEOUT_ENV,
                request_id=handle.request_id,
            )
        if elapsed > limits.total_timeout:
            outcome = "was cancelled at fal" if await cancel(handle) else "was given up"
            raise FalTimeoutError(
                f"The request took longer than {limits.total_timeout:g} s ({config.TOTAL_TIMEOUT_ENV}) and "
                f"{outcome}. Queue again, or raise {config.TOTAL_TIMEOUT_ENV}.",
                limit_name=config.TOTAL_TIMEOUT_ENV,
                request_id=handle.request_id,
            )

    async def result(self, handle: RequestHandle, final: QueueStatus | None = None) -> dict[str, Any]:
        """The result JSON of a completed request; raises the request's own error if it failed."""
        failed = final is not None and (final.error or final.error_type)
        response = await send(
            "GET",
            handle.response_url,
            what="fetching the result",
            deadline=Deadline(60.0),
            headers=self._headers(),
            policy=_NO_RETRY if failed else DEFAULT_RETRY,
        )
        if response.status_code >= 400:
            raise error_from_response(
                response, what="fetching the result", credentials=self.credentials, request_id=handle.request_id
            )
        if failed:
            assert final is not None
            if final.error_type in CONTENT_POLICY_TYPES:
                raise ContentPolicyError(
                    f"fal refused the request under its content policy: {final.error}",
                    request_id=handle.request_id,
                )
            raise JobFailedError(
                f"fal finished the request with an error: {self.credentials.scrub(str(final.error))}",
                request_id=handle.request_id,
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise ResultError(
                "fal returned a result that is not JSON. Load it again later with the Grok Imagine Result node.",
                request_id=handle.request_id,
            ) from exc
        if not isinstance(data, dict):
            raise ResultError(f"fal returned an unexpected result: {str(data)[:200]!r}.", request_id=handle.request_id)
        return data

    async def cancel(self, handle: RequestHandle) -> bool:
        """Ask fal to stop the request. Never raises; True when fal accepted the cancel."""
        try:
            response = await send(
                "PUT",
                handle.cancel_url,
                what="cancelling",
                deadline=Deadline(CANCEL_TIMEOUT_S),
                headers=self._headers(),
            )
        except FalError as exc:
            log.warning("could not cancel fal request %s: %s", handle.request_id, exc)
            return False
        accepted = response.status_code == 202
        log.info("fal request %s cancel: HTTP %d", handle.request_id, response.status_code)
        return accepted


async def _not_cancelled(handle: RequestHandle) -> bool:
    return False


async def _complete(work: asyncio.Future[bool]) -> bool:
    """Await `work` to its end even if the awaiting task is cancelled meanwhile (the cancellation is
    passed on afterwards): a cancel for fal must leave before the event loop may close."""
    cancelled = False
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return work.result()


class _StreamUnavailable(Exception):
    """The status stream cannot be used for this request; poll instead."""

