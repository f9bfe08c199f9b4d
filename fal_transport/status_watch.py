"""Following a submitted request until it completes: fal's status stream, or polling, within limits.

Each request follows `{status_url}/stream` (server-sent events) while it holds one of the loop's
stream slots (`client.MAX_STREAMS`); slots go to requests in the order they asked. A request that
waits for a slot, or whose stream is unavailable, polls `{status_url}?logs=1` instead, less often
the deeper it is in fal's queue, all polling requests of a loop together about 20 times a second at
most (`client.PollBudget`). When a slot frees, the next waiting request takes it at once.

A stream is trusted only while it talks: when it carries no event for `STREAM_QUIET_S`, the
request's status is checked, and again at growing intervals while the stream stays quiet (a quiet
stream is normal for a request waiting its turn). A stream line longer than
`MAX_STREAM_LINE_BYTES` gives up the stream for polling; nothing past that is held in memory.

The wait ends, whatever fal does:
- the user's Cancel (the loop's one `aio.CancelWatch` looks every tick for all its requests);
- `queue_timeout` without progress while queued (no state change, no drop in queue position), as a
  status check confirms when the limit is reached: a request polled rarely is never given up on
  what it was last told;
- `run_timeout` after fal started running the request.
Between those, a waiting request runs only when something happens to it: no timer per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx

from . import config
from .aio import TICK_S, Deadline, watching
from .config import Limits
from .errors import FalTimeoutError, RequestCancelledError
from .http import LoopClient, lease
from .queue import STATES, STATUS_TIMEOUT_S, FalQueue, QueueStatus, RequestHandle

log = logging.getLogger("grok_imagine_fal")

STREAM_READ_TIMEOUT_S = 30.0
MAX_STREAM_FAILURES = 3
STREAM_QUIET_S = 3.0  # a stream silent this long (pings aside): check the status
STREAM_QUIET_MAX_S = 30.0  # the longest between two checks of a stream that stays quiet
MAX_STREAM_LINE_BYTES = 1024 * 1024  # a status event is about a kilobyte
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass
class WaitEvents:
    """What the waiting side is told, and how it learns that the user pressed Cancel."""

    on_status: Callable[[QueueStatus], None] | None = None
    on_tick: Callable[[], None] | None = None  # about once a second while the request is followed
    should_cancel: Callable[[], bool] | None = None  # True: the user pressed Cancel (asked every tick)


class _StreamUnavailable(Exception):
    """The status stream cannot be used for this request; poll instead."""


class _StreamTooLong(_StreamUnavailable):
    """The stream sent a line (or an event) over `MAX_STREAM_LINE_BYTES`."""


class _Lines:
    """Lines of a byte stream (ended by CR, LF or CRLF), each at most `MAX_STREAM_LINE_BYTES`."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += chunk
        lines, start = [], 0
        while (end := _LINE_END.search(buffer, start)) is not None:
            if end.group() == b"\r" and end.end() == len(buffer):
                break  # a CR at the end of a chunk may be the first half of a CRLF
            lines.append(bytes(buffer[start:end.start()]))
            start = end.end()
        del buffer[:start]
        if len(buffer) > MAX_STREAM_LINE_BYTES or any(len(line) > MAX_STREAM_LINE_BYTES for line in lines):
            raise _StreamTooLong(f"a line longer than {MAX_STREAM_LINE_BYTES // 2**20} MiB")
        return lines


async def _stream(queue: FalQueue, handle: RequestHandle, loop_client: LoopClient) -> AsyncIterator[QueueStatus]:
    """Status events from `{status_url}/stream`. Raises `_StreamUnavailable` to ask for polling."""
    timeout = httpx.Timeout(STREAM_READ_TIMEOUT_S, connect=10.0, pool=20.0)
    async with loop_client.client.stream("GET", f"{handle.status_url}/stream", params={"logs": "1"},
                                         headers=queue._headers(), timeout=timeout) as response:
        if response.status_code in (401, 403):
            await response.aread()
            raise queue.error(response, "the status stream", handle.request_id)
        if response.status_code != 200 or "text/event-stream" not in response.headers.get("content-type", ""):
            raise _StreamUnavailable(f"HTTP {response.status_code}")
        lines, data_lines, size = _Lines(), [], 0
        async for chunk in response.aiter_bytes():
            for line in lines.feed(chunk):
                if line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip())
                    size += len(line)
                    if size > MAX_STREAM_LINE_BYTES:
                        raise _StreamTooLong(f"an event longer than {MAX_STREAM_LINE_BYTES // 2**20} MiB")
                elif not line and data_lines:
                    payload, data_lines, size = b"\n".join(data_lines), [], 0
                    try:
                        yield QueueStatus.from_json(json.loads(payload), handle.request_id)
                    except ValueError as exc:
                        raise _StreamUnavailable("unreadable event") from exc


