"""Small asyncio helpers the transport relies on, the same on Python 3.10 to 3.13."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TICK_S = 0.1  # how often a wait looks at the user's Cancel


class Deadline:
    """A point in monotonic time by which something must be done."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def earliest(self, other: Deadline | None) -> Deadline:
        """Whichever of the two comes first."""
        return self if other is None or self.at <= other.at else other


async def run_to_end(work: Awaitable[T]) -> T:
    """Await `work` to its end even if the awaiting task is cancelled meanwhile; the cancellation is
    passed on afterwards. For what must not be cut short: a cancel for fal, closing connections.
    (asyncio.run waits for such a task when it ends a loop, so it still completes.)"""
    future = asyncio.ensure_future(work)
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                break
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return future.result()


async def within(seconds: float, work: Awaitable[T]) -> T:
    """`work` bounded by `seconds` in all (asyncio.TimeoutError past it)."""
    return await asyncio.wait_for(work, timeout=max(0.0, seconds))


async def until_cancelled(work: Awaitable[T], should_cancel: Callable[[], bool] | None,
                          on_cancel: Callable[[], BaseException]) -> T:
    """Await `work`, but stop within a tick once `should_cancel()` is true: `work` is cancelled and
    awaited (nothing of it runs on), then `on_cancel()` is raised."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=TICK_S)
            if done:
                return task.result()
            if should_cancel is not None and should_cancel():
                raise on_cancel()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
