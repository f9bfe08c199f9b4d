"""Requests with retries that never pay twice, and waits that always end.

- Every attempt, body included, is bounded by the time the caller has left (`Deadline`): httpx's
  own timeouts are per read, so a body that trickles a byte a second would otherwise never end.
- `Retry-After` is honoured only when it is a finite number of seconds (or an HTTP date, taken as
  the seconds until it), and never past the deadline.
- A submit (not idempotent) is retried only where fal cannot have accepted it: nothing was sent
  (connection refused, a connect timeout, no free connection), a 429, or a front-door 502/503/504
  without `x-fal-request-id`.
- A caller may cap the body (`max_bytes`): it is then read a chunk at a time and never held past
  the cap (`BodyTooLarge`).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .aio import Deadline, within
from .client import ATTEMPT_TIMEOUT_S, CONNECT_TIMEOUT_S, lease
from .credentials import scrub_secrets
from .errors import NetworkError, SubmitUncertainError

log = logging.getLogger("grok_imagine_fal")

RETRY_STATUS_IDEMPOTENT = frozenset({408, 429, 500, 502, 503, 504})
FRONT_DOOR_STATUS = frozenset({502, 503, 504})
# Raised before a byte of the request left this process: safe to send again, and "nothing was sent".
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol,
            httpx.InvalidURL, httpx.LocalProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter."""

    max_attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:  # fal's own wait, as long as it is reasonable
            return min(retry_after, self.max_delay)
        return min(self.base_delay * (2 ** (attempt - 1)), self.max_delay) * random.uniform(0.5, 1.0)


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)


class BodyTooLarge(Exception):
    """An answer's body went past the caller's `max_bytes`; nothing more of it was read."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the body is larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` as seconds from now, or None when absent or unusable (inf, nan, garbage)."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def submit_is_safe_to_retry(response: httpx.Response | None, exc: BaseException | None) -> bool:
    """True only where fal cannot have accepted the submit (and so cannot bill it)."""
    if exc is not None:
        return isinstance(exc, NOT_SENT)
    assert response is not None
    if response.status_code == 429:
        return True
    return response.status_code in FRONT_DOOR_STATUS and "x-fal-request-id" not in response.headers


def describe(exc: BaseException, headers: dict[str, str] | None = None) -> str:
    """What went wrong, in words, never with a credential in it."""
    if isinstance(exc, asyncio.TimeoutError):
        return "no complete answer in time"
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    secret = (headers or {}).get("Authorization", "").partition(" ")[2]
    return scrub_secrets(text, secret) if secret else text


_ENCODING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


async def _request(client: httpx.AsyncClient, method: str, url: str, max_bytes: int | None,
                   **kwargs: Any) -> httpx.Response:
    """One attempt; with `max_bytes`, the body is read a chunk at a time up to that many bytes (decoded)."""
    if max_bytes is None:
        return await client.request(method, url, **kwargs)
    async with client.stream(method, url, **kwargs) as response:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise BodyTooLarge(max_bytes)
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _ENCODING_HEADERS]
        return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=response.request)


async def send(
    method: str,
    url: str,
    *,
    what: str,
    deadline: Deadline,
    idempotent: bool = True,
    headers: dict[str, str] | None = None,
    json: Any = None,
    content: bytes | Callable[[], AsyncIterator[bytes]] | None = None,
    params: dict[str, str] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
    max_bytes: int | None = None,
) -> httpx.Response:
    """Send one request, retrying transient failures within `deadline`; returns the last response
    (which may be an error status for the caller to interpret). `content` is the body, or a function
    that streams it afresh for each attempt (give its `Content-Length` in `headers`). A body past
    `max_bytes` raises `BodyTooLarge` at once."""
    attempt = 0
    async with lease() as loop_client:
        while True:
            attempt += 1
            response: httpx.Response | None = None
            failure: BaseException | None = None
            left = deadline.remaining()
            try:
                timeout = httpx.Timeout(min(ATTEMPT_TIMEOUT_S, max(left, 0.05)), connect=CONNECT_TIMEOUT_S,
                                        pool=min(20.0, max(left, 0.05)))
                response = await within(left, _request(
                    loop_client.client, method, url, max_bytes, headers=headers, json=json,
                    content=content() if callable(content) else content,
                    params=params, timeout=timeout))
            except (httpx.TransportError, httpx.TimeoutException, asyncio.TimeoutError) as exc:
                failure = exc

            if response is not None:
                if idempotent:
                    retryable = response.status_code in RETRY_STATUS_IDEMPOTENT
                else:
                    retryable = response.status_code >= 400 and submit_is_safe_to_retry(response, None)
                if not retryable:
                    return response
            elif not idempotent and not submit_is_safe_to_retry(None, failure):
                raise SubmitUncertainError(
                    f"The connection to fal broke while submitting ({describe(failure, headers)}). fal may "
                    "have accepted the request, so it was not sent again to avoid paying twice. Check your fal "
                    "dashboard's request history before queueing again."
                ) from failure

            retry_after = retry_after_seconds(response) if response is not None else None
            delay = policy.delay(attempt, retry_after)
            problem = f"HTTP {response.status_code}" if response is not None else describe(failure, headers)
            if attempt >= policy.max_attempts or delay >= deadline.remaining():
                if response is not None:
                    return response
                assert failure is not None
                sent = "" if isinstance(failure, NOT_SENT) else " (the last attempt may have reached fal)"
                raise NetworkError(
                    f"Could not reach fal for {what} after {attempt} attempt{'s' if attempt > 1 else ''} "
                    f"({problem}){sent}. Check your network connection (and FAL_QUEUE_BASE_URL if you set it), "
                    "then queue again."
                ) from failure
            log.debug("retrying %s after %s (attempt %d, waiting %.2fs)", what, problem, attempt, delay)
            await asyncio.sleep(delay)
