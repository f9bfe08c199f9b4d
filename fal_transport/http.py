"""The pack's HTTP: one client per running event loop, the background loop that submits and cancels
run on, and the one retry loop every request goes through (fal's queue, storage, result files).

Clients. ComfyUI runs every prompt in a fresh event loop (`asyncio.run`), and an `httpx.AsyncClient`
must not outlive its loop: its connections belong to it. So each loop gets one client (and one set
of admission limits) while somebody holds a `lease()`; when the last lease of that loop ends, the
client is closed and its sockets with it. Nothing stays behind from one prompt to the next, and the
SSL context, which costs tens of milliseconds to build, is built once per process.

Caps, per event loop (that is, per ComfyUI prompt, whatever its size):
- `MAX_CONNECTIONS` open connections (to fal's queue, storage and CDN together);
- `MAX_STREAMS` status streams; requests past it wait for a stream and poll meanwhile, all of them
  together about `MAX_POLLS_PER_S` times a second at most, shared by queue position (`PollBudget`);
- `MAX_POLLS` status checks in flight, so that the streams and the polls never want more connections
  than there are: a request waiting for one in httpx's pool costs a rescan of every waiter whenever any
  request starts or ends (with hundreds waiting, a Cancel of a long list took seconds to unwind);
- `MAX_SUBMITS` submits in flight; the others wait their turn before anything is sent.

The background loop (`worker()`). ComfyUI ends a prompt's loop with `asyncio.run`, which cancels
every task still running. A submit that was on its way when the user pressed Cancel, and the cancel
sent to fal for it, must not be cut off that way: fal may have accepted the request, and only its
answer tells the request id. So submits and cancels run on a loop of their own, on a thread of its
own; the node's loop only waits for them, and can stop waiting at once. That loop keeps one lease on
its client for its whole life, so submits also reuse their connections from one prompt to the next.

The retry loop (`send`, and `stream` for bodies read as they arrive):
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
import concurrent.futures
import contextlib
import email.utils
import logging
import math
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from .aio import Deadline, run_to_end, within
from .credentials import scrub_secrets
from .errors import NetworkError, SubmitUncertainError
from .process_state import current

USER_AGENT = "grok-imagine-fal (ComfyUI custom nodes)"
MAX_CONNECTIONS = 64
# As many as the open connections: httpcore 1.0 closes an idle connection whenever the pool holds more
# connections in all (idle or not) than this, so a lower figure here would cost a new connection (and TLS
# handshake) per status check once the streams hold most of them (encode/httpcore#1000).
MAX_KEEPALIVE = MAX_CONNECTIONS
MAX_STREAMS = 32
MAX_POLLS = MAX_CONNECTIONS - MAX_STREAMS
MAX_SUBMITS = 16
MAX_POLLS_PER_S = 20.0  # all polling requests of a loop together, at most (as long as none waits its slowest)
POLL_FASTEST_S = 0.25  # between two polls of a request at the head of fal's queue, or running
POLL_PER_PLACE_S = 1.0  # and this much more for each place further back
POLL_SLOWEST_S = 300.0
MAX_REDIRECTS = 5
ATTEMPT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0


class Slots:
    """`size` slots granted first come, first served. `request()` gives a future that is done once a
    slot is granted: a waiter may do other work meanwhile (poll) and `give_up` without losing a slot."""

    def __init__(self, size: int) -> None:
        self.size = self.free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def request(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.free > 0 and not self._waiters:
            self.free -= 1
            future.set_result(None)
        else:
            self._waiters.append(future)
        return future

    def give_up(self, future: asyncio.Future[None]) -> None:
        """The holder of `future` is done with it: its slot (if granted) passes to the next waiter."""
        if future.done() and not future.cancelled():
            self.free += 1
        else:
            future.cancel()
        while self.free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.free -= 1
                waiter.set_result(None)

    @property
    def held(self) -> int:
        return self.size - self.free

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())


class PollBudget:
    """How long each request of a loop that polls its status waits between two polls.

    A request `n` places from the head of fal's queue waits `POLL_FASTEST_S + n * POLL_PER_PLACE_S`
    (one running, or whose place is not known, `POLL_FASTEST_S`), stretched for all alike when more
    than `per_s` polls a second would result, and at most `POLL_SLOWEST_S`: a request deep in the
    queue is checked far less often than the one at its head, and a thousand queued requests cost a
    few polls a second."""

    def __init__(self, per_s: float) -> None:
        self.per_s = per_s
        self._weights: dict[object, float] = {}  # polls a second each would make at the fastest pace, / per fastest
        self._total = 0.0

    def place(self, poller: object, position: int | None) -> None:
        """`poller` polls, `position` places from the head of fal's queue (None: running, or not known)."""
        weight = POLL_FASTEST_S / (POLL_FASTEST_S + POLL_PER_PLACE_S * max(0, position or 0))
        self._total += weight - self._weights.get(poller, 0.0)
        self._weights[poller] = weight

    def leave(self, poller: object) -> None:
        self._total -= self._weights.pop(poller, 0.0)
        if not self._weights:
            self._total = 0.0  # no drift from float sums once nobody polls

    def interval(self, poller: object) -> float:
        """Seconds until `poller`'s next poll."""
        stretch = max(POLL_FASTEST_S, self._total / self.per_s)
        return min(POLL_SLOWEST_S, stretch / self._weights.get(poller, 1.0))

    @property
    def pollers(self) -> int:
        return len(self._weights)


@dataclass
class LoopClient:
    """The client of one event loop, and the admission limits its requests share."""

    client: httpx.AsyncClient
    streams: Slots = field(default_factory=lambda: Slots(MAX_STREAMS))
    submits: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_SUBMITS))
    polls: PollBudget = field(default_factory=lambda: PollBudget(MAX_POLLS_PER_S))
    polls_in_flight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_POLLS))
    leases: int = 0


