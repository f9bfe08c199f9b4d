"""One request's whole life at fal, as one object (`FalRequest`): find an earlier one, submit, follow,
fetch the result, cancel, settle.

A `FalRequest` carries what it needs, as fal's own clients give a handle its own `status()` and
`cancel()`: what to send (a typed `Payload` of a model family), the queue and the journal it goes
through, its time limits, whom it tells as it moves on (`RequestEvents`), and the spend reservation
its price is charged to once fal accepts it. The journal records every state on the way, so a run
that ends early for any reason leaves the request for the next run to collect:

    submitting -> submitted -> completed -> collected (`settle`)   (and failed / cancelled / lost / uncertain)

Before submitting, a request asks the journal for an unfinished one with the same inputs that an
earlier run left behind (`find_earlier`); that one is collected instead of paying again. When the
user presses Cancel, or a limit passes, or the caller's task is cancelled, fal is asked to cancel
the request (`cancels`). Submits and cancels run on the background loop (`http.worker`), so they
reach fal even when the caller stops waiting or its event loop ends: a stopped submit's answer is
journalled and cancelled at fal once it arrives, so nothing is paid twice (the next run sees the
request cancelled) and nothing is lost (a request whose cancel came too late stays in the journal).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import cancels, config
from .aio import Deadline, until_cancelled
from .errors import (
    ContentPolicyError,
    FalError,
    InputRejectedError,
    JobFailedError,
    NetworkError,
    RequestCancelledError,
    RequestNotFoundError,
    ResultError,
    SubmitUncertainError,
)
from .http import lease, worker
from .journal import Journal, JournalState
from .ledger import Ledger, Reservation, Spend
from .queue import RESULT_TIMEOUT_S, FalQueue, QueueStatus, RequestHandle
from .status_watch import WaitEvents, wait_until_done

log = logging.getLogger("grok_imagine_fal")


class Payload(Protocol):
    """What a request asks of fal: a typed, frozen request of one model family (see `nodes.grok_api`)."""

    @property
    def endpoint(self) -> str: ...

    @property
    def sync_mode(self) -> bool: ...

    def body(self) -> dict[str, Any]:
        """The JSON fal receives."""
        ...

    def fingerprint(self) -> str:
        """What the journal knows the request by: the same inputs give the same fingerprint."""
        ...

    def spend(self) -> Spend:
        """What the request costs once fal accepts it."""
        ...


@dataclass
class RequestEvents(WaitEvents):
    """What the caller is told as the request moves on (all optional)."""

    on_submitted: Callable[[RequestHandle], None] | None = None
    on_resumed: Callable[[RequestHandle, str], None] | None = None


def cancelled_before_sending() -> RequestCancelledError:
    return RequestCancelledError("Cancelled by the user before the request was sent; nothing was paid.")


def _cancelled_while_submitting() -> RequestCancelledError:
    return RequestCancelledError(
        "Cancelled by the user while the submit was on its way. If fal accepted it, it is cancelled there as "
        "soon as fal answers; the request journal records what fal answered.")


@dataclass
class FalRequest:
    """One request at fal: a new one (`payload`) or an earlier one known by its handle (`recovering`)."""

    payload: Payload | None
    queue: FalQueue
    journal: Journal
    limits: config.Limits
    events: RequestEvents = field(default_factory=RequestEvents)
    reservation: Reservation | None = None  # charged when fal accepts a new request
    handle: RequestHandle | None = None
    recovering: bool = False  # loaded by its id: never submitted, never cancelled, marked collected when done
    _sending: concurrent.futures.Future[bool] | None = field(default=None, repr=False)  # its cancel (holds the claim)
    _journalled: bool = field(default=True, repr=False)  # a request loaded by its id may be unknown to the journal
    _handed_on: bool = field(default=False, repr=False)

    async def __aenter__(self) -> FalRequest:
        return self

    async def __aexit__(self, *failure: object) -> None:
        """A block that fails (or never gets to run the request) leaves it to the next run: its claim is given
        back, unless the caller took it on (`hand_on`)."""
        if failure[0] is not None and not self._handed_on:
            self.release()

    def hand_on(self) -> None:
        """The caller keeps the request's claim and `settle`s it later."""
        self._handed_on = True

    @classmethod
    def by_id(cls, queue: FalQueue, journal: Journal, limits: config.Limits, events: RequestEvents, endpoint: str,
              request_id: str) -> FalRequest:
        """An earlier request, to load by its id (the Result node): Cancel only stops the waiting."""
        return cls(None, queue, journal, limits, events, handle=queue.handle_for(endpoint, request_id),
                   recovering=True)

    @property
    def request_id(self) -> str:
        return self.handle.request_id if self.handle is not None else ""

    # ---- before sending
    async def find_earlier(self) -> bool:
        """Take over a journalled unfinished request with the same inputs, if any (claimed for this process;
        collecting it costs nothing). Only fal's own word drops one: a 404 (`lost`) or an error it ended with
        (`failed`). When fal cannot be asked now (a 5xx, the network, a key it refused), it is collected all the
        same: paying for it again would be the loss."""
        assert self.payload is not None and self.handle is None
        endpoint, fingerprint = self.payload.endpoint, self.payload.fingerprint()
        entry = await asyncio.to_thread(self.journal.claim_resumable, endpoint, fingerprint)
        if entry is None:
            for cut in await asyncio.to_thread(self.journal.uncertain, endpoint, fingerprint):
                log.warning("[Grok Imagine] an earlier submit of these inputs to %s was cut off before fal answered; "
                            "fal may have run it under an id nobody learnt (check fal's request history)", cut.endpoint)
            return False
        handle = self.queue.handle_for(endpoint, entry.request_id)
        with self.journal.following(entry.request_id) as claim:
            try:
                status = await self.queue.status(handle)
            except RequestNotFoundError as exc:  # only fal's 404 says the request is gone
                log.info("[Grok Imagine] journalled request %s is no longer available at fal (%s)", entry.request_id,
                         exc)
                self.journal.mark(entry.request_id, "lost")
                return False
            except FalError as exc:  # fal could not say now: collect it anyway
                log.info("[Grok Imagine] could not check journalled request %s at fal now (%s); collecting it",
                         entry.request_id, exc)
            else:
                if status.failed:  # it ended with an error (or was cancelled): nothing to collect
                    self.journal.mark(entry.request_id, "failed")
                    return False
            if self.events.on_resumed is not None:
                self.events.on_resumed(handle, "Collecting an earlier unfinished request with the same inputs")
            claim.keep()  # until `settle` or `release`
        self.handle = handle
        return True

    # ---- the result
    async def result(self) -> dict[str, Any]:
        """fal's result JSON: the request is submitted unless it has a handle already, then followed and
        fetched. A request collected this way stays `completed` and claimed by this process until the caller
        `settle`s it (or `release`s it: a node whose other work failed leaves it for the next run, free)."""
        async with lease():
            if self.recovering:
                assert self.handle is not None
                if self.events.on_resumed is not None:
                    self.events.on_resumed(self.handle, "Loading a finished request from fal")
                return await self._follow()
            if self.handle is None:
                self.handle = await self._submit()
            with self.journal.following(self.handle.request_id) as claim:
                try:
                    data = await self._follow()
                except BaseException:
                    if self._sending is not None:
                        claim.keep()  # the cancel took the claim over: it releases it once fal answered
                    raise
                claim.keep()
            return data

    def settle(self, *, used: bool) -> None:
        """The caller is done with the request: `used` marks it `collected` (never collected again); otherwise
        it stays `completed` for the next run with the same inputs."""
        if not self.recovering:
            settle(self.journal, [self.request_id], used=used)
        elif used and self._journalled:
            self.journal.mark(self.request_id, "collected")

    def release(self) -> None:
        """This process no longer follows the request (unless it was cancelled: the cancel took the claim over,
        and releases it once fal answered)."""
        if self.handle is not None and not self.recovering and self._sending is None:
            self.journal.release(self.handle.request_id)

    # ---- at fal
    async def status(self) -> QueueStatus:
        assert self.handle is not None
        return await self.queue.status(self.handle)

    async def cancel(self) -> bool:
        """Have fal cancel the request, once, in the background (`cancels`): it reaches fal even if this task is
        cancelled or its event loop ends meanwhile. True when fal accepted it within a brief wait. A request
        loaded by its id is never cancelled."""
        if self.recovering or self.handle is None:
            return False
        if self._sending is None:
            self._sending = cancels.cancel(self.queue, self.journal, self.handle)
        return await cancels.briefly(self._sending)

    # ---- inside
    def _mark(self, state: JournalState) -> None:
        if not self.recovering or self._journalled:
            self.journal.mark(self.request_id, state)

    async def _follow(self) -> dict[str, Any]:
        """Wait for the request and fetch its result, keeping the journal's state of it current."""
        assert self.handle is not None
        if self.recovering:
            self._journalled = await asyncio.to_thread(self.journal.entry, self.request_id) is not None
        stopped = RequestCancelledError(
            "Stopped waiting for the request (it was not cancelled at fal; load it again later)." if self.recovering
            else "Cancelled by the user.", request_id=self.request_id)
        try:
            final = await wait_until_done(self.queue, self.handle, self.limits, self.events, self.cancel)
        except asyncio.CancelledError:
            await self.cancel()  # the caller's task was cancelled: do not leave fal working for nobody
            raise
        except RequestCancelledError as exc:
            raise (stopped if self.recovering else exc) from None
        self._mark("failed" if final.failed else "completed")
        try:
            return await until_cancelled(self._fetch_result(final), self.events.should_cancel, lambda: stopped)
        except (JobFailedError, ContentPolicyError):
            self._mark("failed")
            raise
        except InputRejectedError:  # fal accepted the request, then refused an input: failed, and not billed
            self._mark("failed")
            if not self.recovering or self._journalled:
                await asyncio.to_thread(Ledger(self.journal.directory).unbilled, self.request_id)
            raise

    async def _fetch_result(self, final: QueueStatus) -> dict[str, Any]:
        """The result, within what the run limit leaves (a body that trickles in cannot hold the node)."""
        assert self.handle is not None
        seconds = min(RESULT_TIMEOUT_S, self.limits.run_timeout)
        try:
            return await self.queue.result(self.handle, final, Deadline(seconds))
        except NetworkError as exc:
            raise ResultError(
                f"fal's result did not arrive whole within {seconds:g} s ({config.RUN_TIMEOUT_ENV}): {exc.reason} "
                "The request stays collectable: the next run with the same inputs, or a load by its request id, "
                "collects it.",
                request_id=self.request_id,
            ) from exc

    async def _submit(self) -> RequestHandle:
        """Submit on the background loop, and wait for the answer here, or stop waiting within a tick when the
        user presses Cancel (the background loop then cancels the request once fal answers)."""
        if self.events.should_cancel is not None and self.events.should_cancel():
            raise cancelled_before_sending()
        handoff = _Handoff()
        future = worker().run(self._submit_in_background(handoff))
        answer = asyncio.wrap_future(future)
        answer.add_done_callback(_retrieved)
        try:
            handle = await until_cancelled(asyncio.shield(answer), self.events.should_cancel,
                                           _cancelled_while_submitting)
        except (RequestCancelledError, asyncio.CancelledError) as stop:
            if not handoff.abandon():  # fal's answer had just arrived: cancel that request from here
                cancels.cancel(self.queue, self.journal, future.result(timeout=10.0))
            if isinstance(stop, asyncio.CancelledError):
                await _briefly(answer)  # stopped by its caller (another request of the run failed): let fal hear
            raise
        if self.events.on_submitted is not None:
            self.events.on_submitted(handle)
        return handle

    async def _submit_in_background(self, handoff: _Handoff) -> RequestHandle:
        """The submit itself, journalled before it leaves. Waiting for a submit slot sends nothing, so a node
        that stopped waiting by then costs nothing."""
        payload = self.payload
        assert payload is not None
        fingerprint, journal = payload.fingerprint(), self.journal
        async with lease() as loop_client, loop_client.submits:
            if handoff.abandoned:
                raise cancelled_before_sending()
            pending = journal.record_submitting(payload.endpoint, fingerprint, sync_mode=payload.sync_mode)
            try:
                handle = await self.queue.submit(payload.endpoint, payload.body())
            except SubmitUncertainError as exc:
                if exc.request_id:  # fal accepted it: the next run with these inputs collects it
                    journal.record_submitted(exc.request_id, payload.endpoint, fingerprint,
                                             sync_mode=payload.sync_mode, pending=pending, follow=False)
                    self._charge(exc.request_id)
                else:
                    journal.mark(pending, "uncertain")
                raise
            except FalError:
                journal.mark(pending, "not_sent")
                raise
            except BaseException:
                journal.mark(pending, "uncertain")
                raise
        taken = handoff.deliver()
        journal.record_submitted(handle.request_id, payload.endpoint, fingerprint, sync_mode=payload.sync_mode,
                                 pending=pending, follow=taken)
        self._charge(handle.request_id)
        if not taken:
            log.info("[Grok Imagine] a submit stopped by Cancel reached fal as request %s; cancelling it there",
                     handle.request_id)
            cancels.cancel(self.queue, journal, handle)
        return handle

    def _charge(self, request_id: str) -> None:
        """fal accepted the request: its price moves from the run's reservation to the ledger."""
        if self.reservation is None or self.payload is None:
            return
        try:
            self.reservation.charge(request_id, self.payload.endpoint, self.payload.spend())
        except Exception:  # the ledger is bookkeeping: never lose a paid request over it
            log.warning("[Grok Imagine] could not record the spend of request %s", request_id, exc_info=True)


def settle(journal: Journal, request_ids: list[str], *, used: bool) -> None:
    """The caller is done with these collected requests: `used` marks them `collected` (never collected
    again); otherwise they stay `completed` for the next run with the same inputs. Releases them."""
    journal.release(*request_ids, state="collected" if used else None)


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
