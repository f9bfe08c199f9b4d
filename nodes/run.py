"""One run of a node at fal (one list item of it), from its checked, typed request to what it hands ComfyUI.

The one path every node takes (`run_node`): join its node's batch (`list_batch`), check its inputs into
a typed request (the node's `prepare`), then `send`: each request of the run (an image run sends one
per four images, all at once) is a `FalRequest` (`fal_transport.lifecycle`), which first looks in the
journal for an earlier unfinished one with the same inputs (collected free); the others' price is then
checked against the fal balance (for the whole list at once) and set aside under the daily limit, and
they are sent. When one request fails, the others are stopped (and cancelled at fal). Each request's
result is collected by its family's collect (`collect_images` here; videos in `video`), the same
collect the Result node uses to load a request by its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import torch

from ..fal_transport import config
from ..fal_transport.aio import until_cancelled
from ..fal_transport.billing import check_can_pay
from ..fal_transport.config import Limits
from ..fal_transport.credentials import resolve_credentials
from ..fal_transport.errors import ContentPolicyError, InputRejectedError, RequestCancelledError, SpendLimitError
from ..fal_transport.http import lease
from ..fal_transport.journal import Journal
from ..fal_transport.ledger import Ledger, Reservation
from ..fal_transport.lifecycle import FalRequest, Payload, RequestEvents, cancelled_before_sending
from ..fal_transport.queue import FalQueue, QueueStatus
from ..media import fal_images
from ..media.output_batch import FetchedImage, OutputBatch
from . import host
from .grok_api import ImageRequest, read_result
from .list_batch import BatchMember, NodeBatch
from .outputs import node_output
from .progress import RequestProgress

log = logging.getLogger("grok_imagine_fal")

T = TypeVar("T")
OnRefusal = Literal["fail", "placeholder"]


async def run_node(node_id: str | None, work: Callable[[BatchMember], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run one run of a node (one list item of it) as a member of its node's batch. The user's Cancel ends it
    as interrupted."""
    member = NodeBatch.join(node_id)  # before the first await: the batch knows every list item at once
    ok = False
    try:
        answer = await host.run_as_node(work(member))
        ok = True
        return answer
    finally:
        member.leave(ok=ok)


@dataclass
class Session:
    """What every request of one node run shares: fal's queue with the key, the journal, the limits."""

    queue: FalQueue
    journal: Journal
    limits: Limits

    @classmethod
    def open(cls) -> Session:
        """A missing or bad key is refused here, before any request."""
        return cls(FalQueue(resolve_credentials(config.key_file())), Journal(config.state_dir()), Limits.from_env())

    def request(self, payload: Payload, progress: RequestProgress,
                on_status: Callable[[QueueStatus], None] | None = None) -> FalRequest:
        """A new request, which tells `progress` (and `on_status`) how it moves on."""
        return FalRequest(payload, self.queue, self.journal, self.limits, _events(progress, on_status))

    def earlier(self, endpoint: str, request_id: str, progress: RequestProgress) -> FalRequest:
        """An earlier request, to load by its id."""
        return FalRequest.by_id(self.queue, self.journal, self.limits, _events(progress), endpoint, request_id)


def _events(progress: RequestProgress, on_status: Callable[[QueueStatus], None] | None = None) -> RequestEvents:
    def status(update: QueueStatus) -> None:
        if on_status is not None:
            on_status(update)
        progress.status(update)

    return RequestEvents(on_status=status, on_tick=progress.tick, should_cancel=host.interrupted,
                         on_submitted=progress.submitted, on_resumed=progress.resumed)


def stopped_by_user(request: FalRequest) -> Callable[[], RequestCancelledError]:
    """The error of a collect stopped by the user's Cancel."""
    text = ("Stopped waiting for the request (it was not cancelled at fal; load it again later)."
            if request.recovering else "Cancelled by the user.")
    return lambda: RequestCancelledError(text, request_id=request.request_id)