def _rank(status: QueueStatus) -> int:
    return STATES.index(status.state)


async def _read_stream(queue: FalQueue, handle: RequestHandle, loop_client: LoopClient,
                       deliver: Callable[[QueueStatus], None]) -> bool:
    """One connection of the stream, checked by a status check whenever it is quiet: True once the
    request completed; False when the stream ended before."""
    loop = asyncio.get_running_loop()
    heard_at = loop.time()
    last: QueueStatus | None = None

    async def read() -> bool:
        nonlocal heard_at, last
        async for status in _stream(queue, handle, loop_client):
            heard_at, last = loop.time(), status
            deliver(status)
            if status.state == "COMPLETED":
                return True
        return False

    async def check_when_quiet() -> bool:
        quiet, checked_at = STREAM_QUIET_S, heard_at
        while True:
            since = max(heard_at, checked_at)
            await asyncio.sleep(max(0.0, since + quiet - loop.time()))
            if heard_at > since:  # the stream spoke meanwhile
                quiet = STREAM_QUIET_S
                continue
            status = await queue.status(handle, Deadline(60.0))
            deliver(status)
            if status.state == "COMPLETED":
                log.info("[Grok Imagine] fal's status stream for %s went quiet; a status check found it completed",
                         handle.request_id)
                return True
            behind = last is None or (status.state, status.queue_position) != (last.state, last.queue_position)
            quiet = STREAM_QUIET_S if behind else min(2 * quiet, STREAM_QUIET_MAX_S)
            checked_at = loop.time()

    reader, checker = asyncio.ensure_future(read()), asyncio.ensure_future(check_when_quiet())
    try:
        done, _ = await asyncio.wait({reader, checker}, return_when=asyncio.FIRST_COMPLETED)
        return (checker if checker in done else reader).result()
    finally:
        for task in (reader, checker):
            task.cancel()
        await asyncio.gather(reader, checker, return_exceptions=True)


async def _follow_stream(queue: FalQueue, handle: RequestHandle, loop_client: LoopClient,
                         deliver: Callable[[QueueStatus], None]) -> bool:
    """Follow the stream until COMPLETED (True) or until it should be given up for polling (False)."""
    failures = 0
    while failures < MAX_STREAM_FAILURES:
        try:
            if await _read_stream(queue, handle, loop_client, deliver):
                return True
            failures += 1  # the stream ended before COMPLETED: it was cut
        except _StreamTooLong as exc:
            log.warning("[Grok Imagine] fal's status stream for %s sent %s (the most this pack reads); following "
                        "the request by polling", handle.request_id, exc)
            return False
        except _StreamUnavailable:
            return False
        except httpx.ReadTimeout:
            continue  # a silent stream: reconnect
        except (httpx.TransportError, httpx.TimeoutException):
            failures += 1
        await asyncio.sleep(0.05 * failures)
    return False


async def _watch(queue: FalQueue, handle: RequestHandle, limits: Limits,
                 sink: asyncio.Queue[QueueStatus | BaseException]) -> None:
    """Feed status reports into `sink`: from the stream while this request holds a slot, by polling
    while it waits for one, and by polling for good once its stream proved unusable. A report that
    lags behind one already given (a stream event older than a status check) is dropped."""
    delivered = -1
    position: int | None = None

    def deliver(status: QueueStatus) -> None:
        nonlocal delivered, position
        if _rank(status) >= delivered:
            delivered = _rank(status)
            position = status.queue_position if status.state == "IN_QUEUE" else None
            sink.put_nowait(status)

    async with lease() as loop_client:
        budget = loop_client.polls
        me = object()
        # Until fal says where it is, a request takes its place behind the requests this loop follows.
        position = budget.pollers + loop_client.streams.held
        slot: asyncio.Future[None] | None = loop_client.streams.request()
        budget.place(me, position)
        try:
            first = True
            while True:
                wait = budget.interval(me) * (random.uniform(0.2, 1.0) if first else 1.0)
                if slot is not None:
                    if not slot.done():
                        await asyncio.wait({slot}, timeout=wait)
                    if slot.done():
                        budget.leave(me)
                        try:
                            if await _follow_stream(queue, handle, loop_client, deliver):
                                return
                        finally:
                            loop_client.streams.give_up(slot)
                            slot = None
                        budget.place(me, position)
                        log.debug("status stream unavailable for %s; polling", handle.request_id)
                elif not first:
                    await asyncio.sleep(wait)
                first = False
                async with loop_client.polls_in_flight:  # never a crowd of waiters in httpx's pool (see client)
                    status = await queue.status(handle, Deadline(60.0))
                deliver(status)
                if status.state == "COMPLETED":
                    return
                budget.place(me, position)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the waiting side, which raises it
            sink.put_nowait(exc)
        finally:
            if slot is not None:
                loop_client.streams.give_up(slot)
            budget.leave(me)


