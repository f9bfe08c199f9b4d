"""One Grok Imagine generation, shared by every node: submit, follow, fetch, download, decode.

Progress goes to the node (text and bar) and one console line per request; the user's Cancel
stops the wait within a tick and cancels the request at fal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from ..fal_transport import config
from ..fal_transport.config import Limits
from ..fal_transport.credentials import resolve_credentials
from ..fal_transport.errors import (
    ContentPolicyError,
    FalError,
    FalTimeoutError,
    JobFailedError,
    RequestCancelledError,
    ResultError,
    SubmitUncertainError,
)
from ..fal_transport.http import Deadline
from ..fal_transport.journal import Journal, fingerprint
from ..fal_transport.queue import TICK_S, FalQueue, QueueStatus, RequestHandle
from ..image_io.batch import BatchBuilder, FetchedImage, fetch_images
from . import grok_spec as spec
from . import host

log = logging.getLogger("grok_imagine_fal")

T = TypeVar("T")

_BAR_TOTAL = 100
_BAR_QUEUED, _BAR_RUNNING, _BAR_DOWNLOADING = 5, 15, 80
_PREPARE_MAX_PIXELS = 8_000_000  # above any Grok output (2k is about 4 MP): a larger stated size waits for the image
_OUTPUT_SIZES_KEPT = 64  # settings whose image size is remembered


@dataclass
class Collected:
    """What one request produced: the fetched files, already written into the node's batch."""

    files: list[FetchedImage]
    revised_prompt: str
    image_urls: list[str]
    request_id: str
    builder: BatchBuilder


@dataclass
class Generation:
    """What a node produced: all its requests' images as one IMAGE batch."""

    images: torch.Tensor
    revised_prompt: str
    image_urls: list[str]
    request_id: str
    files: list[FetchedImage]


Placement = tuple[BatchBuilder, int]  # the node's batch being built, and this request's first slot in it


async def assemble(parts: list[Collected]) -> Generation:
    """One batch of every part's images, in request order: the batch the parts' images were written into
    as they arrived (the parts share one builder), built anew only if some did not fit it."""
    files = [f for part in parts for f in part.files]
    images = await asyncio.to_thread(parts[0].builder.finish, files)
    return Generation(
        images=images,
        revised_prompt=parts[0].revised_prompt,
        image_urls=[url for part in parts for url in part.image_urls],
        request_id=",".join(part.request_id for part in parts),
        files=files,
    )


@dataclass
class ProgressReporter:
    """Turns queue events into progress text and a progress bar on one node."""

    node_id: str | None
    label: str = ""  # "[2/3] " when the node sends several requests
    with_bar: bool = True
    started: float = field(default_factory=time.monotonic)
    request_id: str = ""
    _seen_logs: set[tuple[str, str]] = field(default_factory=set)
    _last_status: QueueStatus | None = None
    _last_log: str = ""
    _shown_at: float = 0.0
    _bar: Any = None

    def __post_init__(self) -> None:
        self._bar = host.progress_bar(_BAR_TOTAL, self.node_id) if self.with_bar else None

    def _show(self, text: str, fraction: int | None = None) -> None:
        self._shown_at = time.monotonic()
        host.send_progress_text(self.node_id, self.label + text)
        if fraction is not None and self._bar is not None:
            self._bar.update_absolute(fraction, _BAR_TOTAL)

    def submitted(self, handle: RequestHandle) -> None:
        self.request_id = handle.request_id
        log.info("[Grok Imagine] submitted to %s, fal request id %s", handle.endpoint, handle.request_id)
        self._show(f"Submitted to fal\nrequest {handle.request_id}", _BAR_QUEUED)

    def following(self, handle: RequestHandle, why: str) -> None:
        """Collecting a request submitted earlier (journal or the Result node): nothing new is billed."""
        self.request_id = handle.request_id
        log.info("[Grok Imagine] %s: fal request id %s (no new request, nothing billed again)", why, handle.request_id)
        self._show(f"{why}\nrequest {handle.request_id}", _BAR_QUEUED)

    def status(self, status: QueueStatus) -> None:
        self._last_status = status
        new_lines = [line for line in status.logs if (line.timestamp, line.message) not in self._seen_logs]
        self._seen_logs.update((line.timestamp, line.message) for line in new_lines)
        self._last_log = next((line.message for line in reversed(new_lines) if line.message), self._last_log)
        self._render()

    def tick(self) -> None:
        """Keep the elapsed seconds moving between status reports."""
        if self._last_status is not None and time.monotonic() - self._shown_at >= 1.0:
            self._render()

    def _render(self) -> None:
        status = self._last_status
        assert status is not None
        elapsed = time.monotonic() - self.started
        if status.state == "IN_QUEUE":
            position = "" if status.queue_position is None else f", position {status.queue_position}"
            self._show(f"Queued at fal{position} ({elapsed:.0f}s)\nrequest {self.request_id}", _BAR_QUEUED)
            return
        state = "Running" if status.state == "IN_PROGRESS" else "Completed"
        text = f"{state} at fal ({elapsed:.0f}s)\nrequest {self.request_id}"
        self._show(f"{text}\n{self._last_log}" if self._last_log else text, _BAR_RUNNING)

    def downloading(self, count: int) -> None:
        self._show(f"Downloading {count} image{'s' if count != 1 else ''}\nrequest {self.request_id}", _BAR_DOWNLOADING)

    def finished(self, count: int, revised_prompt: str) -> None:
        elapsed = time.monotonic() - self.started
        text = f"Done: {count} image{'s' if count != 1 else ''} in {elapsed:.1f}s\nrequest {self.request_id}"
        if revised_prompt:
            text += f"\nRevised prompt: {revised_prompt}"
        self._show(text)
        if self._bar is not None:
            self._bar.update_absolute(_BAR_TOTAL, _BAR_TOTAL)


