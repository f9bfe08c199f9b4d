"""One request's whole life at fal: submit (or resume from the journal), follow, fetch, collect.

Driven by callbacks, so it runs (and is tested) without ComfyUI: `RequestEvents` tells the caller
what happens and asks it whether the user pressed Cancel; `collect` turns the result into whatever
the caller wants (downloaded, decoded images). The journal records every state on the way, so a
run that ends early for any reason leaves its request for the next run to collect:

    submitting -> submitted -> completed -> collected (`settle`)   (and failed / cancelled / lost / uncertain)

Before submitting, the caller asks the journal for an unfinished request with the same inputs that
an earlier run left behind (`find_resumable`); that one is collected instead of paying again. When
the user presses Cancel, or a limit passes, or the caller's task is cancelled, fal is asked to
cancel the request. Submits (`submit`) and cancels (`cancels`) run on the background loop
(`background`), so they reach fal even when the caller stops waiting or its event loop ends; a
stopped request waits for its cancel only briefly, and the cancel goes on in the background.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import cancels, config
from .aio import Deadline, until_cancelled
from .client import lease
from .config import Limits
from .errors import (
    ContentPolicyError,
    FalError,
    JobFailedError,
    NetworkError,
    RequestCancelledError,
    RequestNotFoundError,
    ResultError,
)
from .journal import Journal
from .plan import RequestEvents, RequestPlan
from .queue import RESULT_TIMEOUT_S, FalQueue, QueueStatus, RequestHandle
from .status_watch import wait_until_done
from .submit import submit

log = logging.getLogger("grok_imagine_fal")

T = TypeVar("T")
Collect = Callable[[RequestHandle, dict[str, Any]], Awaitable[T]]


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
        handle = resumed or await submit(queue, journal, plan, events)
        with journal.following(handle.request_id) as claim:
            try:
                value = await _follow(queue, journal, handle, limits, events, collect, cancel_on_stop=True,
                                      journalled=True)
            except BaseException:
                if cancels.under_way(handle.request_id) is not None:
                    claim.keep()  # the cancel under way releases it once fal answered
                raise
            claim.keep()  # until the caller settles it
        return Collected(value, handle.request_id)


def settle(journal: Journal, request_ids: list[str], *, used: bool) -> None:
    """The caller is done with these collected requests: `used` marks them `collected` (never collected
    again); otherwise they stay `completed` for the next run with the same inputs. Releases them."""
    journal.release(*request_ids, state="collected" if used else None)


async def recover_request(queue: FalQueue, journal: Journal, handle: RequestHandle, limits: Limits,
                          events: RequestEvents, collect: Collect[T]) -> T:
    """Collect an earlier request by its id. Cancel only stops the waiting: the request is never cancelled."""
    async with lease():
        journalled = await asyncio.to_thread(journal.entry, handle.request_id) is not None
        if events.on_resumed is not None:
            events.on_resumed(handle, "Loading a finished request from fal")
        return await _follow(queue, journal, handle, limits, events, collect, cancel_on_stop=False,
                             journalled=journalled)


async def find_resumable(queue: FalQueue, journal: Journal, plan: RequestPlan,
                         events: RequestEvents) -> RequestHandle | None:
    """The handle of a journalled unfinished request with the same inputs, if any, claimed for the caller
    (hand it to `run_request`, which collects it and costs nothing). Only fal's own word drops it: a 404
    (`lost`) or an error it ended with (`failed`). When fal cannot be asked now (a 5xx, the network, a
    key it refused), the request is collected all the same: paying for it again would be the loss."""
    entry = await asyncio.to_thread(journal.claim_resumable, plan.endpoint, plan.fingerprint)
    if entry is None:
        for cut in await asyncio.to_thread(journal.uncertain, plan.endpoint, plan.fingerprint):
            log.warning("[Grok Imagine] an earlier submit of these inputs to %s was cut off before fal answered; fal "
                        "may have run it under an id nobody learnt (check fal's request history)", cut.endpoint)
        return None
    handle = queue.handle_for(plan.endpoint, entry.request_id)
    with journal.following(entry.request_id) as claim:
        try:
            status = await queue.status(handle)
        except RequestNotFoundError as exc:  # only fal's 404 says the request is gone
            log.info("[Grok Imagine] journalled request %s is no longer available at fal (%s)", entry.request_id, exc)
            journal.mark(entry.request_id, "lost")
            return None
        except FalError as exc:  # fal could not say now (a 5xx, the network, a key it refused): collect it anyway
            log.info("[Grok Imagine] could not check journalled request %s at fal now (%s); collecting it",
                     entry.request_id, exc)
        else:
            if status.failed:  # it ended with an error (or was cancelled): nothing to collect
                journal.mark(entry.request_id, "failed")
                return None
        if events.on_resumed is not None:
            events.on_resumed(handle, "Collecting an earlier unfinished request with the same inputs")
        claim.keep()  # handed to the caller with the handle
    return handle


async def _fetch_result(queue: FalQueue, handle: RequestHandle, final: QueueStatus, limits: Limits) -> dict[str, Any]:
    """The result, within what the run limit leaves (a body that trickles in cannot hold the node)."""
    seconds = min(RESULT_TIMEOUT_S, limits.run_timeout)
    try:
        return await queue.result(handle, final, Deadline(seconds))
    except NetworkError as exc:
        raise ResultError(
            f"fal's result did not arrive whole within {seconds:g} s ({config.RUN_TIMEOUT_ENV}): {exc.reason} The "
            "request stays collectable: the next run with the same inputs, or the Grok Imagine Result node, loads it.",
            request_id=handle.request_id,
        ) from exc


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
        """At most one cancel per request, sent in the background (`cancels`): it reaches fal even if this
        task is cancelled or its event loop ends meanwhile. True when fal accepted it within the brief wait."""
        nonlocal sending
        if not cancel_on_stop:
            return False
        if sending is None:
            sending = cancels.cancel(queue, journal, handle)
        return await cancels.briefly(sending)

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
        result = await until_cancelled(_fetch_result(queue, handle, final, limits), events.should_cancel,
                                       lambda: stopped)
        value = await until_cancelled(collect(handle, result), events.should_cancel, lambda: stopped)
    except (JobFailedError, ContentPolicyError):
        mark("failed")
        raise
    if not cancel_on_stop:  # a recovery: nothing waits on it
        mark("collected")
    return value