async def send(session: Session, member: BatchMember, requests: Sequence[FalRequest],
               run_each: Callable[[FalRequest, int], Awaitable[T]]) -> list[T]:
    """Every request of one run: earlier ones found in the journal, the price of the others paid for
    (balance, daily limit), then `run_each(request, index)` for all at once; when one fails, the others
    are stopped (their requests cancelled at fal) and every claim left is released."""
    reservation: Reservation | None = None
    async with lease(), contextlib.AsyncExitStack() as claims:
        for request in requests:  # a run that fails gives back the claims it did not hand on to its batch
            await claims.enter_async_context(request)
        try:
            for request in requests:
                await request.find_earlier()
            reservation = await _reserve(session, member, [r for r in requests if r.handle is None])
            for request in requests:
                request.reservation = reservation
            return await _all_or_none([run_each(request, index) for index, request in enumerate(requests)])
        finally:
            if reservation is not None:
                member.give_back(reservation)


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


async def _reserve(session: Session, member: BatchMember, to_send: list[FalRequest]) -> Reservation:
    """Set the price of the requests to send aside, or refuse the run (and, in a list, the rest): when the
    fal balance cannot pay the whole batch (`BalanceError`), or for the daily limit."""
    price = sum(request.payload.spend().price_usd for request in to_send if request.payload is not None)

    async def check(whole_price: float, runs: int) -> None:
        await check_can_pay(session.queue.credentials, whole_price, prompts=runs)

    await until_cancelled(member.pay_together(price, check), host.interrupted, cancelled_before_sending)
    try:
        member.check_limit()
        reservation = await asyncio.to_thread(Ledger(config.state_dir()).reserve, price)
    except SpendLimitError as exc:
        raise await member.refuse(exc) from None
    member.decide()
    return reservation


# ---- images


@dataclass(frozen=True)
class ImageRun:
    """One run of an image node: its request, and what to do with the answer."""

    request: ImageRequest
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


async def run_image_node(node_id: str | None, extra_pnginfo: Any,
                         prepare: Callable[[bool], Awaitable[ImageRun]]) -> dict[str, Any]:
    """Run one image node (one list item of it): `prepare(reuse)` checks the inputs (and, for edits, gives the
    references URLs: `reuse_fal_files`) and says what to ask of fal."""

    async def work(member: BatchMember) -> dict[str, Any]:
        async def go(image_run: ImageRun) -> dict[str, Any]:
            generation = await generate(image_run, member)
            return node_output(generation, endpoint=image_run.request.endpoint, node_id=node_id, member=member,
                               extra_pnginfo=extra_pnginfo)

        return await reuse_fal_files(member, prepare, lambda image_run: image_run.request, go)

    return await run_node(node_id, work)


# ---- inputs fal already holds

P = TypeVar("P")
FILE_ERRORS = frozenset({"file_download_error", "image_load_error"})  # fal's error types for an unreadable input


class _ReusablePayload(Protocol):
    def body(self) -> dict[str, Any]: ...
    def reused_urls(self) -> frozenset[str]: ...


def _refused_a_reused_file(exc: InputRejectedError, payload: _ReusablePayload) -> bool:
    """fal refused an input file that the request sent by fal's own URL (a file fal no longer holds)."""
    reused = payload.reused_urls()
    value = payload.body().get(exc.field) if exc.field else None
    return bool(reused) and (exc.fal_type in FILE_ERRORS or any(
        url in reused for url in (value if isinstance(value, list) else [value])))


