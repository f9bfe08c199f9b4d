"""Following a submitted request until it completes: fal's status stream, or polling, within limits.

Each request follows `{status_url}/stream` (server-sent events) while it holds one of the loop's
stream slots (`client.MAX_STREAMS`); slots go to requests in the order they asked. A request that
waits for a slot, or whose stream is unavailable, polls `{status_url}?logs=1` instead, at a rate
that falls as more requests poll (`poll_interval`), so hundreds of queued requests cost a few
requests a second. When a slot frees, the next waiting request takes it at once.

The wait ends, whatever fal does:
- the user's Cancel (checked every tick);
- `queue_timeout` without progress while queued (no state change, no drop in queue position);
- `run_timeout` after fal started running the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx

from . import config
from .aio import TICK_S, Deadline
from .client import LoopClient, lease
from .config import Limits
from .errors import FalTimeoutError, RequestCancelledError
from .queue import FalQueue, QueueStatus, RequestHandle

log = logging.getLogger("grok_imagine_fal")

STREAM_READ_TIMEOUT_S = 30.0
MAX_STREAM_FAILURES = 3
POLL_INTERVAL_S = 0.25  # the fastest a request polls
POLL_MAX_INTERVAL_S = 10.0
MAX_POLLS_PER_S = 20.0  # what all polling requests of a loop aim at together


@dataclass
class WaitEvents:
    """What the waiting side is told, and how it learns that the user pressed Cancel."""

    on_status: Callable[[QueueStatus], None] | None = None
    on_tick: Callable[[], None] | None = None
    should_cancel: Callable[[], bool] | None = None


class _StreamUnavailable(Exception):
    """The status stream cannot be used for this request; poll instead."""


def poll_interval(pollers: int, limits: Limits) -> float:
    """Seconds between two polls of one request, when `pollers` requests poll at once."""
    interval = max(POLL_INTERVAL_S, pollers / MAX_POLLS_PER_S)
    return min(interval, POLL_MAX_INTERVAL_S, max(POLL_INTERVAL_S, limits.queue_timeout / 3))


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


async def _follow_stream(queue: FalQueue, handle: RequestHandle, loop_client: LoopClient,
                         sink: asyncio.Queue[QueueStatus | BaseException]) -> bool:
    """Follow the stream until COMPLETED (True) or until it should be given up for polling (False)."""
    failures = 0
    while failures < MAX_STREAM_FAILURES:
        try:
            async for status in _stream(queue, handle, loop_client):
                sink.put_nowait(status)
                if status.state == "COMPLETED":
                    return True
            failures += 1  # the stream ended before COMPLETED: it was cut
        except _StreamUnavailable:
            return False
        except httpx.ReadTimeout:
            continue  # a quiet stream: reconnect
        except (httpx.TransportError, httpx.TimeoutException):
            failures += 1
        await asyncio.sleep(0.05 * failures)
    return False


async def _watch(queue: FalQueue, handle: RequestHandle, limits: Limits,
                 sink: asyncio.Queue[QueueStatus | BaseException]) -> None:
    """Feed status reports into `sink`: from the stream while this request holds a slot, by polling
    while it waits for one, and by polling for good once its stream proved unusable."""
    async with lease() as loop_client:
        slot: asyncio.Future[None] | None = loop_client.streams.request()
        loop_client.pollers += 1
        polling = True  # counted in loop_client.pollers
        try:
            first = True
            while True:
                wait = poll_interval(loop_client.pollers, limits) * (random.uniform(0.2, 1.0) if first else 1.0)
                if slot is not None:
                    if not slot.done():
                        await asyncio.wait({slot}, timeout=wait)
                    if slot.done():
                        loop_client.pollers -= 1
                        polling = False
                        try:
                            if await _follow_stream(queue, handle, loop_client, sink):
                                return
                        finally:
                            loop_client.streams.give_up(slot)
                            slot = None
                        loop_client.pollers += 1
                        polling = True
                        log.debug("status stream unavailable for %s; polling", handle.request_id)
                elif not first:
                    await asyncio.sleep(wait)
                first = False
                async with loop_client.polls:  # never a crowd of waiters in httpx's pool (see client)
                    status = await queue.status(handle, Deadline(60.0))
                sink.put_nowait(status)
                if status.state == "COMPLETED":
                    return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the waiting side, which raises it
            sink.put_nowait(exc)
        finally:
            if slot is not None:
                loop_client.streams.give_up(slot)
            if polling:
                loop_client.pollers -= 1


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
    try:
        while True:
            try:
                item = await asyncio.wait_for(sink.get(), timeout=TICK_S)
            except asyncio.TimeoutError:
                item = None
            if isinstance(item, BaseException):
                raise item
            now = time.monotonic()
            if item is not None:
                if _moved(last, item):
                    progress_at = now
                last = (item.state, item.queue_position)
                if item.state != "IN_QUEUE" and running_since is None:
                    running_since = now
                if events.on_status is not None:
                    events.on_status(item)
                if item.state == "COMPLETED":
                    return item
            elif events.on_tick is not None:
                events.on_tick()
            await _check_stop(handle, limits, events, cancel, now, progress_at, running_since)
    finally:
        while not watcher.done():  # a status stream's read can let a cancel pass (httpcore/anyio): ask again
            watcher.cancel()
            await asyncio.wait({watcher}, timeout=TICK_S)
        await asyncio.gather(watcher, return_exceptions=True)


def _moved(last: tuple[str, int | None], status: QueueStatus) -> bool:
    """Progress: a later state, or a lower queue position."""
    state, position = last
    if status.state != state:
        return True
    return status.queue_position is not None and (position is None or status.queue_position < position)


async def _check_stop(handle: RequestHandle, limits: Limits, events: WaitEvents,
                      cancel: Callable[[], Awaitable[bool]], now: float, progress_at: float,
                      running_since: float | None) -> None:
    if events.should_cancel is not None and events.should_cancel():
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

