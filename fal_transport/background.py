"""A background event loop, on a thread of its own, for work that must outlive a ComfyUI prompt.

ComfyUI runs each prompt in a fresh event loop and ends it with `asyncio.run`, which cancels every
task still running. A submit that was on its way when the user pressed Cancel, and the cancel sent
to fal for it, must not be cut off that way: fal may have accepted the request, and only its answer
tells the request id. So submits and cancels run here; the node's loop only waits for them, and
can stop waiting at once. This loop keeps one lease on its client (`client.lease`) for its whole
life, so submits also reuse their connections from one prompt to the next.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .client import lease
from .process_state import current

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