async def reuse_fal_files(member: BatchMember, prepare: Callable[[bool], Awaitable[P]],
                          payload_of: Callable[[P], _ReusablePayload], go: Callable[[P], Awaitable[T]]) -> T:
    """Run `go` on what `prepare(reuse=True)` gives: inputs fal already holds go by fal's own URL, with no
    upload. When fal refuses such a file (it expired), the run is prepared again with every input uploaded
    and sent once more (the refused request leaves the node's progress); the refused request is not billed
    (fal bills no 4xx), so nothing is paid twice."""
    prepared = await prepare(True)
    try:
        return await go(prepared)
    except InputRejectedError as exc:
        payload = payload_of(prepared)
        if not _refused_a_reused_file(exc, payload):
            raise
        log.warning("[Grok Imagine] fal could not read an input file it held before (%s); uploading the inputs and "
                    "sending the request once more", exc.reason)
        for url in payload.reused_urls():
            fal_images.forget(url)
        member.send_again()
        return await go(await prepare(False))


async def collect_images(request: FalRequest, data: dict[str, Any], out: OutputBatch, progress: RequestProgress, *,
                         first_slot: int = 0, expected: int | None = None) -> Part:
    """A request's images from its result, each into its slot of `out` (`expected`: the images it asked for;
    the Result node takes what fal has)."""
    grok = read_result(data, request.request_id, expected=expected)
    out.stated_size(grok.stated_size)
    progress.downloading(len(grok.image_urls))
    files = await out.fetch(grok.image_urls, first_slot=first_slot, timeout_s=request.limits.download_timeout,
                            request_id=request.request_id)
    progress.finished(len(files), grok.revised_prompt)
    return Part(files, grok.revised_prompt, [u for u in grok.image_urls if not u.startswith("data:")],
                request.request_id)


async def generate(image_run: ImageRun, member: BatchMember) -> Generation:
    """Every image of the run: earlier requests collected free, the others sent once the fal balance and the
    daily limit allow the run's price; one batch in request order."""
    session = Session.open()
    parts = image_run.request.split()
    out = OutputBatch(image_run.request.num_images, key=image_run.request.size_key(),
                      expected=image_run.expected_size, fixed=image_run.fixed_size)
    labels = [f"[{i + 1}/{len(parts)}] " if len(parts) > 1 else "" for i in range(len(parts))]
    progress = [member.request_progress(label) for label in labels]
    first_slots = [sum(p.num_images for p in parts[:i]) for i in range(len(parts))]

    def on_status(status: QueueStatus) -> None:
        if status.state != "IN_QUEUE":
            out.prepare_ahead()  # fal is making the images: their batch can be made ready meanwhile

    requests = [session.request(part, p, on_status) for part, p in zip(parts, progress)]

    async def run_part(request: FalRequest, index: int) -> Part:
        part = parts[index]
        try:
            data = await request.result()
        except ContentPolicyError as exc:
            if image_run.on_refusal != "placeholder":
                raise
            log.warning("[Grok Imagine] fal refused request %s under its content policy (%s); a placeholder stands "
                        "in for its %d image(s)", exc.request_id, exc.fal_reason, part.num_images)
            progress[index].request_id = exc.request_id or ""
            progress[index].refused(exc.fal_reason)
            placeholders = out.placeholders(first_slots[index], part.num_images,
                                            image_run.fixed_size or image_run.expected_size)
            return Part(placeholders, "", [], exc.request_id or "", exc.fal_reason)
        collected = await until_cancelled(
            collect_images(request, data, out, progress[index], first_slot=first_slots[index],
                           expected=part.num_images),
            host.interrupted, stopped_by_user(request))
        member.collected(request)
        return collected

    try:
        results = await send(session, member, requests, run_part)
        files = [f for part in results for f in part.files]
        images = await out.finish(files)
    except BaseException:
        for p in progress:
            if p.stage != "done":
                p.failed()
        raise
    finally:
        await out.close()
    refusals = [f"Refused by fal's content policy (request {p.request_id}): {p.refusal}" for p in results if p.refusal]
    revised = next((p.revised_prompt for p in results if not p.refusal), "")
    return Generation(images=images, revised_prompt="\n".join([revised, *refusals]).strip(),
                      image_urls=[url for part in results for url in part.image_urls],
                      request_ids=[part.request_id for part in results], files=files, refusals=refusals)
