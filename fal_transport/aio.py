"""Small asyncio helpers the transport relies on, the same on Python 3.10 to 3.13."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from .process_state import current

T = TypeVar("T")

TICK_S = 0.1  # how often a loop looks at the user's Cancel
ON_TICK_EVERY_S = 1.0  # how often a wait's `on_tick` runs


class Deadline:
    """A point in monotonic time by which something must be done."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()



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


class _Watch:
    """One wait's registration with its loop's `CancelWatch`."""

    def __init__(self, pressed: asyncio.Future[None], on_tick: Callable[[], None] | None) -> None:
        self.pressed = pressed  # done once its `should_cancel` said yes (or raised)
        self.on_tick = on_tick


class CancelWatch:
    """The user's Cancel, watched for every wait of one event loop by one ticker task.

    Every `TICK_S` it asks each distinct `should_cancel` callback once and wakes every wait that
    shares a callback which said yes, at once (so a flag cleared right after, as ComfyUI's progress
    hook clears its own, has still reached them all); every `ON_TICK_EVERY_S` it calls the waits'
    `on_tick`. A thousand waits cost one timer, not a thousand, and nothing runs for them between
    ticks. The ticker ends when its last wait does."""

    def __init__(self) -> None:
        self._groups: dict[Callable[[], bool] | None, set[_Watch]] = {}
        self._ticker: asyncio.Task[None] | None = None

    @staticmethod
    def of_running_loop() -> CancelWatch:
        watches = current().cancel_watches
        loop = asyncio.get_running_loop()
        watch = watches.get(loop)
        if watch is None:
            watch = watches[loop] = CancelWatch()
        return watch

    @contextlib.contextmanager
    def watching(self, should_cancel: Callable[[], bool] | None,
                 on_tick: Callable[[], None] | None = None) -> Iterator[asyncio.Future[None]]:
        """A future that is done once `should_cancel()` says yes (its exception if it raised), for the block."""
        watch = _Watch(asyncio.get_running_loop().create_future(), on_tick)
        self._groups.setdefault(should_cancel, set()).add(watch)
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())
        try:
            yield watch.pressed
        finally:
            group = self._groups.get(should_cancel)
            if group is not None:
                group.discard(watch)
                if not group:
                    del self._groups[should_cancel]
            if not watch.pressed.done():
                watch.pressed.cancel()
            elif not watch.pressed.cancelled():
                watch.pressed.exception()  # seen, even when the block ended for another reason

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        on_tick_at = loop.time() + ON_TICK_EVERY_S
        try:
            while self._groups:
                await asyncio.sleep(TICK_S)
                for should_cancel, group in list(self._groups.items()):
                    if should_cancel is None or not group:
                        continue
                    try:
                        pressed = bool(should_cancel())
                    except Exception as exc:  # handed to the waits, which raise it
                        self._wake(group, exc)
                        continue
                    if pressed:
                        self._wake(group, None)
                if loop.time() >= on_tick_at:
                    on_tick_at = loop.time() + ON_TICK_EVERY_S
                    for group in list(self._groups.values()):
                        for watch in list(group):
                            if watch.on_tick is not None and not watch.pressed.done():
                                try:
                                    watch.on_tick()
                                except Exception as exc:
                                    watch.pressed.set_exception(exc)
        finally:
            self._ticker = None
            watches = current().cancel_watches
            if watches.get(loop) is self:
                del watches[loop]

    @staticmethod
    def _wake(group: set[_Watch], error: Exception | None) -> None:
        for watch in group:
            if not watch.pressed.done():
                if error is None:
                    watch.pressed.set_result(None)
                else:
                    watch.pressed.set_exception(error)


def watching(should_cancel: Callable[[], bool] | None,
             on_tick: Callable[[], None] | None = None) -> contextlib.AbstractContextManager[asyncio.Future[None]]:
    """`CancelWatch.watching` on the running loop's watch: a future done once the user pressed Cancel."""
    return CancelWatch.of_running_loop().watching(should_cancel, on_tick)


async def until_cancelled(work: Awaitable[T], should_cancel: Callable[[], bool] | None,
                          on_cancel: Callable[[], BaseException]) -> T:
    """Await `work`, but stop within a tick once `should_cancel()` is true: `work` is cancelled and
    awaited (nothing of it runs on), then `on_cancel()` is raised."""
    task = asyncio.ensure_future(work)
    try:
        if should_cancel is None:
            return await task
        with watching(should_cancel) as pressed:
            await asyncio.wait({task, pressed}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            pressed.result()  # what `should_cancel` raised, if it did
            raise on_cancel()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
