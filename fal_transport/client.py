"""The pack's HTTP client: one per running event loop, held by leases and closed when the last one ends.

ComfyUI runs every prompt in a fresh event loop (`asyncio.run`), and an `httpx.AsyncClient` must not
outlive its loop: its connections belong to it. So each loop gets one client (and one set of
admission limits) while somebody holds a `lease()`; when the last lease of that loop ends, the
client is closed and its sockets with it. Nothing stays behind from one prompt to the next, and
the SSL context, which costs tens of milliseconds to build, is built once per process.

Caps, per event loop (that is, per ComfyUI prompt, whatever its size):
- `MAX_CONNECTIONS` open connections (to fal's queue, storage and CDN together);
- `MAX_STREAMS` status streams; requests past it wait for a stream and poll meanwhile, all of them
  together about `MAX_POLLS_PER_S` times a second at most, shared by queue position (`PollBudget`);
- `MAX_POLLS` status checks in flight, so that the streams and the polls never want more connections
  than there are: a request waiting for one in httpx's pool costs a rescan of every waiter whenever any
  request starts or ends (with hundreds waiting, a Cancel of a long list took seconds to unwind);
- `MAX_SUBMITS` submits in flight; the others wait their turn before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from .aio import run_to_end
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


def open_clients() -> int:
    """How many clients are open now (0 once every node has ended): for the tests' leak checks."""
    return sum(1 for entry in current().loops.values() if not entry.client.is_closed)
