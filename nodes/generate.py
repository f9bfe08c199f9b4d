"""One run of a generating Grok node: its requests at fal (one per four images, all at once), and
their images as one IMAGE batch in request order.

The request lifecycle itself (submit or resume, follow, cancel, journal) is `fal_transport.lifecycle`;
this module adds what is the node's: the price and the daily limit, progress on the node, the
output batch, placeholders for refusals, and the batch of list items it belongs to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import torch

from ..fal_transport import cancels, config
from ..fal_transport.aio import until_cancelled
from ..fal_transport.billing import check_can_pay
from ..fal_transport.client import lease
from ..fal_transport.config import Limits
from ..fal_transport.credentials import resolve_credentials
from ..fal_transport.errors import ContentPolicyError, RequestCancelledError, SpendLimitError
from ..fal_transport.journal import Journal, fingerprint
from ..fal_transport.ledger import Ledger, Reservation
from ..fal_transport.lifecycle import RequestEvents, RequestPlan, find_resumable, run_request
from ..fal_transport.queue import FalQueue, QueueStatus, RequestHandle
from ..image_io.batch import FetchedImage
from ..image_io.output_batch import OutputBatch
from . import grok_spec as spec
from . import host
from .batches import BatchMember
from .grok_result import read_result
from .prices import request_price
from .progress import RequestProgress

log = logging.getLogger("grok_imagine_fal")

T = TypeVar("T")
OnRefusal = Literal["fail", "placeholder"]


@dataclass(frozen=True)
class GrokCall:
    """One run of a generating node: what to ask of fal, and what to do with the answer."""

    endpoint: str
    arguments: dict[str, Any]  # fal's body, `num_images` being the node's total (split per request)
    identity: dict[str, Any]  # what the journal knows the run by (references by content, not by upload URL)
    expected_size: tuple[int, int]  # the size the settings should give (placeholders, early allocation)
    on_refusal: OnRefusal = "fail"
    fixed_size: tuple[int, int] | None = None  # every image fitted to this size (edits: match first reference)


@dataclass
class Part:
    """What one request produced."""

    files: list[FetchedImage]
    revised_prompt: str
    image_urls: list[str]
    request_id: str
    refusal: str = ""  # fal's reason, when a placeholder stands in for the images


@dataclass
class Generation:
    """What a node run produced: all its requests' images as one IMAGE batch."""

    images: torch.Tensor
    revised_prompt: str
    image_urls: list[str]
    request_ids: list[str]
    files: list[FetchedImage] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    @property
    def request_id(self) -> str:
        return ",".join(self.request_ids)


def output_size_key(endpoint: str, identity: dict[str, Any]) -> str:
    """What decides the images' size: endpoint, aspect ratio, resolution (and the references for "auto")."""
    shape = {name: identity.get(name) for name in ("aspect_ratio", "resolution")}
    if identity.get("aspect_ratio") == "auto":
        shape["references"] = identity.get("image_sha256", identity.get("image_urls"))
    return fingerprint(endpoint, shape)


async def _all_or_none(work: list[Awaitable[T]]) -> list[T]:
    """Run all at once; when one fails, stop the others (their requests are cancelled at fal)."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@dataclass
class _Run:
    """What every request of one node run shares."""

    call: GrokCall
    member: BatchMember
    queue: FalQueue
    journal: Journal
    limits: Limits
    out: OutputBatch
    reservation: Reservation | None = None


async def generate(call: GrokCall, member: BatchMember) -> Generation:
    """Every image of `call`: resumed requests collected free, the others submitted once the fal balance
    and the daily limit allow the run's price; one batch in request order."""
    credentials = resolve_credentials(config.key_file())  # a missing or bad key is refused before any request
    sizes = spec.request_sizes(int(call.arguments["num_images"]))
    run = _Run(call, member, FalQueue(credentials), Journal(config.state_dir()), Limits.from_env(),
               OutputBatch(sum(sizes), key=output_size_key(call.endpoint, call.identity), expected=call.expected_size,
                           fixed=call.fixed_size))
    plans = [_plan(call, size, index, len(sizes)) for index, size in enumerate(sizes)]
    labels = [f"[{i + 1}/{len(sizes)}] " if len(sizes) > 1 else "" for i in range(len(sizes))]
    progress = [member.progress.request(label) for label in labels]
    resumed: list[RequestHandle | None] = []
    async with lease():
        try:
            for plan, p in zip(plans, progress):
                resumed.append(await find_resumable(run.queue, run.journal, plan, _events(p)))
            run.reservation = await _reserve(run, plans, resumed)
            try:
                parts = await _all_or_none([
                    _run_part(run, plan, p, sum(sizes[:i]), handle)
                    for i, (plan, p, handle) in enumerate(zip(plans, progress, resumed))
                ])
            finally:
                run.reservation.release()
            files = [f for part in parts for f in part.files]
            images = await run.out.finish(files)
        except BaseException:
            for handle in resumed:  # claims of parts that never got to run (their own runs release theirs)
                if handle is not None and handle.request_id not in run.member.batch.collected:
                    cancels.let_go(run.journal, handle.request_id)
            for p in progress:
                if p.stage != "done":
                    p.failed()
            raise
        finally:
            await run.out.close()
    refusals = [f"Refused by fal's content policy (request {p.request_id}): {p.refusal}" for p in parts if p.refusal]
    revised = next((p.revised_prompt for p in parts if not p.refusal), "")
    return Generation(images=images, revised_prompt="\n".join([revised, *refusals]).strip(),
                      image_urls=[url for part in parts for url in part.image_urls],
                      request_ids=[part.request_id for part in parts], files=files, refusals=refusals)