def image_urls_of(result: dict[str, Any], request_id: str, expected: int | None = None) -> list[str]:
    """The image URLs of a fal result, in order."""
    images = result.get("images")
    if not isinstance(images, list) or not images:
        raise ResultError(
            "fal's result holds no images. The request may have been filtered; try another prompt.",
            request_id=request_id,
        )
    urls = [item.get("url") if isinstance(item, dict) else None for item in images]
    if not all(isinstance(url, str) and url for url in urls):
        raise ResultError("fal's result lists an image without a URL.", request_id=request_id)
    if expected is not None and len(urls) < expected:
        log.warning("[Grok Imagine] fal returned %d of %d images for request %s", len(urls), expected, request_id)
    return urls  # type: ignore[return-value]


async def until_interrupted(work: Awaitable[T], request_id: str) -> T:
    """Await `work`, but end within a tick once the user presses Cancel."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=TICK_S)
            if done:
                return task.result()
            if host.interrupted():
                raise RequestCancelledError("Cancelled by the user.", request_id=request_id)
    finally:
        task.cancel()


async def collect(
    queue: FalQueue,
    handle: RequestHandle,
    reporter: ProgressReporter,
    limits: Limits,
    final: QueueStatus | None,
    expected: int | None = None,
    placement: Placement | None = None,
) -> Collected:
    """Fetch a completed request's result and images (downloaded and decoded concurrently, each written
    into its slot of the node's batch; without a `placement`, a batch of this request's images)."""
    result = await queue.result(handle, final)
    urls = image_urls_of(result, handle.request_id, expected)
    reporter.downloading(len(urls))
    builder, first_slot = placement or (BatchBuilder(len(urls)), 0)
    preparing = _prepare(builder, reported_size(result), "fal's result states the size")
    try:
        files = await fetch_images(urls, timeout_s=limits.download_timeout, request_id=handle.request_id,
                                   builder=builder, first_slot=first_slot)
    finally:
        if preparing is not None:
            await asyncio.wait({preparing})
    revised = result.get("revised_prompt")
    revised = revised if isinstance(revised, str) else ""
    reporter.finished(len(files), revised)
    return Collected(
        files=files,
        revised_prompt=revised,
        image_urls=[url for url in urls if not url.startswith("data:")],
        request_id=handle.request_id,
        builder=builder,
    )


def _prepare(builder: BatchBuilder, size: tuple[int, int] | None, why: str) -> asyncio.Future[None] | None:
    """Start preparing the node's batch for images of `size` on a worker thread (see `BatchBuilder.prepare`)."""
    if size is None:
        return None
    log.debug("[Grok Imagine] preparing the output batch: %d x %dx%d (%s)", builder.count, *size, why)
    return asyncio.ensure_future(asyncio.to_thread(builder.prepare, *size))


def reported_size(result: dict[str, Any]) -> tuple[int, int] | None:
    """(width, height) of a result's images when fal's result states one size for all of them."""
    images = result.get("images")
    sizes = {
        (item.get("width"), item.get("height")) if isinstance(item, dict) else None
        for item in (images if isinstance(images, list) else [])
    }
    if len(sizes) != 1:
        return None
    size = sizes.pop()
    if size is None or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        return None
    width, height = size
    return (width, height) if width * height <= _PREPARE_MAX_PIXELS else None


