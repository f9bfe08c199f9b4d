"""Shared `httpx.AsyncClient` per event loop, and requests with retries that never pay twice.

A client opened in one event loop must not be used from another ("Event loop is closed"), so
clients are kept per running loop and dropped with it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import weakref
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import ServerError, SubmitUncertainError

log = logging.getLogger("grok_imagine_fal")

USER_AGENT = "grok-imagine-fal (ComfyUI custom nodes)"
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16)
MAX_REDIRECTS = 5

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def http_client() -> httpx.AsyncClient:
    """The client of the running event loop, created on first use. It sends no credentials."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            timeout=_TIMEOUT,
            limits=_LIMITS,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            trust_env=True,
        )
        _clients[loop] = client
    return client


class Deadline:
    """A point in monotonic time by which something must be done."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter."""

    max_attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay * 4)
        return min(self.base_delay * (2 ** (attempt - 1)), self.max_delay) * random.uniform(0.5, 1.0)


DEFAULT_RETRY = RetryPolicy()
RETRY_STATUS_IDEMPOTENT = frozenset({408, 429, 500, 502, 503, 504})
FRONT_DOOR_STATUS = frozenset({502, 503, 504})


def retry_after_seconds(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def submit_is_safe_to_retry(response: httpx.Response | None, exc: BaseException | None) -> bool:
    """True only where fal cannot have accepted the submit (and so cannot bill it)."""
    if exc is not None:
        # Never connected: refused, DNS, or a connect timeout. Anything later may have been accepted.
        return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
    assert response is not None
    if response.status_code == 429:
        return True
    return response.status_code in FRONT_DOOR_STATUS and "x-fal-request-id" not in response.headers


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def send(
    method: str,
    url: str,
    *,
    what: str,
    deadline: Deadline,
    idempotent: bool = True,
    headers: dict[str, str] | None = None,
    json: Any = None,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> httpx.Response:
    """Send one request, retrying transient failures within `deadline`.

    Idempotent requests (status, result, downloads) are retried on connection errors, timeouts,
    408/429/5xx. A non-idempotent submit is retried only where fal cannot have accepted it.
    Returns the last response (which may be an error status the caller interprets).
    """
    client = http_client()
    attempt = 0
    while True:
        attempt += 1
        response: httpx.Response | None = None
        failure: BaseException | None = None
        try:
            timeout = httpx.Timeout(max(0.5, min(30.0, deadline.remaining())), connect=10.0)
            response = await client.request(
                method, url, headers=headers, json=json, content=content, params=params, timeout=timeout
            )
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            failure = exc

        if failure is None and response is not None:
            if idempotent:
                retryable = response.status_code in RETRY_STATUS_IDEMPOTENT
            else:
                retryable = response.status_code >= 400 and submit_is_safe_to_retry(response, None)
            if not retryable:
                return response
        elif not idempotent and not submit_is_safe_to_retry(None, failure):
            raise SubmitUncertainError(
                f"The connection to fal broke while submitting ({_describe(failure)}). fal may have "
                "accepted the request, so it was not sent again to avoid paying twice. Check your fal "
                "dashboard's request history before queueing again."
            ) from failure

        retry_after = retry_after_seconds(response) if response is not None else None
        delay = policy.delay(attempt, retry_after)
        problem = f"HTTP {response.status_code}" if response is not None else _describe(failure)  # type: ignore[arg-type]
        if attempt >= policy.max_attempts or delay >= deadline.remaining():
            if response is not None:
                return response
            raise ServerError(
                f"Could not reach fal for {what} after {attempt} attempts ({problem}). Check your network "
                "connection (and FAL_QUEUE_BASE_URL if you set it), then queue again."
            ) from failure
        log.debug("retrying %s after %s (attempt %d, waiting %.2fs)", what, problem, attempt, delay)
        await asyncio.sleep(delay)