def _plan(call: GrokCall, size: int, index: int, parts: int) -> RequestPlan:
    arguments = {**call.arguments, "num_images": size}
    identity = call.identity if parts == 1 else {**call.identity, "num_images": size, "part": [index, parts]}
    return RequestPlan(call.endpoint, arguments, fingerprint(call.endpoint, identity))


def _events(progress: RequestProgress, out: OutputBatch | None = None) -> RequestEvents:
    def on_status(status: QueueStatus) -> None:
        if out is not None and status.state != "IN_QUEUE":
            out.prepare_ahead()  # fal is making the images: their batch can be made ready meanwhile
        progress.status(status)

    return RequestEvents(on_status=on_status, on_tick=progress.tick, should_cancel=host.interrupted,
                         on_submitted=progress.submitted, on_resumed=progress.resumed)


async def _reserve(run: _Run, plans: list[RequestPlan], resumed: list[RequestHandle | None]) -> Reservation:
    """Set the price of the requests to send aside, or refuse the run (and, in a list, the rest): when the
    fal balance cannot pay the whole batch (`BalanceError`), or for the daily limit."""
    price = sum(request_price(plan.endpoint, plan.arguments) for plan, handle in zip(plans, resumed) if handle is None)

    async def check(whole_price: float, runs: int) -> None:
        await check_can_pay(run.queue.credentials, whole_price, prompts=runs)

    def cancelled() -> RequestCancelledError:
        return RequestCancelledError("Cancelled by the user before the request was sent; nothing was paid.")

    await until_cancelled(run.member.pay_together(price, check), host.interrupted, cancelled)
    try:
        run.member.check_limit()
        reservation = await asyncio.to_thread(Ledger(config.state_dir()).reserve, price)
    except SpendLimitError as exc:
        for handle in resumed:
            if handle is not None:
                run.journal.release(handle.request_id)
        raise await run.member.refuse(exc) from None
    run.member.decide()
    return reservation


async def _run_part(run: _Run, plan: RequestPlan, progress: RequestProgress, first_slot: int,
                    resumed: RequestHandle | None) -> Part:
    count = int(plan.arguments["num_images"])
    price = request_price(plan.endpoint, plan.arguments)
    references = len(plan.arguments.get("image_urls") or ())

    def charge(request_id: str) -> None:
        assert run.reservation is not None
        run.reservation.charge(request_id, plan.endpoint, images=count, references=references, price_usd=price)

    async def collect(handle: RequestHandle, result: dict[str, Any]) -> Part:
        grok = read_result(result, handle.request_id, expected=count)
        run.out.stated_size(grok.stated_size)
        progress.downloading(len(grok.image_urls))
        files = await run.out.fetch(grok.image_urls, first_slot=first_slot, timeout_s=run.limits.download_timeout,
                                    request_id=handle.request_id)
        progress.finished(len(files), grok.revised_prompt)
        return Part(files, grok.revised_prompt, [u for u in grok.image_urls if not u.startswith("data:")],
                    handle.request_id)

    charged = RequestPlan(plan.endpoint, plan.arguments, plan.fingerprint, on_accepted=charge)
    try:
        collected = await run_request(run.queue, run.journal, charged, run.limits, _events(progress, run.out),
                                      collect, resumed=resumed)
    except ContentPolicyError as exc:
        if run.call.on_refusal != "placeholder":
            raise
        log.warning("[Grok Imagine] fal refused request %s under its content policy (%s); a placeholder stands in "
                    "for its %d image(s)", exc.request_id, exc.fal_reason, count)
        progress.request_id = exc.request_id or ""
        progress.refused(exc.fal_reason)
        placeholders = run.out.placeholders(first_slot, count, run.call.fixed_size or run.call.expected_size)
        return Part(placeholders, "", [], exc.request_id or "", exc.fal_reason)
    run.member.collected(collected.request_id, run.journal)
    return collected.value
