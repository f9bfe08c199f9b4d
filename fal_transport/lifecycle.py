"""One request's whole life at fal: submit (or resume from the journal), follow, fetch, collect.

Driven by callbacks, so it runs (and is tested) without ComfyUI: `RequestEvents` tells the caller
what happens and asks it whether the user pressed Cancel; `collect` turns the result into whatever
the caller wants (downloaded, decoded images). The journal records every state on the way, so a
run that ends early for any reason leaves its request for the next run to collect:

    submitting -> submitted -> completed -> collected (`settle`)   (and failed / cancelled / lost / uncertain)

Before submitting, the caller asks the journal for an unfinished request with the same inputs that
an earlier run left behind (`find_resumable`); that one is collected instead of paying again. When the user presses
Cancel, or a limit passes, or the caller's task is cancelled, fal is asked to cancel the request.
Submits and cancels run on the background loop (`background`): a Cancel during the submit itself
stops the caller at once, and the submit goes on to fal's answer there, which is journalled and
cancelled at fal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .aio import until_cancelled
from .background import worker
from .client import lease
from .config import Limits
from .errors import ContentPolicyError, FalError, JobFailedError, RequestCancelledError, SubmitUncertainError
from .journal import Journal
from .queue import FalQueue, QueueStatus, RequestHandle
from .status_watch import WaitEvents, wait_until_done

log = logging.getLogger("grok_imagine_fal")

T = TypeVar("T")
Collect = Callable[[RequestHandle, dict[str, Any]], Awaitable[T]]


@dataclass(frozen=True)
class RequestPlan:
    """What to ask of fal: the endpoint, the body, and the fingerprint the journal knows it by."""

    endpoint: str
    arguments: dict[str, Any]
    fingerprint: str
    on_accepted: Callable[[str], None] | None = None  # fal accepted a new request (the ledger charges it)

    @property
    def sync_mode(self) -> bool:
        return bool(self.arguments.get("sync_mode"))


@dataclass
class RequestEvents(WaitEvents):
    """What the caller is told as the request moves on (all optional)."""

    on_submitted: Callable[[RequestHandle], None] | None = None
    on_resumed: Callable[[RequestHandle, str], None] | None = None
    on_fetching: Callable[[RequestHandle], None] | None = None


def _cancelled_before_sending() -> RequestCancelledError:
    return RequestCancelledError("Cancelled by the user before the request was sent; nothing was paid.")


@dataclass(frozen=True)
class Collected(Generic[T]):
    value: T
    request_id: str


async def run_request(queue: FalQueue, journal: Journal, plan: RequestPlan, limits: Limits, events: RequestEvents,
                      collect: Collect[T], resumed: RequestHandle | None = None) -> Collected[T]:
    """Submit `plan` and collect it; or collect `resumed` (from `find_resumable`) instead of submitting.

    A collected request stays `completed` and claimed by this process until the caller `settle`s it:
    a node whose other work failed leaves it for the next run to collect, free."""
    async with lease():
        handle = resumed or await _submit(queue, journal, plan, events)
        try:
            value = await _follow(queue, journal, handle, limits, events, collect, cancel_on_stop=True,
                                  journalled=True)
        except BaseException:
            journal.release(handle.request_id)
            raise
        return Collected(value, handle.request_id)


def settle(journal: Journal, request_ids: list[str], *, used: bool) -> None:
    """The caller is done with these collected requests: `used` marks them `collected` (never collected
    again); otherwise they stay `completed` for the next run with the same inputs. Releases them."""
    for request_id in request_ids:
        if used:
            journal.mark(request_id, "collected")
        journal.release(request_id)


async def recover_request(queue: FalQueue, journal: Journal, handle: RequestHandle, limits: Limits,
                          events: RequestEvents, collect: Collect[T]) -> T:
    """Collect an earlier request by its id. Cancel only stops the waiting: the request is never cancelled."""
    async with lease():
        journalled = handle.request_id in await asyncio.to_thread(journal.entries)
        if events.on_resumed is not None:
            events.on_resumed(handle, "Loading a finished request from fal")
        return await _follow(queue, journal, handle, limits, events, collect, cancel_on_stop=False,
                             journalled=journalled)


async def find_resumable(queue: FalQueue, journal: Journal, plan: RequestPlan,
                         events: RequestEvents) -> RequestHandle | None:
    """The handle of a journalled unfinished request with the same inputs that fal still knows, if any,
    claimed for the caller (hand it to `run_request`, which collects it and costs nothing)."""
    entry = await asyncio.to_thread(journal.claim_resumable, plan.endpoint, plan.fingerprint)
    if entry is None:
        for cut in await asyncio.to_thread(journal.uncertain, plan.endpoint, plan.fingerprint):
            log.warning("[Grok Imagine] an earlier submit of these inputs to %s was cut off before fal answered; fal "
                        "may have run it under an id nobody learnt (check fal's request history)", cut.endpoint)
        return None
    handle = queue.handle_for(plan.endpoint, entry.request_id)
    try:
        status: QueueStatus | None = await queue.status(handle)
    except FalError as exc:
        log.info("[Grok Imagine] journalled request %s is no longer available at fal (%s)", entry.request_id, exc)
        journal.mark(entry.request_id, "lost")
        status = None
    except BaseException:
        journal.release(entry.request_id)
        raise
    if status is not None and status.failed:
        journal.mark(entry.request_id, "failed")  # it ended with an error (or was cancelled): nothing to collect
        status = None
    if status is None:
        journal.release(entry.request_id)
        return None
    if events.on_resumed is not None:
        events.on_resumed(handle, "Collecting an earlier unfinished request with the same inputs")
    return handle


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


async def _submit(queue: FalQueue, journal: Journal, plan: RequestPlan, events: RequestEvents) -> RequestHandle:
    """Submit on the background loop (see `background`), and wait for the answer here, or stop
    waiting within a tick when the user presses Cancel."""
    if events.should_cancel is not None and events.should_cancel():
        raise _cancelled_before_sending()
    handoff = _Handoff()
    future = worker().run(_submit_in_background(queue, journal, plan, handoff))
    try:
        handle = await until_cancelled(asyncio.shield(asyncio.wrap_future(future)), events.should_cancel,
                                       _cancelled_while_submitting)
    except (RequestCancelledError, asyncio.CancelledError):
        if not handoff.abandon():  # the answer had just arrived: cancel that request at fal
            handle = future.result(timeout=10.0)
            journal.release(handle.request_id)
            worker().run(_cancel_and_mark(queue, journal, handle))
        raise
    if events.on_submitted is not None:
        events.on_submitted(handle)
    return handle


async def _submit_in_background(queue: FalQueue, journal: Journal, plan: RequestPlan,
                                handoff: _Handoff) -> RequestHandle:
    """The submit itself, journalled before it leaves. Waiting for a submit slot sends nothing, so a
    node that stopped waiting by then costs nothing."""
    async with lease() as loop_client, loop_client.submits:
        if handoff.abandoned:
            raise _cancelled_before_sending()
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
        await _cancel_and_mark(queue, journal, handle)
    return handle


async def _cancel_and_mark(queue: FalQueue, journal: Journal, handle: RequestHandle) -> bool:
    accepted = await queue.cancel(handle)
    if accepted:
        journal.mark(handle.request_id, "cancelled")
    return accepted


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


async def _follow(queue: FalQueue, journal: Journal, handle: RequestHandle, limits: Limits, events: RequestEvents,
                  collect: Collect[T], *, cancel_on_stop: bool, journalled: bool) -> T:
    """Wait for the request, fetch its result and collect it, keeping the journal's state of it current.
    A request that completed at fal but was not collected stays `completed` for the next run."""
    request_id = handle.request_id

    def mark(state: Any) -> None:
        if journalled:
            journal.mark(request_id, state)

    sending: concurrent.futures.Future[bool] | None = None

    async def cancel_at_fal() -> bool:
        """At most one cancel per request, sent from the background loop: it reaches fal even if this
        task is cancelled or its event loop ends meanwhile."""
        nonlocal sending
        if not cancel_on_stop:
            return False
        if sending is None:
            sending = worker().run(_cancel_and_mark(queue, journal, handle))
        return await asyncio.shield(asyncio.wrap_future(sending))

    stopped = RequestCancelledError(
        "Cancelled by the user." if cancel_on_stop else
        "Stopped waiting for the request (it was not cancelled at fal; load it again later).",
        request_id=request_id)
    try:
        final = await wait_until_done(queue, handle, limits, events, cancel_at_fal)
    except asyncio.CancelledError:
        await cancel_at_fal()  # the caller's task was cancelled: do not leave fal working for nobody
        raise
    except RequestCancelledError as exc:
        raise (exc if cancel_on_stop else stopped) from None
    mark("failed" if final.failed else "completed")
    try:
        if events.on_fetching is not None:
            events.on_fetching(handle)
        result = await until_cancelled(queue.result(handle, final), events.should_cancel, lambda: stopped)
        value = await until_cancelled(collect(handle, result), events.should_cancel, lambda: stopped)
    except (JobFailedError, ContentPolicyError):
        mark("failed")
        raise
    if not cancel_on_stop:  # a recovery: nothing waits on it
        mark("collected")
    return value