async def follow(
    queue: FalQueue,
    handle: RequestHandle,
    reporter: ProgressReporter,
    limits: Limits,
    *,
    submitted_at: float,
    journal: Journal | None = None,
    expected: int | None = None,
    cancel_on_stop: bool = True,
    placement: Placement | None = None,
) -> Collected:
    """Wait for a submitted request, then collect it; keeps the journal's state of it current.

    A request that completed at fal but whose images did not arrive stays `completed` in the journal,
    so the next run with the same inputs collects it instead of paying again.
    """
    request_id = handle.request_id
    mark = journal.mark if journal is not None else (lambda _id, _state: None)
    try:
        try:
            final = await queue.wait(
                handle,
                limits=limits,
                submitted_at=submitted_at,
                on_status=reporter.status,
                should_cancel=host.interrupted,
                on_tick=reporter.tick,
                cancel_on_stop=cancel_on_stop,
            )
        except (RequestCancelledError, FalTimeoutError):
            if cancel_on_stop:
                mark(request_id, "cancelled")
            raise
        # A request that ended with an error at fal (its own error, a content-policy refusal, a cancel) is
        # finished for good: never collect it again.
        mark(request_id, "failed" if final.error or final.error_type else "completed")
        try:
            collected = await until_interrupted(
                collect(queue, handle, reporter, limits, final, expected, placement), request_id
            )
        except (JobFailedError, ContentPolicyError):
            mark(request_id, "failed")
            raise
        mark(request_id, "collected")
        return collected
    except RequestCancelledError as exc:
        log.info("[Grok Imagine] fal request %s: stopped by the user", request_id)
        raise host.interruption(exc) from exc


async def generate_images(
    endpoint: str,
    arguments: dict[str, Any],
    *,
    node_id: str | None = None,
    identity: dict[str, Any] | None = None,
) -> Generation:
    """All `arguments["num_images"]` images: one request per four images, all sent at once, one batch
    in request order. `identity` replaces `arguments` in the journal fingerprint (e.g. reference images
    by content hash instead of by upload URL). The output batch is prepared while fal generates when the
    image size is known ahead: what the same settings gave before, else the size xAI documents."""
    sizes = spec.request_sizes(int(arguments["num_images"]))
    builder = BatchBuilder(sum(sizes))
    size_key = output_size_key(endpoint, identity or arguments)
    if size_key in _output_sizes:
        preparing = _prepare(builder, _output_sizes[size_key], "the size these settings gave before")
    else:
        documented = spec.documented_image_size(str(arguments.get("aspect_ratio")),
                                                str(arguments.get("resolution", spec.DEFAULT_RESOLUTION)))
        preparing = _prepare(builder, documented, "the size xAI documents for these settings")
    try:
        generation = await _generate_parts(endpoint, arguments, sizes, builder, node_id=node_id, identity=identity)
    finally:
        if preparing is not None:
            await asyncio.wait({preparing})
    _remember_output_size(size_key, generation.images)
    return generation


async def _generate_parts(
    endpoint: str,
    arguments: dict[str, Any],
    sizes: list[int],
    builder: BatchBuilder,
    *,
    node_id: str | None,
    identity: dict[str, Any] | None,
) -> Generation:
    if len(sizes) == 1:
        collected = await generate(endpoint, arguments, node_id=node_id, identity=identity, placement=(builder, 0))
        return await assemble([collected])
    resolve_credentials(config.key_file())  # a missing key is refused before any request
    parts = [
        generate(
            endpoint,
            {**arguments, "num_images": size},
            node_id=node_id,
            identity={**(identity or arguments), "num_images": size, "part": [index, len(sizes)]},
            label=f"[{index + 1}/{len(sizes)}] ",
            with_bar=index == 0,
            placement=(builder, sum(sizes[:index])),
        )
        for index, size in enumerate(sizes)
    ]
    return await assemble(await _all_or_none(parts))


# The image size each combination of settings gave last time, so the next node with the same settings can
# prepare its batch while fal generates (`BatchBuilder.prepare`). Keyed by endpoint, aspect ratio and
# resolution, plus the reference images when the aspect ratio is "auto" (the first reference decides it).
_output_sizes: OrderedDict[str, tuple[int, int]] = OrderedDict()


def output_size_key(endpoint: str, arguments: dict[str, Any]) -> str:
    shape = {name: arguments.get(name) for name in ("aspect_ratio", "resolution")}
    if arguments.get("aspect_ratio") == "auto":
        shape["references"] = arguments.get("image_sha256", arguments.get("image_urls"))
    return fingerprint(endpoint, shape)


def _remember_output_size(key: str, images: torch.Tensor) -> None:
    height, width = int(images.shape[1]), int(images.shape[2])
    if width * height <= _PREPARE_MAX_PIXELS:
        _output_sizes[key] = (width, height)
        _output_sizes.move_to_end(key)
        while len(_output_sizes) > _OUTPUT_SIZES_KEPT:
            _output_sizes.popitem(last=False)


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