async def wait_until_done(
    queue: FalQueue,
    handle: RequestHandle,
    limits: Limits,
    events: WaitEvents,
    cancel: Callable[[], Awaitable[bool]],
) -> QueueStatus:
    """Wait until the request completes; returns its final status.

    On the user's Cancel, or when a limit passes, `cancel()` is awaited (it asks fal to stop, and
    answers whether fal accepted) before `RequestCancelledError` / `FalTimeoutError` is raised."""
    sink: asyncio.Queue[QueueStatus | BaseException] = asyncio.Queue()
    watcher = asyncio.ensure_future(_watch(queue, handle, limits, sink))
    progress_at = time.monotonic()
    running_since: float | None = None
    last: tuple[str, int | None] = ("IN_QUEUE", None)
    getter: asyncio.Future[QueueStatus | BaseException] | None = None

    def take(status: QueueStatus, now: float) -> None:
        nonlocal progress_at, running_since, last
        if _moved(last, status):
            progress_at = now
        last = (status.state, status.queue_position)
        if status.state != "IN_QUEUE" and running_since is None:
            running_since = now
        if events.on_status is not None:
            events.on_status(status)

    try:
        with watching(events.should_cancel, events.on_tick) as pressed:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(sink.get())
                limit_at = progress_at + limits.queue_timeout if running_since is None else \
                    running_since + limits.run_timeout
                await asyncio.wait({getter, pressed}, timeout=max(0.0, limit_at - time.monotonic()) + 0.01,
                                   return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    item, getter = getter.result(), None
                    if isinstance(item, BaseException):
                        raise item
                    take(item, time.monotonic())
                elif not pressed.done() and running_since is None:  # the queue limit: is it still where it was?
                    item = await _status_unless(queue, handle, pressed)
                    if item is not None:
                        take(item, time.monotonic())
                else:
                    item = None
                if item is not None and item.state == "COMPLETED":
                    return item
                if pressed.done():
                    pressed.result()  # what `should_cancel` or `on_tick` raised, if either did
                await _check_stop(handle, limits, pressed.done(), cancel, time.monotonic(), progress_at,
                                  running_since)
    finally:
        for task in (watcher, getter):
            while task is not None and not task.done():  # a stream's read can let a cancel pass (httpcore/anyio)
                task.cancel()
                await asyncio.wait({task}, timeout=TICK_S)
        await asyncio.gather(*(t for t in (watcher, getter) if t is not None), return_exceptions=True)


async def _status_unless(queue: FalQueue, handle: RequestHandle, pressed: asyncio.Future[None]) -> QueueStatus | None:
    """A status check, or None when the user presses Cancel first."""
    check = asyncio.ensure_future(queue.status(handle, Deadline(STATUS_TIMEOUT_S)))
    try:
        await asyncio.wait({check, pressed}, return_when=asyncio.FIRST_COMPLETED)
        return check.result() if check.done() else None
    finally:
        if not check.done():
            check.cancel()
            await asyncio.gather(check, return_exceptions=True)


def _moved(last: tuple[str, int | None], status: QueueStatus) -> bool:
    """Progress: a later state, or a lower queue position."""
    state, position = last
    if status.state != state:
        return True
    return status.queue_position is not None and (position is None or status.queue_position < position)


async def _check_stop(handle: RequestHandle, limits: Limits, cancel_pressed: bool,
                      cancel: Callable[[], Awaitable[bool]], now: float, progress_at: float,
                      running_since: float | None) -> None:
    if cancel_pressed:
        accepted = await cancel()
        raise RequestCancelledError(
            "Cancelled by the user; " + ("fal stopped the request." if accepted else "fal was asked to stop."),
            request_id=handle.request_id,
        )
    if running_since is None and now - progress_at > limits.queue_timeout:
        outcome = "was cancelled at fal" if await cancel() else "was given up"
        raise FalTimeoutError(
            f"The request made no progress in fal's queue for {limits.queue_timeout:g} s "
            f"({config.QUEUE_TIMEOUT_ENV}) and {outcome}. fal is busy or stuck: queue again later, or raise "
            f"{config.QUEUE_TIMEOUT_ENV}.",
            request_id=handle.request_id,
        )
    if running_since is not None and now - running_since > limits.run_timeout:
        outcome = "was cancelled at fal" if await cancel() else "was given up"
        raise FalTimeoutError(
            f"The request ran at fal for longer than {limits.run_timeout:g} s ({config.RUN_TIMEOUT_ENV}) and "
            f"{outcome}. Queue again, or raise {config.RUN_TIMEOUT_ENV}.",
            request_id=handle.request_id,
        )