def ssl_context() -> ssl.SSLContext:
    """The process's SSL context (certificate store honouring SSL_CERT_FILE/SSL_CERT_DIR), built once."""
    state = current()
    with state.lock:
        if state.ssl_context is None:
            state.ssl_context = httpx.create_ssl_context(trust_env=True)
        return state.ssl_context


def _new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(ATTEMPT_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, pool=None),
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=True,
        verify=ssl_context(),
    )


@contextlib.asynccontextmanager
async def lease() -> AsyncIterator[LoopClient]:
    """Use the running loop's client for the block; leases nest (a node holds one for its whole run,
    each request takes one more), and the last one to end closes the client."""
    loop = asyncio.get_running_loop()
    loops = current().loops
    entry: LoopClient | None = loops.get(loop)
    if entry is None or entry.client.is_closed:
        entry = LoopClient(_new_client())
        loops[loop] = entry
    entry.leases += 1
    try:
        yield entry
    finally:
        entry.leases -= 1
        if entry.leases == 0:
            if loops.get(loop) is entry:
                del loops[loop]
            await run_to_end(entry.client.aclose())



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


R = TypeVar("R")


@dataclass(frozen=True)
class Tries(Generic[R]):
    """How a request went after its retries: its last outcome, or the failure of its last attempt."""

    outcome: R | None
    failure: BaseException | None
    attempts: int
    out_of_time: bool = False  # it stopped because the deadline came (or the next wait would pass it)


async def retry(attempt: Callable[[], Awaitable[R]], *, deadline: Deadline, policy: RetryPolicy,
                again: Callable[[R | None, BaseException | None], bool], what: str) -> Tries[R]:
    """The one retry loop of the pack: `attempt()` until its outcome (or its transport failure) is one `again`
    does not want tried again, `policy.max_attempts` are spent, or the next wait would pass `deadline`. Waits
    fal's `Retry-After` when an outcome is a response that gives one (as far as it is reasonable)."""
    attempts = 0
    while True:
        attempts += 1
        outcome: R | None = None
        failure: BaseException | None = None
        try:
            outcome = await within(deadline.remaining(), attempt())
        except (httpx.TransportError, httpx.TimeoutException, asyncio.TimeoutError) as exc:
            failure = exc
        if not again(outcome, failure):
            return Tries(outcome, failure, attempts, isinstance(failure, asyncio.TimeoutError))
        response = outcome if isinstance(outcome, httpx.Response) else None
        delay = policy.delay(attempts, retry_after_seconds(response) if response is not None else None)
        if delay >= deadline.remaining():
            return Tries(outcome, failure, attempts, out_of_time=True)
        if attempts >= policy.max_attempts:
            return Tries(outcome, failure, attempts)
        problem = f"HTTP {response.status_code}" if response is not None else describe(failure)
        log.debug("retrying %s after %s (attempt %d, waiting %.2fs)", what, problem, attempts, delay)
        await asyncio.sleep(delay)


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

    def again(response: httpx.Response | None, failure: BaseException | None) -> bool:
        if response is not None:
            if idempotent:
                return response.status_code in RETRY_STATUS_IDEMPOTENT
            return response.status_code >= 400 and submit_is_safe_to_retry(response, None)
        return idempotent or submit_is_safe_to_retry(None, failure)

    async with lease() as loop_client:
        async def attempt() -> httpx.Response:
            left = max(deadline.remaining(), 0.05)
            timeout = httpx.Timeout(min(ATTEMPT_TIMEOUT_S, left), connect=CONNECT_TIMEOUT_S, pool=min(20.0, left))
            return await _request(loop_client.client, method, url, max_bytes, headers=headers, json=json,
                                  content=content() if callable(content) else content, params=params,
                                  timeout=timeout)

        tries = await retry(attempt, deadline=deadline, policy=policy, again=again, what=what)
    if tries.outcome is not None:
        return tries.outcome
    failure = tries.failure
    assert failure is not None
    if not idempotent and not submit_is_safe_to_retry(None, failure):
        raise SubmitUncertainError(
            f"The connection to fal broke while submitting ({describe(failure, headers)}). fal may "
            "have accepted the request, so it was not sent again to avoid paying twice. Check your fal "
            "dashboard's request history before queueing again."
        ) from failure
    sent = "" if isinstance(failure, NOT_SENT) else " (the last attempt may have reached fal)"
    attempts = tries.attempts
    raise NetworkError(
        f"Could not reach fal for {what} after {attempts} attempt{'s' if attempts > 1 else ''} "
        f"({describe(failure, headers)}){sent}. Check your network connection (and FAL_QUEUE_BASE_URL if you set "
        "it), then queue again."
    ) from failure


T = TypeVar("T")


class Worker:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="grok-imagine-fal background", daemon=True)
        self.thread.start()
        self._ready.wait(5.0)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with lease():
            self._ready.set()
            await self._stop.wait()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.gather(*pending, return_exceptions=True)

    def run(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start `work` on the background loop; its future can be waited for from any thread or loop."""
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is under way, close the client and end the thread (used when state is reset)."""
        if self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(timeout)


def worker() -> Worker:
    """The process's background loop, started on first use."""
    state = current()
    with state.lock:
        running = state.worker
    if running is not None and running.thread.is_alive():
        return running
    started = Worker()  # not under the lock: the new loop's client takes it (ssl_context)
    with state.lock:
        if state.worker is None or not state.worker.thread.is_alive():
            state.worker, started = started, None
        running = state.worker
    if started is not None:
        started.stop()
    return running