async def generate(
    endpoint: str,
    arguments: dict[str, Any],
    *,
    node_id: str | None = None,
    identity: dict[str, Any] | None = None,
    label: str = "",
    with_bar: bool = True,
    placement: Placement | None = None,
) -> Collected:
    """Run one request at fal from submit to decoded images, or collect an unfinished earlier one.

    Before submitting, the journal is asked for a request with the same inputs that an earlier run
    left unfinished (ComfyUI stopped, a download failed): that one is collected instead of paying again.
    """
    credentials = resolve_credentials(config.key_file())
    limits = Limits.from_env()
    queue = FalQueue(credentials)
    journal = Journal(config.state_dir())
    reporter = ProgressReporter(node_id, label=label, with_bar=with_bar)
    inputs_fingerprint = fingerprint(endpoint, identity or arguments)
    expected = arguments.get("num_images")
    handle = await _resume(queue, journal, reporter, endpoint, inputs_fingerprint)
    submitted_at = time.monotonic()
    if handle is None and host.interrupted():  # Cancel pressed before anything was paid for
        raise host.interruption(RequestCancelledError("Cancelled by the user before the request was sent."))
    if handle is None:
        sync_mode = bool(arguments.get("sync_mode"))
        try:
            handle = await _submit_even_if_cancelled(queue, journal, endpoint, arguments, inputs_fingerprint)
        except SubmitUncertainError as exc:
            if exc.request_id:  # fal accepted it: the next run with these inputs collects it
                journal.record_submitted(exc.request_id, endpoint, inputs_fingerprint, sync_mode=sync_mode)
                journal.release(exc.request_id)
            raise
        journal.record_submitted(handle.request_id, endpoint, inputs_fingerprint, sync_mode=sync_mode)
        reporter.submitted(handle)
    try:
        return await follow(queue, handle, reporter, limits, submitted_at=submitted_at, journal=journal,
                            expected=expected if isinstance(expected, int) else None, placement=placement)
    finally:
        journal.release(handle.request_id)


async def _submit_even_if_cancelled(
    queue: FalQueue, journal: Journal, endpoint: str, arguments: dict[str, Any], inputs_fingerprint: str
) -> RequestHandle:
    """Submit; if this task is cancelled meanwhile (another request of the node failed, the prompt was
    stopped), still learn the request id of a submit that reached fal, journal it and cancel it there."""
    submit = asyncio.ensure_future(queue.submit(endpoint, arguments))
    try:
        return await asyncio.shield(submit)
    except asyncio.CancelledError:
        with contextlib.suppress(FalError, asyncio.TimeoutError):
            handle = await asyncio.wait_for(submit, timeout=60.0)
            journal.record_submitted(handle.request_id, endpoint, inputs_fingerprint,
                                     sync_mode=bool(arguments.get("sync_mode")))
            journal.release(handle.request_id)
            if await queue.cancel(handle):
                journal.mark(handle.request_id, "cancelled")
        raise


async def _resume(
    queue: FalQueue, journal: Journal, reporter: ProgressReporter, endpoint: str, inputs_fingerprint: str
) -> RequestHandle | None:
    """The handle of a journalled unfinished request with the same inputs that fal still knows, if any."""
    entry = await asyncio.to_thread(journal.claim_resumable, endpoint, inputs_fingerprint)
    if entry is None:
        return None
    handle = queue.handle_for(endpoint, entry.request_id)
    try:
        status = await queue.status(handle, Deadline(15.0))
    except FalError as exc:
        log.info("[Grok Imagine] journalled request %s is no longer available at fal (%s)", entry.request_id, exc)
        journal.mark(entry.request_id, "lost")
        status = None
    except BaseException:
        journal.release(entry.request_id)
        raise
    if status is not None and (status.error or status.error_type):
        journal.mark(entry.request_id, "failed")  # it ended with an error (or was cancelled): nothing to collect
        status = None
    if status is None:
        journal.release(entry.request_id)
        return None
    reporter.following(handle, "Collecting an earlier unfinished request with the same inputs")
    return handle


async def recover(endpoint: str, request_id: str, *, node_id: str | None = None) -> Generation:
    """Load an earlier request's images from fal by its id, without a new generation."""
    credentials = resolve_credentials(config.key_file())
    limits = Limits.from_env()
    queue = FalQueue(credentials)
    journal = Journal(config.state_dir())
    reporter = ProgressReporter(node_id)
    handle = queue.handle_for(endpoint, request_id)
    reporter.following(handle, "Loading a finished request from fal")
    journal_entry = journal.entries().get(request_id)
    collected = await follow(queue, handle, reporter, limits, submitted_at=time.monotonic(),
                             journal=journal if journal_entry is not None else None, cancel_on_stop=False)
    return await assemble([collected])
