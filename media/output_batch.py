"""A node's output batch, prepared while fal generates, filled while the images arrive.

The one interface the nodes use for their IMAGE output (`OutputBatch`): it downloads and decodes a
request's images concurrently, each straight into its slot (`BatchBuilder`), and allocates the
batch ahead of time when it can tell the size before the images arrive. Hints, best first: the
size the same settings gave earlier in this process (remembered under `key`), the size the caller
expects (xAI's documented size for the settings), the size fal's result states. Only a hint: the
images always decide the batch's size, unless the caller fixed it.

Downloads and decodes that are cancelled are awaited to their end: no thread works on after the
node has returned.

The IMAGE batch of a node, written slot by slot on the threads that decode its images.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import mmap
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from ..fal_transport.aio import run_to_end
from ..fal_transport.errors import ResultError
from ..fal_transport.process_state import current
from . import fal_images
from .codec import decode_image, write_into
from .download import fetch_image_bytes

_FLOATS_PER_PAGE = mmap.PAGESIZE // 4
# A node's whole output: Grok's largest image is about 4 MP, so 16 of them are about 64 MP (0.8 GB of
# float32). Anything past this is refused before a byte is allocated.
MAX_BATCH_PIXELS = 100_000_000
PLACEHOLDER_VALUE = 0.5  # a neutral grey


@dataclass(frozen=True)
class FetchedImage:
    """One result image: the bytes fal sent (kept for the previews), its size, and its slot in the batch.
    A placeholder (`data` empty) stands for an image fal refused to make."""

    data: bytes
    file_format: str  # Pillow's format name, lower case: "jpeg", "png", "webp", ...; "" for a placeholder
    width: int
    height: int
    slot: int
    placeholder: bool = False


def check_batch_size(count: int, width: int, height: int, request_id: str | None = None) -> None:
    if count * width * height > MAX_BATCH_PIXELS:
        raise ResultError(
            f"The images would make a batch of {count} x {width}x{height} = {count * width * height / 1e6:.0f} MP "
            f"(about {count * width * height * 12 / 2**30:.1f} GiB), over the node's limit of "
            f"{MAX_BATCH_PIXELS // 1_000_000} MP. Grok Imagine makes images of about 4 MP: fal returned something "
            "else. Ask for fewer images, or load them one request at a time by its request id.",
            request_id=request_id,
        )


class BatchBuilder:
    """The batch, built while its images arrive: each image is written into its slot on the thread that
    decoded it, so conversion overlaps the other downloads and decodes.

    `prepare` allocates the batch ahead of time when the image size is known before the images are:
    a fresh float32 batch costs a page fault per 4 KiB on its first write, as much as decoding the
    images, and `prepare` pays that while fal generates. A prepared batch of the wrong size is
    released and replaced when the first image arrives, unless the size is `fixed` (every image is
    then fitted to it: scaled to cover, centre-cropped).

    `finish` returns the batch when every image landed in the slot of its position with one size,
    and otherwise builds one anew (fewer images than expected, mixed sizes).
    """

    def __init__(self, count: int, fixed: tuple[int, int] | None = None) -> None:
        self.count = count
        self.fixed = fixed
        self._batch: torch.Tensor | None = None
        self._placed: set[int] = set()
        self._lock = threading.Lock()

    def _allocate(self, width: int, height: int, request_id: str | None = None) -> torch.Tensor:
        check_batch_size(self.count, width, height, request_id)
        return torch.empty((self.count, height, width, 3), dtype=torch.float32)

    def prepare(self, width: int, height: int) -> None:
        """Allocate the batch for `count` images of width x height and touch each of its memory pages.
        Does nothing once the batch exists or when the size is implausible; `put` waits for it."""
        width, height = self.fixed or (width, height)
        if self.count * width * height > MAX_BATCH_PIXELS:
            return
        with self._lock:
            if self._batch is not None:
                return
            batch = self._allocate(width, height)
            batch.view(-1)[::_FLOATS_PER_PAGE].zero_()  # one write per page: the OS maps them all now
            self._batch = batch

    def _slot_view(self, slot: int, width: int, height: int, request_id: str | None = None) -> torch.Tensor | None:
        """The batch slot for an image of width x height, or None if it does not fit there."""
        with self._lock:
            size = self.fixed or (width, height)
            if self._batch is None or (not self._placed and tuple(self._batch.shape[1:3]) != size[::-1]):
                self._batch = None  # a prepared batch of another size: release it before allocating
                self._batch = self._allocate(*size, request_id)
            batch = self._batch
            if slot >= self.count or slot in self._placed or tuple(batch.shape[1:3]) != size[::-1]:
                return None
            self._placed.add(slot)
            return batch[slot]

    def put(self, slot: int, image: Image.Image, request_id: str | None = None, rows: Any = None) -> bool:
        """Write a decoded RGB image into `slot` (`rows`: fed its rows, see `write_into`); False if it does not
        fit the batch (another size than the images placed before it, or a slot beyond `count`)."""
        target = self._slot_view(slot, *image.size, request_id)
        if target is None:
            return False
        try:
            write_into(target.numpy(), image, index=slot, rows=rows)
        except BaseException:
            with self._lock:
                self._placed.discard(slot)
            raise
        return True

    def put_placeholder(self, slot: int, width: int, height: int) -> None:
        target = self._slot_view(slot, width, height)
        if target is not None:
            target.fill_(PLACEHOLDER_VALUE)

    def finish(self, files: list[FetchedImage]) -> torch.Tensor:
        """One float32 [len(files), H, W, 3] batch of `files` in order, at the first file's size (or the
        fixed size)."""
        if not files:
            raise ValueError("a batch needs at least one image")
        batch = self._batch
        if batch is not None and len(files) == self.count and all(
            f.slot == index and index in self._placed for index, f in enumerate(files)
        ):
            return batch
        width, height = self.fixed or (files[0].width, files[0].height)
        check_batch_size(len(files), width, height)
        out = torch.empty((len(files), height, width, 3), dtype=torch.float32)
        view = out.numpy()
        reusable = batch is not None and tuple(batch.shape[1:3]) == (height, width)
        for index, fetched in enumerate(files):
            if reusable and fetched.slot in self._placed:
                view[index] = batch.numpy()[fetched.slot]  # type: ignore[union-attr]
            elif fetched.placeholder:
                view[index] = PLACEHOLDER_VALUE
            else:  # not placed (another size): decode again, fitted to the first image
                write_into(view[index], decode_image(fetched.data, index=index).image, index=index)
        self._batch = None
        return out


log = logging.getLogger("grok_imagine_fal")

PREPARE_MAX_PIXELS = 8_000_000  # above any Grok output (2k is about 4 MP): a larger stated size waits for the image
SIZES_KEPT = 64  # settings whose image size is remembered


async def in_thread(function: Any, *args: Any) -> Any:
    """`function(*args)` on a worker thread, awaited to its end even if this task is cancelled."""
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(function, *args))
    return await run_to_end(future)


def _remembered_sizes() -> OrderedDict[str, tuple[int, int]]:
    """The image size each combination of settings gave last in this process (at most `SIZES_KEPT`)."""
    return current().of(__name__, OrderedDict)


class OutputBatch:
    def __init__(self, count: int, *, key: str | None, expected: tuple[int, int] | None = None,
                 fixed: tuple[int, int] | None = None) -> None:
        self.key = key
        self.builder = BatchBuilder(count, fixed)
        self._expected = expected
        self._preparing: list[asyncio.Future[Any]] = []
        self._started = False

    def prepare_ahead(self) -> None:
        """Start preparing the batch from the best hint, once: call it when fal starts running the request,
        so that a list of hundreds of queued prompts does not prepare hundreds of batches at its start."""
        if self._started:
            return
        self._started = True
        remembered = _remembered_sizes().get(self.key) if self.key is not None else None
        if self.builder.fixed is not None:
            self._prepare(self.builder.fixed, "the size asked for")
        elif remembered is not None:
            self._prepare(remembered, "the size these settings gave before")
        else:
            self._prepare(self._expected, "the size xAI documents for these settings")

    def _prepare(self, size: tuple[int, int] | None, why: str) -> None:
        if size is None or size[0] * size[1] > PREPARE_MAX_PIXELS:
            return
        log.debug("[Grok Imagine] preparing the output batch: %d x %dx%d (%s)", self.builder.count, *size, why)
        self._preparing.append(asyncio.ensure_future(in_thread(self.builder.prepare, *size)))

    def stated_size(self, size: tuple[int, int] | None) -> None:
        """fal's result states the images' size (when it does, before they are downloaded)."""
        if size is None:
            self.prepare_ahead()
            return
        self._started = True
        self._prepare(size, "fal's result states the size")

    async def fetch(self, urls: list[str], *, first_slot: int, timeout_s: float,
                    request_id: str | None) -> list[FetchedImage]:
        """All images of `urls`, in order; image i goes into slot `first_slot + i` as soon as it is decoded."""
        tasks = [asyncio.ensure_future(self._fetch_one(url, i, first_slot + i, timeout_s, request_id))
                 for i, url in enumerate(urls)]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch_one(self, url: str, index: int, slot: int, timeout_s: float,
                         request_id: str | None) -> FetchedImage:
        data = await fetch_image_bytes(url, timeout_s=timeout_s, request_id=request_id)
        return await in_thread(self._decode_and_place, data, url, index, slot, request_id)

    def _decode_and_place(self, data: bytes, url: str, index: int, slot: int, request_id: str | None) -> FetchedImage:
        """Decode one image into its slot; an image placed as fal made it (not fitted to another size) is
        remembered as fal's file at `url` (`fal_images`), unless it came inline (sync mode: no URL)."""
        decoded = decode_image(data, index=index, request_id=request_id)
        as_fal_made_it = decoded.image.mode == "RGB" and not url.startswith("data:") \
            and self.builder.fixed in (None, (decoded.width, decoded.height))
        rows = fal_images.FalImageRows(url, decoded.width, decoded.height) if as_fal_made_it else None
        if self.builder.put(slot, decoded.image, request_id, rows) and rows is not None:
            rows.done()
        return FetchedImage(data, decoded.file_format, decoded.width, decoded.height, slot)

    def placeholders(self, first_slot: int, count: int, size: tuple[int, int]) -> list[FetchedImage]:
        """`count` neutral images of `size` for a request fal refused."""
        width, height = self.builder.fixed or size
        slots = range(first_slot, first_slot + count)
        for slot in slots:
            self.builder.put_placeholder(slot, width, height)
        return [FetchedImage(b"", "", width, height, slot, placeholder=True) for slot in slots]

    async def finish(self, files: list[FetchedImage]) -> torch.Tensor:
        """The batch of `files` in order; remembers its size for the next run with the same settings."""
        await self.close()
        images = await in_thread(self.builder.finish, files)
        if self.key is not None and any(not f.placeholder for f in files):
            sizes = _remembered_sizes()
            sizes[self.key] = (int(images.shape[2]), int(images.shape[1]))
            sizes.move_to_end(self.key)
            while len(sizes) > SIZES_KEPT:
                sizes.popitem(last=False)
        return images

    async def close(self) -> None:
        """Wait for the batch preparations under way (call it on every path out)."""
        preparing, self._preparing = self._preparing, []
        if preparing:
            await asyncio.gather(*preparing, return_exceptions=True)
