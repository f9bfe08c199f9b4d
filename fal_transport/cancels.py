"""Cancels at fal, for every request a run stops: in the background, bounded, retried until fal answers.

A Cancel on a list of 1,000 prompts stops 1,000 requests at once (so does a queue time limit that
passes for many, or one request of a run failing while the others wait). Each stopped request hands
its cancel to this module and waits for it at most `GRACE_S`; the node then ends, whether or not
fal has answered yet. The cancels wait in one first-come-first-served line on the background loop
(`background`), and `MAX_SENDING` of them go to fal at a time: few enough that each finds a free
connection at once (the background loop's pool also serves `client.MAX_SUBMITS` submits), so a
cancel's time budget (`queue.CANCEL_TIMEOUT_S`) starts when it is sent, never while it waits its turn.

Until fal answers a request's cancel for good, the request stays journalled as it was (`submitted`)
and claimed by this process, so no other run of the same inputs picks it up meanwhile. A cancel
that fal could not be asked (no answer, 408, 429, 5xx) is asked again, after a backoff that grows
to `MAX_BACKOFF_S` (or fal's `Retry-After`), for `KEEP_TRYING_S`. fal's answer settles it:
- accepted: the journal records it `cancelled`;
- already completed: it stays in the journal, and the next run with the same inputs collects it free;
- unknown to fal (404): `lost`.
If fal never answers, the request is released as it was, and the next run with the same inputs
finds it in the journal: it collects what fal finished, or sees that the request was cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections import deque
from dataclasses import dataclass

from .aio import Deadline
from .http import Worker, worker
from .journal import Journal, JournalState
from .process_state import current
from .queue import CANCEL_TIMEOUT_S, FalQueue, RequestHandle

log = logging.getLogger("grok_imagine_fal")

MAX_SENDING = 32  # cancels on their way to fal at once
GRACE_S = 0.25  # how long a stopped request waits for fal's answer to its cancel before its node ends
MIN_BACKOFF_S = 0.05
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
KEEP_TRYING_S = 600.0


@dataclass
class _Cancel:
    queue: FalQueue
    journal: Journal
    handle: RequestHandle
    answered: concurrent.futures.Future[bool]  # True once fal accepted the cancel; False when it never will
    asked_at: float
    attempts: int = 0


class Canceller:
    """The line of cancels of one background loop, and the senders that work it."""

    def __init__(self, background: Worker) -> None:
        self.background = background
        self._line: deque[_Cancel] = deque()  # touched on the background loop only
        self._sending = 0

    def add(self, cancel: _Cancel) -> None:
        """Join the line (on the background loop); a sender starts if fewer than MAX_SENDING work."""
        self._line.append(cancel)
        if self._sending < MAX_SENDING:
            self._sending += 1
            self.background.loop.create_task(self._send())

    async def _send(self) -> None:
        """Send cancels from the front of the line until it is empty."""
        try:
            while self._line:
                await self._attempt(self._line.popleft())
        finally:
            self._sending -= 1

    async def _attempt(self, cancel: _Cancel) -> None:
        cancel.attempts += 1
        request_id = cancel.handle.request_id
        try:
            answer = await cancel.queue.cancel(cancel.handle, Deadline(CANCEL_TIMEOUT_S))
        except BaseException:
            _settle(cancel, accepted=False)
            raise
        if answer.accepted:
            _settle(cancel, accepted=True, state="cancelled")
        elif answer.final:
            _settle(cancel, accepted=False, state="lost" if answer.unknown else None)
        elif time.monotonic() - cancel.asked_at > KEEP_TRYING_S:
            log.warning("[Grok Imagine] fal did not take the cancel of request %s in %d attempts over %.0f s; it "
                        "stays in the request journal for the next run with the same inputs to collect",
                        request_id, cancel.attempts, KEEP_TRYING_S)
            _settle(cancel, accepted=False)
        else:
            if answer.retry_after is not None:  # fal's own wait, as long as it is reasonable
                delay = min(MAX_BACKOFF_S, max(MIN_BACKOFF_S, answer.retry_after))
            else:
                delay = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (cancel.attempts - 1)) * random.uniform(0.5, 1.0)
            log.debug("cancel of fal request %s not answered (attempt %d); again in %.1f s", request_id,
                      cancel.attempts, delay)
            self.background.loop.call_later(delay, self.add, cancel)


def _settle(cancel: _Cancel, *, accepted: bool, state: JournalState | None = None) -> None:
    """fal answered for good (or will not): the request is released (marked `state` first, in the same
    transaction) and its waiters told."""
    request_id = cancel.handle.request_id
    process = current()
    with process.lock:
        if process.cancelling.get(request_id) is cancel.answered:
            del process.cancelling[request_id]
    cancel.journal.release(request_id, state=state)
    if not cancel.answered.done():
        cancel.answered.set_result(accepted)


def _canceller() -> Canceller:
    background = worker()
    state = current()
    with state.lock:
        if state.canceller is None or state.canceller.background is not background:
            state.canceller = Canceller(background)
        return state.canceller


def cancel(queue: FalQueue, journal: Journal, handle: RequestHandle) -> concurrent.futures.Future[bool]:
    """Have fal cancel the request, in the background; from any thread or loop. Takes over the caller's
    claim on the request (the journal's `following`), which it releases once fal answered. The future
    tells whether fal accepted; a second call for the same request joins the first."""
    state = current()
    with state.lock:
        answered = state.cancelling.get(handle.request_id)
        if answered is not None:
            return answered
        answered = state.cancelling[handle.request_id] = concurrent.futures.Future()
        answered.set_running_or_notify_cancel()  # only fal's answer settles it: nobody can cancel it
    canceller = _canceller()
    canceller.background.loop.call_soon_threadsafe(
        canceller.add, _Cancel(queue, journal, handle, answered, time.monotonic()))
    return answered


def under_way(request_id: str) -> concurrent.futures.Future[bool] | None:
    """The cancel of this request still waiting for fal's answer, if any."""
    state = current()
    with state.lock:
        return state.cancelling.get(request_id)


async def briefly(answered: concurrent.futures.Future[bool], seconds: float = GRACE_S) -> bool:
    """Wait at most `seconds` for fal's answer to a cancel: True when fal accepted it by then."""
    waiting = asyncio.wrap_future(answered)
    done, _ = await asyncio.wait({waiting}, timeout=seconds)
    return bool(done) and not waiting.cancelled() and waiting.result()
