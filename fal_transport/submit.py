"""Submitting a request: journalled before it leaves, on the background loop, and safe to walk away from.

The submit runs on the background loop (`background`), so that a Cancel while it is on its way
stops the node at once and the submit still reaches fal's answer, which is then journalled and
cancelled at fal: nothing is paid twice (the next run sees the request cancelled) and nothing is
lost (a request whose cancel came too late stays in the journal for the next run to collect).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from . import cancels
from .aio import Deadline, until_cancelled
from .background import worker
from .client import lease
from .errors import FalError, RequestCancelledError, SubmitUncertainError
from .journal import Journal
from .plan import RequestEvents, RequestPlan
from .queue import FalQueue, RequestHandle

log = logging.getLogger("grok_imagine_fal")


def cancelled_before_sending() -> RequestCancelledError:
    return RequestCancelledError("Cancelled by the user before the request was sent; nothing was paid.")


class _Handoff:
    """Who owns a submit's answer: the node waiting for it, or, once that one stopped waiting, the
    background loop (which then journals it and cancels the request at fal)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.abandoned = False
        self._delivered = False

    def deliver(self) -> bool:
        """Background side, with fal's answer: True when the waiting node takes it."""
        with self._lock:
            self._delivered = not self.abandoned
            return self._delivered

    def abandon(self) -> bool:
        """Node side, stopping: True when the background loop will deal with the answer."""
        with self._lock:
            self.abandoned = not self._delivered
            return self.abandoned


def _cancelled_while_submitting() -> RequestCancelledError:
    return RequestCancelledError(
        "Cancelled by the user while the submit was on its way. If fal accepted it, it is cancelled there as "
        "soon as fal answers; the request journal records what fal answered.")


async def submit(queue: FalQueue, journal: Journal, plan: RequestPlan, events: RequestEvents) -> RequestHandle:
    """Submit on the background loop (see `background`), and wait for the answer here, or stop
    waiting within a tick when the user presses Cancel."""
    if events.should_cancel is not None and events.should_cancel():
        raise cancelled_before_sending()
    handoff = _Handoff()
    future = worker().run(_submit_in_background(queue, journal, plan, handoff))
    answer = asyncio.wrap_future(future)
    answer.add_done_callback(_retrieved)
    try:
        handle = await until_cancelled(asyncio.shield(answer), events.should_cancel, _cancelled_while_submitting)
    except (RequestCancelledError, asyncio.CancelledError) as stop:
        # The background loop has the request cancelled once fal answers the submit; if that answer had
        # just arrived, the request is cancelled from here.
        if not handoff.abandon():
            cancels.cancel(queue, journal, future.result(timeout=10.0))
        if isinstance(stop, asyncio.CancelledError):
            await _briefly(answer)  # stopped by its caller (another request of the run failed): let fal hear
        raise
    if events.on_submitted is not None:
        events.on_submitted(handle)
    return handle


def _retrieved(done: asyncio.Future[object]) -> None:
    """A background outcome counts as seen even when nobody waits for it (no "never retrieved" warning)."""
    if not done.cancelled():
        done.exception()


async def _briefly(answer: asyncio.Future[RequestHandle]) -> None:
    """Wait briefly (`cancels.GRACE_S` in all) for fal's answer to a stopped submit, then for fal's answer
    to its cancel, so that the run's error comes after them. The user's Cancel does not wait: it stops
    the node at once."""
    grace = Deadline(cancels.GRACE_S)
    await asyncio.wait({answer}, timeout=grace.remaining())
    if answer.done() and not answer.cancelled() and answer.exception() is None:
        cancelling = cancels.under_way(answer.result().request_id)
        if cancelling is not None:
            await cancels.briefly(cancelling, max(0.0, grace.remaining()))


async def _submit_in_background(queue: FalQueue, journal: Journal, plan: RequestPlan,
                                handoff: _Handoff) -> RequestHandle:
    """The submit itself, journalled before it leaves. Waiting for a submit slot sends nothing, so a
    node that stopped waiting by then costs nothing."""
    async with lease() as loop_client, loop_client.submits:
        if handoff.abandoned:
            raise cancelled_before_sending()
        pending = journal.record_submitting(plan.endpoint, plan.fingerprint, sync_mode=plan.sync_mode)
        try:
            handle = await queue.submit(plan.endpoint, plan.arguments)
        except SubmitUncertainError as exc:
            _journal_uncertain(journal, plan, pending, exc.request_id)
            raise
        except FalError:
            journal.mark(pending, "not_sent")
            raise
        except BaseException:
            journal.mark(pending, "uncertain")
            raise
    taken = handoff.deliver()
    journal.record_submitted(handle.request_id, plan.endpoint, plan.fingerprint, sync_mode=plan.sync_mode,
                             pending=pending, follow=taken)
    _accepted(plan, handle.request_id)
    if not taken:
        log.info("[Grok Imagine] a submit stopped by Cancel reached fal as request %s; cancelling it there",
                 handle.request_id)
        cancels.cancel(queue, journal, handle)
    return handle


def _accepted(plan: RequestPlan, request_id: str) -> None:
    if plan.on_accepted is not None:
        try:
            plan.on_accepted(request_id)
        except Exception:  # the ledger is bookkeeping: never lose a paid request over it
            log.warning("[Grok Imagine] could not record the spend of request %s", request_id, exc_info=True)


def _journal_uncertain(journal: Journal, plan: RequestPlan, pending: str, request_id: str | None) -> None:
    if request_id:  # fal accepted it: the next run with these inputs collects it
        journal.record_submitted(request_id, plan.endpoint, plan.fingerprint, sync_mode=plan.sync_mode,
                                 pending=pending, follow=False)
        _accepted(plan, request_id)
    else:
        journal.mark(pending, "uncertain")


